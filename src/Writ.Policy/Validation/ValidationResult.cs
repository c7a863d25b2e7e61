namespace Writ.Policy.Validation;

/// <summary>What a validation error is about (stable codes for callers and tests).</summary>
public enum ValidationErrorKind
{
    UnrecognizedEntityType,
    UnrecognizedActionId,
    InvalidEnumEntity,
    InvalidActionApplication,
    UnexpectedType,
    IncompatibleTypes,
    UnsafeAttributeAccess,
    UnsafeOptionalAttributeAccess,
    UnsafeTagAccess,
    NoTagsAllowed,
    UndefinedFunction,
    WrongNumberArguments,
    FunctionArgumentValidation,
    NonLiteralExtensionConstructor,
    EmptySetForbidden,
}

/// <summary>A strict-mode validation error: which policy, where (1-based line:column; 0 when unknown), and what to fix.</summary>
public sealed record ValidationError(string PolicyId, ValidationErrorKind Kind, string Message, int Line, int Column)
{
    public override string ToString() => Line > 0 ? $"{PolicyId} at {Line}:{Column}: {Message}" : $"{PolicyId}: {Message}";
}

/// <summary>A validation warning (does not fail validation), e.g. a policy that can never apply.</summary>
public sealed record ValidationWarning(string PolicyId, string Message, int Line, int Column)
{
    public override string ToString() => Line > 0 ? $"{PolicyId} at {Line}:{Column}: {Message}" : $"{PolicyId}: {Message}";
}

/// <summary>The outcome of <see cref="Validator.Validate"/>: policies pass when there are no errors.</summary>
public sealed record ValidationResult(IReadOnlyList<ValidationError> Errors, IReadOnlyList<ValidationWarning> Warnings)
{
    public bool Passed => Errors.Count == 0;
}
