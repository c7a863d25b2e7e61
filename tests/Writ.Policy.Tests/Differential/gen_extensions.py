import json, random, sys
rng = random.Random(int(sys.argv[1])); N = int(sys.argv[2])
def mutate(s):
    s = list(s)
    for _ in range(rng.randrange(0, 3)):
        op = rng.randrange(4)
        if op == 0 and s: del s[rng.randrange(len(s))]
        elif op == 1: s.insert(rng.randrange(len(s)+1), rng.choice('0123456789:./-+TZabcdefx hms'))
        elif op == 2 and s: s[rng.randrange(len(s))] = rng.choice('0123456789:./-+TZabcdefx hms')
    return ''.join(s)
def d(n): return ''.join(rng.choice('0123456789') for _ in range(n))
def ipv4(): return '.'.join(str(rng.choice([0,1,10,127,192,224,239,255,256,rng.randrange(300)])) for _ in range(4)) + (('/' + str(rng.randrange(40))) if rng.random()<0.4 else '')
def ipv6():
    groups = [format(rng.randrange(0, 0x10000), 'x') for _ in range(8)]
    k = rng.randrange(4)
    if k == 0: s = ':'.join(groups)
    elif k == 1:
        i = rng.randrange(8); j = rng.randrange(i, 8); s = ':'.join(groups[:i]) + '::' + ':'.join(groups[j+1:])
    elif k == 2: s = rng.choice(['::1','::','ff02::1','fe80::1','1::','::ffff:0:1'])
    else: s = ':'.join(groups[:rng.randrange(1,9)])
    return s + (('/' + str(rng.randrange(140))) if rng.random()<0.4 else '')
def dec(): return rng.choice(['','-']) + d(rng.randrange(0,17)) + rng.choice(['.','.','']) + d(rng.randrange(0,6))
def dt():
    s = '%s-%s-%s' % (d(4), rng.choice(['01','02','12','13','00',d(2)]), rng.choice(['01','28','29','30','31','32',d(2)]))
    if rng.random()<0.7:
        s += 'T%s:%s:%s' % (rng.choice(['00','23','24',d(2)]), rng.choice(['00','59','60',d(2)]), rng.choice(['00','59','60',d(2)]))
        if rng.random()<0.4: s += '.' + d(rng.choice([3,3,2,4]))
        s += rng.choice(['Z','Z','+0000','-2359','+2400','+1260','+' + d(4), ''])
    return s
def dur():
    s = rng.choice(['','-'])
    for u in ['d','h','m','s','ms']:
        if rng.random()<0.5: s += str(rng.choice([0,1,59,rng.randrange(10**rng.randrange(1,20))])) + u
    return s
gens = [('ip', lambda: rng.choice([ipv4, ipv6])()), ('decimal', dec), ('datetime', dt), ('duration', dur)]
for i in range(N):
    fn, g = rng.choice(gens)
    vals = [g() if rng.random()<0.7 else mutate(g()) for _ in range(6)]
    pols = []
    q = lambda v: json.dumps(v)
    for a in vals:
        pols.append('permit(principal, action, resource) when { %s(%s) == %s(%s) };' % (fn, q(a), fn, q(a)))
    for _ in range(8):
        a, b = rng.choice(vals), rng.choice(vals)
        if fn == 'ip': e = '%s(%s).%s' % (fn, q(a), rng.choice(['isInRange(ip(%s))' % q(b), 'isIpv4()', 'isIpv6()', 'isLoopback()', 'isMulticast()']))
        elif fn == 'decimal': e = 'decimal(%s).%s(decimal(%s))' % (q(a), rng.choice(['lessThan','lessThanOrEqual','greaterThan','greaterThanOrEqual']), q(b))
        elif fn == 'datetime': e = rng.choice(['datetime(%s) < datetime(%s)' % (q(a), q(b)), 'datetime(%s).toDate() == datetime(%s).toDate()' % (q(a), q(b)), 'datetime(%s).toTime() <= datetime(%s).toTime()' % (q(a), q(b)), 'datetime(%s).durationSince(datetime(%s)) > duration("0ms")' % (q(a), q(b)), 'datetime(%s).offset(duration("-1d")) < datetime(%s)' % (q(a), q(b))])
        else: e = rng.choice(['duration(%s) < duration(%s)' % (q(a), q(b)), 'duration(%s).toDays() == duration(%s).toHours()' % (q(a), q(b)), 'duration(%s).toSeconds() <= duration(%s).toMinutes()' % (q(a), q(b)), 'datetime("2024-01-01").offset(duration(%s)) == datetime("2024-01-01").offset(duration(%s))' % (q(a), q(b))])
        pols.append('permit(principal, action, resource) when { %s };' % e)
    # one policy per line so that one bad literal only rejects... the whole set; keep sets small
    print(json.dumps({"policies": '\n'.join(pols), "entities": [], "principal": {"type":"U","id":"a"}, "action": {"type":"Action","id":"a"}, "resource": {"type":"R","id":"r"}, "context": {}}))
