import json, random, sys
rng = random.Random(int(sys.argv[1]))
N = int(sys.argv[2])
USERS = ['alice','bob','carol','ghost']
GROUPS = ['staff','admins','all']
def E(t,i): return {"type":t,"id":i}
def ext(fn,arg): return {"__extn":{"fn":fn,"arg":arg}}
def mkents():
    ents = []
    for u in USERS[:3]:
        attrs = {"age": rng.randrange(10,60), "name": u.capitalize(), "level": rng.randrange(0,5),
                 "tags": rng.sample(["a","b","c","d"], rng.randrange(0,4)), "ip": ext("ip", rng.choice(["10.1.2.3","192.168.1.5","127.0.0.1","::1","10.0.0.0/8"])),
                 "score": ext("decimal", rng.choice(["0.5","1.25","-3.0","100.0001"])), "joined": ext("datetime", rng.choice(["2020-01-01","2024-06-01T12:00:00Z","1969-07-20T20:17:00Z"])),
                 "shift": ext("duration", rng.choice(["8h","-30m","1d2h","0ms"])), "mgr": {"__entity": E("User", rng.choice(USERS))},
                 "addr": {"city": rng.choice(["Oslo","Rome"]), "zip": rng.randrange(1000,9999)}}
        for k in list(attrs):
            if rng.random() < 0.15: del attrs[k]
        tags = {k: rng.choice(["x","y",1,True]) for k in rng.sample(["t1","t2","t3"], rng.randrange(0,3))}
        ents.append({"uid":E("User",u),"attrs":attrs,"parents":[E("Group",g) for g in rng.sample(GROUPS, rng.randrange(0,3))],"tags":tags})
    ents.append({"uid":E("Group","staff"),"attrs":{},"parents":[E("Group","all")] if rng.random()<0.8 else []})
    ents.append({"uid":E("Group","admins"),"attrs":{},"parents":[E("Group","staff")]})
    ents.append({"uid":E("Group","all"),"attrs":{},"parents":[]})
    for d in ['d1','d2']:
        ents.append({"uid":E("NS::Doc",d),"attrs":{"owner":{"__entity":E("User",rng.choice(USERS))},"public":rng.random()<0.5,"size":rng.randrange(0,100),"labels":rng.sample(["a","b","c"],rng.randrange(0,3))},
                     "parents":[E("NS::Folder","f")] if rng.random()<0.5 else []})
    ents.append({"uid":E("NS::Folder","f"),"attrs":{},"parents":[]})
    ents.append({"uid":E("Action","view"),"attrs":{},"parents":[E("Action","read")]})
    ents.append({"uid":E("Action","edit"),"attrs":{},"parents":[E("Action","write")]})
    ents.append({"uid":E("Action","read"),"attrs":{},"parents":[E("Action","any")]})
    ents.append({"uid":E("Action","write"),"attrs":{},"parents":[E("Action","any")]})
    return ents

def q(s): return json.dumps(s)
def ent_lit(): return rng.choice(['User::"%s"' % rng.choice(USERS), 'Group::"%s"' % rng.choice(GROUPS), 'NS::Doc::"d1"', 'NS::Folder::"f"', 'Action::"view"'])
def g(t, d):
    if d <= 0 or rng.random() < 0.25:
        return leaf(t)
    if t == 'Bool':
        k = rng.randrange(14)
        if k == 0: return '(%s && %s)' % (g('Bool',d-1), g('Bool',d-1))
        if k == 1: return '(%s || %s)' % (g('Bool',d-1), g('Bool',d-1))
        if k == 2: return '!%s' % g('Bool',d-1)
        if k == 3: return '(%s %s %s)' % (g('Long',d-1), rng.choice(['<','<=','>','>=','==','!=']), g('Long',d-1))
        if k == 4: return '(%s in %s)' % (g('Entity',d-1), rng.choice([g('Entity',d-1), '[%s]' % ', '.join(g('Entity',d-1) for _ in range(rng.randrange(0,3)))]))
        if k == 5: return '(%s has %s)' % (rng.choice(['principal','resource','context','principal.addr','principal.mgr']), rng.choice(['age','name','tags','addr','addr.city','mgr','owner','public','ip','x','size','level']))
        if k == 6: return '(%s like %s)' % (g('String',d-1), rng.choice(['"*"','"A*"','"*o*"','"Al?ce"','"*e"','"Bob"']))
        if k == 7: return '(%s is %s)' % (g('Entity',d-1), rng.choice(['User','Group','NS::Doc']))
        if k == 8: return '%s.contains(%s)' % (rng.choice(['principal.tags','resource.labels','["a","b"]']), g('String',d-1))
        if k == 9: return '%s.%s(%s)' % (rng.choice(['principal.tags','resource.labels']), rng.choice(['containsAll','containsAny']), rng.choice(['["a"]','["a","b"]','[]','principal.tags']))
        if k == 10: return rng.choice(['principal.ip.isInRange(ip("10.0.0.0/8"))','principal.ip.isLoopback()','principal.ip.isIpv4()','principal.score.lessThan(decimal("1.0"))','principal.score.greaterThanOrEqual(context.d)','principal.joined < datetime("2021-01-01")','principal.joined.offset(principal.shift) > context.now','context.now.toDate() == datetime("2024-06-01")','principal.shift.toHours() >= 8','principal.hasTag("t1")','principal.getTag("t1") == "x"','context.now.durationSince(principal.joined) > duration("1000d")'])
        if k == 11: return '(if %s then %s else %s)' % (g('Bool',d-1), g('Bool',d-1), g('Bool',d-1))
        if k == 12: return '(%s == %s)' % (g(rng.choice(['String','Entity','Set']),d-1), g(rng.choice(['String','Entity','Set']),d-1))
        return '(%s is %s in %s)' % (g('Entity',d-1), rng.choice(['User','NS::Doc']), g('Entity',d-1))
    if t == 'Long':
        k = rng.randrange(5)
        if k == 0: return '(%s %s %s)' % (g('Long',d-1), rng.choice(['+','-','*']), g('Long',d-1))
        if k == 1: return '-%s' % g('Long', d-1) if rng.random()<0.3 else '(-%s)' % g('Long',d-1)
        if k == 2: return '(if %s then %s else %s)' % (g('Bool',d-1), g('Long',d-1), g('Long',d-1))
        return leaf('Long')
    if t == 'Entity':
        k = rng.randrange(3)
        if k == 0: return '%s.mgr' % g('Entity', d-1)
        if k == 1: return '(if %s then %s else %s)' % (g('Bool',d-1), g('Entity',d-1), g('Entity',d-1))
        return leaf('Entity')
    if t == 'Set':
        return '[%s]' % ', '.join(g(rng.choice(['Long','String','Entity']), d-1) for _ in range(rng.randrange(0,3)))
    return leaf(t)

def leaf(t):
    if t == 'Bool': return rng.choice(['true','false','resource.public','context.flag','principal.level > 2'])
    if t == 'Long': return rng.choice(['0','1','-1','42','9223372036854775807','-9223372036854775808','principal.age','resource.size','principal.level','context.n','principal.addr.zip','4611686018427387904'])
    if t == 'String': return rng.choice(['"a"','"Alice"','principal.name','principal.addr.city','context.s','""'])
    if t == 'Entity': return rng.choice(['principal','resource','action','principal.mgr','resource.owner', ent_lit()])
    if t == 'Set': return rng.choice(['principal.tags','resource.labels','[]','context.set'])
    return 'true'

def scope(var):
    k = rng.randrange(5)
    if k == 0: return var
    if k == 1: return '%s == %s' % (var, 'User::"%s"' % rng.choice(USERS) if var=='principal' else 'NS::Doc::"%s"' % rng.choice(['d1','d2']))
    if k == 2: return '%s in %s' % (var, 'Group::"%s"' % rng.choice(GROUPS) if var=='principal' else 'NS::Folder::"f"')
    if k == 3: return '%s is %s' % (var, rng.choice(['User','NS::Doc','Group']))
    return '%s is %s in %s' % (var, 'User' if var=='principal' else 'NS::Doc', 'Group::"%s"' % rng.choice(GROUPS) if var=='principal' else 'NS::Folder::"f"')
def ascope():
    k = rng.randrange(4)
    if k == 0: return 'action'
    if k == 1: return 'action == Action::"%s"' % rng.choice(['view','edit','read'])
    if k == 2: return 'action in Action::"%s"' % rng.choice(['read','write','any','view'])
    return 'action in [%s]' % ', '.join('Action::"%s"' % a for a in rng.sample(['view','edit','read','write','any'], rng.randrange(0,3)))

for i in range(N):
    pols = []
    for j in range(rng.randrange(1, 11)):
        eff = 'forbid' if rng.random() < 0.25 else 'permit'
        conds = ' '.join('%s { %s }' % ('when' if rng.random() < 0.8 else 'unless', g('Bool', rng.randrange(0,4))) for _ in range(rng.randrange(0,3)))
        pols.append('%s(%s, %s, %s) %s;' % (eff, scope('principal'), ascope(), scope('resource'), conds))
    ctx = {"n": rng.randrange(-5, 50), "s": rng.choice(["Alice","x"]), "flag": rng.random()<0.5, "set": [1, "a"],
           "d": ext("decimal", rng.choice(["0.75","1.5"])), "now": ext("datetime", rng.choice(["2024-06-01T12:34:56Z","2019-01-01"]))}
    case = {"policies": '\n'.join(pols), "entities": mkents(), "principal": E("User", rng.choice(USERS)),
            "action": E("Action", rng.choice(['view','edit','read','write'])), "resource": E("NS::Doc", rng.choice(['d1','d2','d3'])), "context": ctx}
    print(json.dumps(case))
