using BenchmarkDotNet.Attributes;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;

namespace Writ.Benchmarks.Policy;

/// <summary>Cedar decisions at 10 policies (goal: at least 100,000 decisions/s on one thread) and policy parsing.</summary>
[MemoryDiagnoser]
public class AuthorizerBenchmarks
{
    private const string PolicyText = """
        permit(principal == User::"alice", action == Action::"view", resource) when { resource.owner == principal };
        permit(principal in Group::"staff", action in [Action::"view", Action::"edit"], resource) when { context.ip.isInRange(ip("10.0.0.0/8")) };
        forbid(principal, action, resource) when { principal.banned };
        permit(principal, action == Action::"delete", resource) when { principal has admin && principal.admin };
        permit(principal is User, action, resource is Doc) when { resource.public };
        permit(principal == User::"bob", action, resource);
        permit(principal, action, resource == Doc::"d1") when { context.hour < 18 && context.hour >= 8 };
        forbid(principal, action == Action::"delete", resource) unless { principal.admin };
        permit(principal in Group::"admins", action, resource);
        permit(principal, action, resource) when { resource.tags.contains("shared") && principal.level > 3 };
        """;

    private PolicySet _policies = PolicySet.Empty;
    private Entities _entities = Entities.Empty;
    private Request _request = null!;

    [GlobalSetup]
    public void Setup()
    {
        if (!PolicySet.TryParse(PolicyText, out var set, out var errors)) throw new InvalidOperationException(errors[0].ToString());
        if (!Entities.TryParseJson("""
            [{"uid":{"type":"User","id":"alice"},"attrs":{"banned":false,"admin":false,"level":5},"parents":[{"type":"Group","id":"staff"}]},
             {"uid":{"type":"Group","id":"staff"},"attrs":{},"parents":[]},
             {"uid":{"type":"Doc","id":"d1"},"attrs":{"owner":{"__entity":{"type":"User","id":"alice"}},"public":false,"tags":["shared","x"]},"parents":[]}]
            """, null, out var entities, out var error)) throw new InvalidOperationException(error);
        if (!CedarJson.TryParseContext("""{"ip":{"__extn":{"fn":"ip","arg":"10.1.1.1"}},"hour":10}""", null, null, out var context, out error))
            throw new InvalidOperationException(error);
        _policies = set!;
        _entities = entities!;
        _request = new Request(new EntityUid("User", "alice"), new EntityUid("Action", "view"), new EntityUid("Doc", "d1"), context);
    }

    [Benchmark]
    public Decision IsAuthorized() => Authorizer.IsAuthorized(_request, _policies, _entities).Decision;

    [Benchmark]
    public int ParseTenPolicies() => PolicySet.TryParse(PolicyText, out var set, out _) ? set!.Policies.Count : 0;
}
