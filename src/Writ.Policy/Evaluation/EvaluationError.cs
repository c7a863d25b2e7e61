using Writ.Policy.Ast;

namespace Writ.Policy.Evaluation;

public enum EvaluationErrorKind
{
    TypeError,
    EntityDoesNotExist,
    AttributeDoesNotExist,
    TagDoesNotExist,
    IntegerOverflow,
    ExtensionError,
    WrongArity,
    UnlinkedSlot,
}

/// <summary>Why an expression could not be evaluated; the span points at the failing sub-expression.</summary>
public sealed record EvaluationError(EvaluationErrorKind Kind, string Message, SourceSpan Span)
{
    public override string ToString() => $"{Span.Line}:{Span.Column}: {Message}";
}
