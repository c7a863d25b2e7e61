using Writ.Policy.Ast;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Authorization;

/// <summary>An authorization request: who (principal) wants to do what (action) to which resource, in which context.</summary>
public sealed class Request
{
    public Request(EntityUid principal, EntityUid action, EntityUid resource, RecordValue? context = null)
    {
        Principal = principal ?? throw new ArgumentNullException(nameof(principal));
        Action = action ?? throw new ArgumentNullException(nameof(action));
        Resource = resource ?? throw new ArgumentNullException(nameof(resource));
        Context = context ?? RecordValue.Empty;
        PrincipalValue = new EntityValue(principal);
        ActionValue = new EntityValue(action);
        ResourceValue = new EntityValue(resource);
    }

    public EntityUid Principal { get; }
    public EntityUid Action { get; }
    public EntityUid Resource { get; }
    public RecordValue Context { get; }

    internal EntityValue PrincipalValue { get; }
    internal EntityValue ActionValue { get; }
    internal EntityValue ResourceValue { get; }
}
