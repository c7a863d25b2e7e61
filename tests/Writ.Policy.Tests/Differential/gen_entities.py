# Mutates corpus entity files (attribute values and kinds, parents, entity types, tags) next to their schemas.
# Usage: python3 gen_entities.py SEED COUNT UNPACKED_CORPUS_ROOT
import json, random, sys, glob, os
rng = random.Random(int(sys.argv[1])); N = int(sys.argv[2]); root = sys.argv[3]
tests = sorted(f for f in glob.glob(root + '/corpus-tests/*.json') if not f.endswith('.entities.json'))
def mutate_value(v):
    k = rng.randrange(6)
    if k == 0: return "str"
    if k == 1: return 7
    if k == 2: return True
    if k == 3: return [v]
    if k == 4: return {"__entity": {"type": rng.choice(["a", "Action", "Zz"]), "id": ""}}
    return {"x": v}
for i in range(N):
    t = json.load(open(rng.choice(tests)))
    schema = open(os.path.join(root, t['schema'])).read()
    ents = json.load(open(os.path.join(root, t['entities'])))
    if ents and rng.random() < 0.85:
        e = rng.choice(ents)
        k = rng.randrange(7)
        if k == 0 and e['attrs']:
            a = rng.choice(list(e['attrs'])); e['attrs'][a] = mutate_value(e['attrs'][a])
        elif k == 1 and e['attrs']:
            del e['attrs'][rng.choice(list(e['attrs']))]
        elif k == 2: e['attrs']['zzz_extra'] = 1
        elif k == 3: e['parents'].append({"type": rng.choice(["a", "Action", "Zz", e['uid']['type']]), "id": "p"})
        elif k == 4: e['uid']['type'] = rng.choice(["Zz", "a", "Action"])
        elif k == 5: e['tags'] = {"t": rng.choice(["s", 1, True])}
        else: e['uid']['id'] = e['uid']['id'] + "x"
    # keep longs JS-safe
    s = json.dumps(ents)
    if any(len(tok) > 15 and tok.lstrip('-').isdigit() for tok in s.replace(',', ' ').replace(']', ' ').replace('}', ' ').replace(':', ' ').split()): continue
    print(json.dumps({"schema": schema, "entities": ents}))
