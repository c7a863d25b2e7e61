using Writ.Policy.Ast;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Authorization;

/// <summary>
/// Hash index of policies by scope: each policy is filed under its most selective literal constraint
/// (principal ==, resource ==, action ==, then principal in, resource in, action in), so a request only evaluates
/// policies whose scope can match. Policies with no literal constraint are always candidates.
/// </summary>
internal sealed class PolicyIndex
{
    private readonly CedarPolicy[] _policies;
    private readonly Dictionary<EntityUid, List<int>> _principalEq = [];
    private readonly Dictionary<EntityUid, List<int>> _resourceEq = [];
    private readonly Dictionary<EntityUid, List<int>> _actionEq = [];
    private readonly Dictionary<EntityUid, List<int>> _principalIn = [];
    private readonly Dictionary<EntityUid, List<int>> _resourceIn = [];
    private readonly Dictionary<EntityUid, List<int>> _actionIn = [];
    private readonly int[] _unindexed;

    public PolicyIndex(IReadOnlyList<CedarPolicy> policies)
    {
        _policies = [.. policies];
        var unindexed = new List<int>();
        for (var i = 0; i < _policies.Length; i++)
        {
            var p = _policies[i];
            if (p.Principal.Op == ScopeOp.Eq && p.Principal.Entity is { } pe) Add(_principalEq, pe, i);
            else if (p.Resource.Op == ScopeOp.Eq && p.Resource.Entity is { } re) Add(_resourceEq, re, i);
            else if (p.Action.Op == ActionScopeOp.Eq) Add(_actionEq, p.Action.Entities[0], i);
            else if (p.Principal.Op is ScopeOp.In or ScopeOp.IsIn && p.Principal.Entity is { } pi) Add(_principalIn, pi, i);
            else if (p.Resource.Op is ScopeOp.In or ScopeOp.IsIn && p.Resource.Entity is { } ri) Add(_resourceIn, ri, i);
            else if (p.Action.Op == ActionScopeOp.In) Add(_actionIn, p.Action.Entities[0], i);
            else if (p.Action.Op == ActionScopeOp.InSet)
            {
                foreach (var a in p.Action.Entities.Distinct()) Add(_actionIn, a, i);
            }
            else unindexed.Add(i);
        }

        _unindexed = [.. unindexed];
    }

    public IReadOnlyList<CedarPolicy> Policies => _policies;

    private static void Add(Dictionary<EntityUid, List<int>> map, EntityUid key, int i)
    {
        if (!map.TryGetValue(key, out var list)) map[key] = list = [];
        list.Add(i);
    }

    /// <summary>Indices (ascending, distinct) of the policies that may apply to the request.</summary>
    public List<int> Candidates(Request request, Entities entities)
    {
        var result = new List<int>(_unindexed);
        Collect(_principalEq, request.Principal, result);
        Collect(_resourceEq, request.Resource, result);
        Collect(_actionEq, request.Action, result);
        CollectIn(_principalIn, request.Principal, entities, result);
        CollectIn(_resourceIn, request.Resource, entities, result);
        var before = result.Count;
        CollectIn(_actionIn, request.Action, entities, result);
        result.Sort();
        if (result.Count != before || _actionIn.Count > 0)
        {
            // an `action in [A, B]` policy can be reached through two keys
            var w = 0;
            for (var r = 0; r < result.Count; r++)
            {
                if (r == 0 || result[r] != result[r - 1]) result[w++] = result[r];
            }

            result.RemoveRange(w, result.Count - w);
        }

        return result;
    }

    private static void Collect(Dictionary<EntityUid, List<int>> map, EntityUid key, List<int> into)
    {
        if (map.Count > 0 && map.TryGetValue(key, out var list)) into.AddRange(list);
    }

    private static void CollectIn(Dictionary<EntityUid, List<int>> map, EntityUid key, Entities entities, List<int> into)
    {
        if (map.Count == 0) return;
        Collect(map, key, into);
        if (!entities.TryGet(key, out var e)) return;
        if (e.Ancestors.Count < map.Count)
        {
            foreach (var a in e.Ancestors) Collect(map, a, into);
        }
        else
        {
            foreach (var (k, list) in map)
            {
                if (e.Ancestors.Contains(k)) into.AddRange(list);
            }
        }
    }
}
