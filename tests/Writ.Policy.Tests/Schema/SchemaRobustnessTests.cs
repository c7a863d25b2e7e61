using System.Text;
using Writ.Policy.Ast;
using Writ.Policy.Schema;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Schema;

/// <summary>Hostile schemas get an error, never a crash or a hang.</summary>
public class SchemaRobustnessTests
{
    [Fact]
    public void Deeply_nested_cedar_types_are_an_error_not_a_stack_overflow()
    {
        var text = "entity E { a: " + string.Concat(Enumerable.Repeat("Set<", 100_000)) + "Long" + new string('>', 100_000) + " };";
        Assert.False(CedarSchema.TryParseCedar(text, out _, out var errors));
        Assert.Contains("nested", errors[0].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Deeply_nested_records_are_an_error()
    {
        var text = "entity E " + string.Concat(Enumerable.Repeat("{ a: ", 50_000)) + "Long" + string.Concat(Enumerable.Repeat(" }", 50_000)) + ";";
        Assert.False(CedarSchema.TryParseCedar(text, out _, out var errors));
        Assert.Contains("nested", errors[0].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_long_chain_of_common_types_is_an_error_not_a_stack_overflow()
    {
        var sb = new StringBuilder();
        for (var i = 0; i < 50_000; i++)
            sb.Append("type T").Append(i).Append(" = T").Append(i + 1).Append(";\n");
        sb.Append("type T50000 = Long; entity E { a: T0 };");
        Assert.False(CedarSchema.TryParseCedar(sb.ToString(), out _, out var errors));
        Assert.Contains(errors, e => e.Message.Contains("nested common types", StringComparison.Ordinal));
    }

    [Fact]
    public void Common_types_that_expand_too_deep_are_an_error()
    {
        // Each definition is shallow, but expanded they nest 40 * 3 levels.
        var sb = new StringBuilder();
        for (var i = 0; i < 40; i++)
            sb.Append("type T").Append(i).Append(" = Set<Set<Set<T").Append(i + 1).Append(">>>;\n");
        sb.Append("type T40 = Long; entity E { a: T0 };");
        Assert.False(CedarSchema.TryParseCedar(sb.ToString(), out _, out var errors));
        Assert.Contains(errors, e => e.Message.Contains("levels deep", StringComparison.Ordinal));
    }

    [Fact]
    public void Deeply_nested_json_is_an_error()
    {
        var json = """{ "": { "entityTypes": { "E": { "shape": """ + string.Concat(Enumerable.Repeat("""{ "type": "Set", "element": """, 10_000)) + """{ "type": "Long" }""" + new string('}', 10_000) + " } }, \"actions\": {} } }";
        Assert.False(CedarSchema.TryParseJson(json, out _, out var errors));
        Assert.NotEmpty(errors);
    }

    [Fact]
    public void Shared_common_types_stay_linear_in_the_validator()
    {
        // T0 expands to 2^30 leaves if copied naively; the model and the validator share the subtrees.
        var sb = new StringBuilder();
        for (var i = 0; i < 30; i++)
            sb.Append("type T").Append(i).Append(" = { l: T").Append(i + 1).Append(", r: T").Append(i + 1).Append(" };\n");
        sb.Append("type T30 = Long; entity E { a: T0 }; action go appliesTo { principal: E, resource: E, context: T0 };");
        Assert.True(CedarSchema.TryParseCedar(sb.ToString(), out var schema, out var errors), string.Join(" | ", errors));
        Assert.True(PolicySet.TryParse("""permit(principal, action, resource) when { principal.a.l.r.l.r == context.r.l };""", out var set, out _));
        var result = Validator.Validate(set!, schema!);
        Assert.Contains(result.Errors, e => e.Kind == ValidationErrorKind.IncompatibleTypes);
    }
}
