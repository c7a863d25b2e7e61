# Mutates corpus request contexts (values, kinds, missing and extra attributes) next to their schema and action.
# Usage: python3 gen_contexts.py SEED COUNT UNPACKED_CORPUS_ROOT
import json, random, sys, glob, os
rng = random.Random(int(sys.argv[1])); N = int(sys.argv[2]); root = sys.argv[3]
tests = sorted(f for f in glob.glob(root + '/corpus-tests/*.json') if not f.endswith('.entities.json'))
def mv(v):
    return rng.choice(["str", 7, True, [v], {"__entity": {"type": rng.choice(["a", "Action", "Zz"]), "id": ""}}, {"x": v}, "1.1.1.1", "1.5", "2024-01-01", "1h"])
out = 0
while out < N:
    t = json.load(open(rng.choice(tests)))
    if not t['requests']: continue
    r = rng.choice(t['requests'])
    ctx = r['context']
    if rng.random() < 0.8:
        k = rng.randrange(4)
        if k == 0 and ctx: a = rng.choice(list(ctx)); ctx[a] = mv(ctx[a])
        elif k == 1 and ctx: del ctx[rng.choice(list(ctx))]
        elif k == 2: ctx['zzz'] = 1
        else: pass
    s = json.dumps(ctx)
    if any(len(tok) > 15 and tok.lstrip('-').isdigit() for tok in s.replace(',', ' ').replace(']', ' ').replace('}', ' ').replace(':', ' ').split()): continue
    print(json.dumps({"schema": open(os.path.join(root, t['schema'])).read(), "action": r['action'], "context": ctx})); out += 1
