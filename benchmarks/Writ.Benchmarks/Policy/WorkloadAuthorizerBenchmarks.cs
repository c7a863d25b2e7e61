using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;

namespace Writ.Benchmarks.Policy;

/// <summary>
/// Cedar decisions on the workload-identity-shaped sets of <see cref="WorkloadPolicySets"/> (the same inputs
/// <c>benchmarks/cedar/bench.sh</c> feeds to cedar-wasm), parsed once. Goals: at least 100,000 decisions/s on one thread
/// at 10 policies and 20,000 at 1,000. <see cref="DecideMix"/> reports the mean time of one decision over the request mix
/// (allows, forbids on unknown hashes, audience and TTL violations, expired registrations, default denies).
/// </summary>
[MemoryDiagnoser]
public class WorkloadAuthorizerBenchmarks
{
    private PolicySet _policies = PolicySet.Empty;
    private Entities _entities = Entities.Empty;
    private Request[] _requests = [];
    private string _policyText = "";

    [Params(10, 1000)]
    public int Policies { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var set = WorkloadPolicySets.Generate(Policies);
        _policyText = set.PolicyText;
        if (!PolicySet.TryParse(set.PolicyText, out var policies, out var errors))
            throw new InvalidOperationException($"the generated policies do not parse: {errors[0]}");
        if (!Entities.TryParseJson(set.EntitiesJson, null, out var entities, out var error))
            throw new InvalidOperationException($"the generated entities do not parse: {error}");
        using var doc = JsonDocument.Parse(set.RequestsJson);
        var requests = new List<Request>();
        foreach (var element in doc.RootElement.EnumerateArray())
        {
            if (!CedarJson.TryParseRequest(element.GetRawText(), null, out var request, out error))
                throw new InvalidOperationException($"a generated request does not parse: {error}");
            requests.Add(request!);
        }

        if (requests.Count != WorkloadPolicySets.RequestCount)
            throw new InvalidOperationException($"expected {WorkloadPolicySets.RequestCount} generated requests, got {requests.Count}");
        _policies = policies!;
        _entities = entities!;
        _requests = [.. requests];
    }

    /// <summary>One decision per request of the mix; BenchmarkDotNet divides by the mix size, so the figure is per decision.</summary>
    [Benchmark(OperationsPerInvoke = WorkloadPolicySets.RequestCount)]
    public int DecideMix()
    {
        var allowed = 0;
        foreach (var request in _requests)
        {
            if (Authorizer.IsAuthorized(request, _policies, _entities).IsAllowed) allowed++;
        }

        return allowed;
    }

    /// <summary>The first request of the mix alone, decided again and again.</summary>
    [Benchmark]
    public Decision DecideOne() => Authorizer.IsAuthorized(_requests[0], _policies, _entities).Decision;

    /// <summary>Parsing the whole set (done once at load; shown for scale).</summary>
    [Benchmark]
    public int ParseSet() => PolicySet.TryParse(_policyText, out var set, out _) ? set!.Policies.Count : 0;
}
