using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Tests.Authorization;

public class AuthorizerTests
{
    private static PolicySet Parse(string text)
    {
        Assert.True(PolicySet.TryParse(text, out var set, out var errors), string.Join("; ", errors));
        return set!;
    }

    private static Entities Store()
    {
        Assert.True(Entities.TryParseJson("""
            [
              {"uid": {"type": "User", "id": "alice"}, "attrs": {"banned": false}, "parents": [{"type": "Group", "id": "staff"}]},
              {"uid": {"type": "User", "id": "mallory"}, "attrs": {"banned": true}, "parents": [{"type": "Group", "id": "staff"}]},
              {"uid": {"type": "Group", "id": "staff"}, "attrs": {}, "parents": [{"type": "Group", "id": "all"}]},
              {"uid": {"type": "Action", "id": "read"}, "attrs": {}, "parents": [{"type": "Action", "id": "readOnly"}]},
              {"uid": {"type": "Action", "id": "write"}, "attrs": {}, "parents": []}
            ]
            """, null, out var e, out var err), err);
        return e!;
    }

    private static Request Req(string user, string action, string resource = "doc") =>
        new(new EntityUid("User", user), new EntityUid("Action", action), new EntityUid("Doc", resource));

    [Fact]
    public void DefaultIsDeny()
    {
        var r = Authorizer.IsAuthorized(Req("alice", "read"), PolicySet.Empty, Store());
        Assert.Equal(Decision.Deny, r.Decision);
        Assert.Empty(r.Reasons);
        Assert.Empty(r.Errors);
    }

    [Fact]
    public void ForbidOverridesPermitAndIsTheReason()
    {
        var set = Parse("""
            @id("allow-staff") permit(principal in Group::"all", action in Action::"readOnly", resource);
            @id("no-banned") forbid(principal, action, resource) when { principal.banned };
            """);
        var ok = Authorizer.IsAuthorized(Req("alice", "read"), set, Store());
        Assert.Equal(Decision.Allow, ok.Decision);
        Assert.Equal(["allow-staff"], ok.Reasons);
        Assert.Equal("allow-staff", Assert.Single(ok.DeterminingPolicies).Annotations["id"]);

        var attacker = Authorizer.IsAuthorized(Req("mallory", "read"), set, Store());
        Assert.Equal(Decision.Deny, attacker.Decision);
        Assert.Equal(["no-banned"], attacker.Reasons);
    }

    [Fact]
    public void ErroringForbidIsSkippedAndReported()
    {
        // An attacker-controlled request that makes a forbid error must not be mistaken for "forbid not satisfied"
        // silently: the error is reported so the caller can see it.
        var set = Parse("""
            permit(principal, action, resource);
            forbid(principal, action, resource) when { principal.banned };
            """);
        var r = Authorizer.IsAuthorized(Req("ghost", "read"), set, Store());
        Assert.Equal(Decision.Allow, r.Decision);
        var err = Assert.Single(r.Errors);
        Assert.Equal("policy1", err.PolicyId);
        Assert.Equal(EvaluationErrorKind.EntityDoesNotExist, err.Error.Kind);
    }

    [Fact]
    public void UnknownPrincipalIsNotInAnyGroup()
    {
        // An entity missing from the store has no ancestors: claiming membership by name does not work.
        var set = Parse("permit(principal in Group::\"staff\", action, resource);");
        Assert.Equal(Decision.Deny, Authorizer.IsAuthorized(Req("intruder", "read"), set, Store()).Decision);
        Assert.Equal(Decision.Allow, Authorizer.IsAuthorized(Req("alice", "read"), set, Store()).Decision);
        var spoof = new Request(new EntityUid("Group", "staff"), new EntityUid("Action", "read"), new EntityUid("Doc", "d"));
        Assert.Equal(Decision.Allow, Authorizer.IsAuthorized(spoof, set, Store()).Decision); // `in` is reflexive, as in Cedar
    }

    [Fact]
    public void ConcurrentDecisionsMatchSequentialOnes()
    {
        // One parsed policy set shared by many threads (lazy index and constant caches included).
        var text = """
            permit(principal in Group::"all", action in Action::"readOnly", resource) when { context.ip.isInRange(ip("10.0.0.0/8")) };
            forbid(principal, action, resource) when { principal.banned };
            permit(principal == User::"alice", action == Action::"write", resource);
            """;
        var store = Store();
        var requests = new List<Request>();
        foreach (var user in new[] { "alice", "mallory", "ghost" })
        foreach (var action in new[] { "read", "write" })
        foreach (var ip in new[] { "10.1.1.1", "192.168.0.1", "bad" })
        {
            var ctx = new RecordValue(new Dictionary<string, Value>(StringComparer.Ordinal)
            {
                ["ip"] = ip == "bad" ? Value.Of(ip) : Writ.Policy.Extensions.IpAddrValue.TryParse(ip, out var v, out _) ? v! : throw new InvalidOperationException(),
            });
            requests.Add(new Request(new EntityUid("User", user), new EntityUid("Action", action), new EntityUid("Doc", "d"), ctx));
        }

        var expected = requests.Select(r => Describe(Authorizer.IsAuthorized(r, Parse(text), store))).ToList();
        var shared = Parse(text);
        var results = new string[requests.Count * 200];
        Parallel.For(0, results.Length, i => results[i] = Describe(Authorizer.IsAuthorized(requests[i % requests.Count], shared, store)));
        for (var i = 0; i < results.Length; i++) Assert.Equal(expected[i % requests.Count], results[i]);
        Assert.Contains(expected, e => e.StartsWith("Allow", StringComparison.Ordinal));
        Assert.Contains(expected, e => e.Contains("policy0", StringComparison.Ordinal) && e.StartsWith("Deny", StringComparison.Ordinal));

        static string Describe(Response r) => $"{r.Decision} {string.Join(",", r.Reasons.Order())} {string.Join(",", r.Errors.Select(e => e.PolicyId))}";
    }

    [Fact]
    public void StoresDoNotShareAncestorClosures()
    {
        // The same Entity object in two stores: membership granted in one store must not leak into the other.
        var user = new Entity(new EntityUid("User", "u"), parents: [new EntityUid("Group", "g")]);
        var withAdmin = Entities.Create([user, new Entity(new EntityUid("Group", "g"), parents: [new EntityUid("Group", "admins")])]);
        var without = Entities.Create([user, new Entity(new EntityUid("Group", "g"))]);
        var set = Parse("permit(principal in Group::\"admins\", action, resource);");
        var req = new Request(new EntityUid("User", "u"), new EntityUid("Action", "a"), new EntityUid("Doc", "d"));
        Assert.Equal(Decision.Allow, Authorizer.IsAuthorized(req, set, withAdmin).Decision);
        Assert.Equal(Decision.Deny, Authorizer.IsAuthorized(req, set, without).Decision);
        Assert.Equal(Decision.Allow, Authorizer.IsAuthorized(req, set, withAdmin).Decision);
    }

    [Fact]
    public void IndexedAndUnindexedPoliciesAgreeWithFullScan()
    {
        var set = Parse("""
            permit(principal == User::"alice", action, resource);
            permit(principal, action, resource == Doc::"d1");
            permit(principal, action == Action::"write", resource);
            permit(principal in Group::"all", action, resource) when { resource == Doc::"d2" };
            permit(principal, action, resource in Doc::"folder");
            permit(principal, action in [Action::"readOnly", Action::"write"], resource) when { resource == Doc::"d3" };
            permit(principal is User, action, resource) when { resource == Doc::"d4" };
            forbid(principal == User::"mallory", action == Action::"write", resource == Doc::"d1");
            """);
        var store = Store();
        foreach (var user in new[] { "alice", "mallory", "ghost" })
        foreach (var action in new[] { "read", "write", "other" })
        foreach (var doc in new[] { "d1", "d2", "d3", "d4", "folder", "x" })
        {
            var req = Req(user, action, doc);
            var r = Authorizer.IsAuthorized(req, set, store);
            var expected = new HashSet<string>();
            var forbidden = new HashSet<string>();
            foreach (var p in set.Policies)
            {
                if (!Authorizer.ScopeMatches(p, req, store)) continue;
                var ok = p.Conditions.All(c => Writ.Policy.Evaluation.Evaluator.TryEvaluate(c.Body, req, store, out var v, out _) && v == BoolValue.True);
                if (ok) (p.Effect == Effect.Permit ? expected : forbidden).Add(p.Id);
            }

            var want = forbidden.Count > 0 ? forbidden : expected;
            Assert.True(want.SetEquals(r.Reasons), $"{user} {action} {doc}: want {string.Join(",", want)} got {string.Join(",", r.Reasons)}");
            Assert.Equal(forbidden.Count == 0 && expected.Count > 0 ? Decision.Allow : Decision.Deny, r.Decision);
        }
    }
}
