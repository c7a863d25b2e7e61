import json, random, sys
rng = random.Random(int(sys.argv[1]))
N = int(sys.argv[2])
ENTITIES = [
 {"uid":{"type":"User","id":"alice"},"attrs":{"age":30,"name":"Alice","tags":["a","b"],"rec":{"x":1,"y":{"z":True}},
   "ip":{"__extn":{"fn":"ip","arg":"10.1.2.3"}},"dec":{"__extn":{"fn":"decimal","arg":"1.5"}},"mgr":{"__entity":{"type":"User","id":"bob"}},
   "dt":{"__extn":{"fn":"datetime","arg":"2024-01-01T10:00:00Z"}},"dur":{"__extn":{"fn":"duration","arg":"1h30m"}}},
  "parents":[{"type":"Group","id":"staff"}],"tags":{"t1":"v1","t2":2}},
 {"uid":{"type":"User","id":"bob"},"attrs":{"age":40},"parents":[{"type":"Group","id":"admins"}]},
 {"uid":{"type":"Group","id":"staff"},"attrs":{},"parents":[{"type":"Group","id":"all"}]},
 {"uid":{"type":"Group","id":"admins"},"attrs":{},"parents":[{"type":"Group","id":"staff"}]},
 {"uid":{"type":"NS::Doc","id":"d"},"attrs":{"owner":{"__entity":{"type":"User","id":"alice"}},"public":False},"parents":[]},
 {"uid":{"type":"Action","id":"view"},"attrs":{},"parents":[{"type":"Action","id":"read"}]},
]
CONTEXT = {"n":5,"s":"hello*world","flag":True,"set":[1,2,3],"ents":[{"__entity":{"type":"User","id":"alice"}}],
  "ip":{"__extn":{"fn":"ip","arg":"192.168.0.1/24"}},"d2":{"__extn":{"fn":"decimal","arg":"-2.25"}}}
STRS = ['"hello*world"','"a"','""','"\\u{1F600}"','"\\*"','"x\\ny"','"Alice"','"t1"','"t2"','"nope"']
PATS = ['"*"','"hello*"','"*world"','"h*o*d"','"hello\\*world"','"a"','""','"**"','"*o\\**"']
IPS = ['"10.1.2.3"','"10.0.0.0/8"','"127.0.0.1"','"::1"','"ff02::1"','"224.1.1.1/4"','"192.168.0.0/16"','"1.2.3"','"01.2.3.4"','"::ffff:1.2.3.4"','"1::"','"::"','"1:2:3:4:5:6:7:8"','"1:2:3:4:5:6:7::8"','"10.0.0.1/33"','"fe80::1/10"','"1.2.3.4/08"','"::1/128"','"127.0.0.0/7"','"1.2.3.4 "']
DECS = ['"1.5"','"-2.25"','"0.0001"','"1.23456"','"922337203685477.5807"','"922337203685477.5808"','"-922337203685477.5808"','"1."','".5"','"1"','"+1.0"','"00.1"']
DTS = ['"2024-01-01"','"2024-01-01T10:00:00Z"','"2024-02-29T23:59:59.999Z"','"2023-02-29"','"2024-01-01T10:00:00+0100"','"2024-01-01T10:00:00-2359"','"2024-01-01T24:00:00Z"','"1969-12-31T23:59:59.999Z"','"0000-01-01"','"9999-12-31T23:59:59.999Z"','"2024-1-01"','"2024-01-01T10:00:00.1Z"','"2024-01-01T10:00:00+2400"','"2024-01-01T10:00Z"']
DURS = ['"1h30m"','"1d"','"-1d2h"','"0ms"','"1m1h"','"1ms"','"-90s"','"9223372036854775807ms"','"-9223372036854775808ms"','"106751991167d"','"106751992d"','""','"-"','"1d1d"','"5"','"1h 2m"']
LONGS = ['0','1','-1','5','30','9223372036854775807','-9223372036854775808','4611686018427387904','3037000500','100']
ENTS = ['User::"alice"','User::"bob"','User::"ghost"','Group::"staff"','Group::"all"','Group::"admins"','NS::Doc::"d"','Action::"view"','Action::"read"']
ATTRS = ['age','name','tags','rec','ip','dec','mgr','dt','dur','owner','public','x','y','z','n','s','flag','set','ents','d2','nope']

def lit():
    k = rng.randrange(6)
    if k==0: return rng.choice(['true','false'])
    if k==1: return rng.choice(LONGS)
    if k==2: return rng.choice(STRS)
    if k==3: return rng.choice(ENTS)
    if k==4: return rng.choice(['principal','action','resource','context'])
    return rng.choice(['principal','resource','context'])

def ext():
    k = rng.randrange(4)
    if k==0: return 'ip(%s)' % rng.choice(IPS)
    if k==1: return 'decimal(%s)' % rng.choice(DECS)
    if k==2: return 'datetime(%s)' % rng.choice(DTS)
    return 'duration(%s)' % rng.choice(DURS)

METH0 = ['isIpv4','isIpv6','isLoopback','isMulticast','toDate','toTime','toMilliseconds','toSeconds','toMinutes','toHours','toDays','isEmpty']
METH1 = ['isInRange','lessThan','lessThanOrEqual','greaterThan','greaterThanOrEqual','offset','durationSince','contains','containsAll','containsAny','getTag','hasTag']

def expr(d):
    if d <= 0:
        return rng.choice([lit, lit, ext])()
    k = rng.randrange(16)
    e = lambda: expr(d-1)
    if k==0: return '(%s %s %s)' % (e(), rng.choice(['&&','||']), e())
    if k==1: return '(%s %s %s)' % (e(), rng.choice(['==','!=','<','<=','>','>=']), e())
    if k==2: return '(%s %s %s)' % (e(), rng.choice(['+','-','*']), e())
    if k==3: return '(%s in %s)' % (e(), e())
    if k==4: return '(%s has %s)' % (e(), rng.choice(ATTRS + ['x.y','rec.y.z','"a b"']))
    if k==5: return '(%s like %s)' % (e(), rng.choice(PATS))
    if k==6: return '(%s is %s)' % (e(), rng.choice(['User','Group','NS::Doc','Action','Doc']))
    if k==7: return '(if %s then %s else %s)' % (e(), e(), e())
    if k==8: return '%s.%s' % (e(), rng.choice(ATTRS))
    if k==9: return '%s.%s()' % (e(), rng.choice(METH0))
    if k==10: return '%s.%s(%s)' % (e(), rng.choice(METH1), e())
    if k==11: return '[%s]' % ', '.join(e() for _ in range(rng.randrange(4)))
    if k==12: return '{%s}' % ', '.join('%s: %s' % (rng.choice(['a','b','"c d"']), e()) for _ in range(rng.randrange(3)))
    if k==13: return '%s%s' % (rng.choice(['!','-','!!','--']), e())
    if k==14: return '(%s is %s in %s)' % (e(), rng.choice(['User','Group']), e())
    return ext()

for i in range(N):
    pols = []
    for j in range(rng.randrange(1, 4)):
        eff = rng.choice(['permit','permit','forbid'])
        conds = ' '.join('%s { %s }' % (rng.choice(['when','when','unless']), expr(rng.randrange(1,5))) for _ in range(rng.randrange(1,3)))
        pols.append('%s(principal, action, resource) %s;' % (eff, conds))
    case = {"policies": '\n'.join(pols), "entities": ENTITIES, "principal": {"type":"User","id":rng.choice(["alice","bob","ghost"])},
            "action": {"type":"Action","id":"view"}, "resource": {"type":"NS::Doc","id":"d"}, "context": CONTEXT}
    print(json.dumps(case))
