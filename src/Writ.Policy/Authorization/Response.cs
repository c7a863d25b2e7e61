using Writ.Policy.Ast;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Authorization;

public enum Decision { Deny, Allow }

/// <summary>A policy that could not be evaluated for a request (it was skipped).</summary>
public sealed record PolicyError(string PolicyId, EvaluationError Error)
{
    public override string ToString() => $"policy {PolicyId}: {Error}";
}

/// <summary>
/// The answer to a request. <see cref="Reasons"/> are the ids of the determining policies: the satisfied permits when
/// allowed, the satisfied forbids when denied (empty for a default deny). <see cref="Errors"/> lists every policy
/// that failed to evaluate, in policy-set order.
/// </summary>
public sealed record Response(Decision Decision, IReadOnlySet<string> Reasons, IReadOnlyList<PolicyError> Errors)
{
    /// <summary>The determining policies themselves (for their annotations), in policy-set order.</summary>
    public IReadOnlyList<CedarPolicy> DeterminingPolicies { get; init; } = [];

    public bool IsAllowed => Decision == Decision.Allow;
}
