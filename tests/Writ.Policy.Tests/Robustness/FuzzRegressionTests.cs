using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;
using Writ.Policy.Schema.Syntax;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Robustness;

/// <summary>Engine bugs the fuzz tests found, pinned down one by one.</summary>
public class FuzzRegressionTests
{
    private static void NoLineBreak(string message)
    {
        Assert.False(string.IsNullOrWhiteSpace(message));
        Assert.DoesNotContain('\n', message);
        Assert.DoesNotContain('\r', message);
        Assert.DoesNotContain('\u2028', message);
    }

    [Theory]
    [InlineData("Set<", ">")]
    [InlineData("{ a: ", "}")]
    public void DeeplyNestedSchemaTypesAreAnErrorNotAStackOverflow(string open, string close)
    {
        var text = "entity A { a: " + string.Concat(Enumerable.Repeat(open, 50_000)) + "Long" + string.Concat(Enumerable.Repeat(close, 50_000)) + " };";
        var ok = true;
        IReadOnlyList<SchemaError> errors = [];
        var t = new Thread(() => ok = CedarSchema.TryParseCedar(text, out _, out errors), maxStackSize: 1024 * 1024);
        t.Start();
        Assert.True(t.Join(TimeSpan.FromSeconds(30)));
        Assert.False(ok);
        Assert.Contains($"nested more than {CedarSchemaParser.MaxTypeDepth} levels deep", errors[0].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NestingUpToTheLimitStillParses()
    {
        // The entity's shape record, the Sets and Long together are exactly MaxTypeDepth levels.
        var sets = CedarSchemaParser.MaxTypeDepth - 2;
        var text = "entity A { a: " + string.Concat(Enumerable.Repeat("Set<", sets)) + "Long" + new string('>', sets) + " };";
        Assert.True(CedarSchema.TryParseCedar(text, out _, out var errors), string.Join(" | ", errors));
    }

    [Fact]
    public async Task LongNamespacePathsParseInLinearTime()
    {
        // A million segments: quadratic string building (the bug: ~10 s at 100,000) would take many minutes, linear
        // parsing takes about a second. The deadline is a hang guard far from either, not a timing comparison.
        var text = "namespace " + string.Join("::", Enumerable.Repeat("N", 1_000_000)) + " { entity A; }";
        var parse = Task.Run(() => CedarSchema.TryParseCedar(text, out _, out _), TestContext.Current.CancellationToken);
        var done = await Task.WhenAny(parse, Task.Delay(TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken));
        Assert.True(done == parse, "parsing a namespace path of a million segments did not finish: super-linear again?");
        await parse;
    }

    [Fact]
    public void ErrorsQuotingInputStayOnOneLine()
    {
        Assert.False(PolicyJson.TryParsePolicySet("nul\r\nl", out _, out var error));
        NoLineBreak(error);
        Assert.False(PolicySet.TryParse("\"a\nb\" permit", out _, out var errors));
        NoLineBreak(errors[0].Message);
        Assert.False(CedarSchema.TryParseCedar("entity \"a\\\nb\";", out _, out var schemaErrors));
        NoLineBreak(schemaErrors[0].Message);
        Assert.False(PolicySet.TryParse("permit(principal, action, resource) when { \"\\\n\" };", out _, out errors));
        NoLineBreak(errors[0].Message);

        Assert.True(PolicySet.TryParse("permit(principal, action, resource) when { ip(\"1.2.3.4\n\u2028\").isIpv4() };\npermit(principal, action, resource) when { context[\"a\nb\"] };", out var set, out errors), string.Join(" | ", errors));
        Assert.True(CedarSchema.TryParseCedar("action read appliesTo { principal: [User], resource: [User], context: { n: Long } }; entity User;", out var schema, out var serrs), string.Join(" | ", serrs));
        var validation = Validator.Validate(set!, schema!);
        Assert.Equal(2, validation.Errors.Select(e => e.PolicyId).Distinct().Count());
        Assert.All(validation.Errors, e => NoLineBreak(e.Message));
        var response = Authorizer.IsAuthorized(new Request(new EntityUid("User", "a"), new EntityUid("Action", "read"), new EntityUid("User", "a")), set!, Entities.Empty);
        Assert.Equal(2, response.Errors.Count);
        Assert.All(response.Errors, e => NoLineBreak(e.Error.Message));
    }

    [Fact]
    public void QuotedStringsEscapeLineSeparators()
    {
        Assert.Equal("\"a\\u{2028}b\\u{85}\"", EntityUid.Quote("a\u2028b\u0085"));
        Assert.True(PolicySet.TryParse("permit(principal == User::" + EntityUid.Quote("x\u2028y") + ", action, resource);", out var set, out var errors), string.Join(" | ", errors));
        Assert.Equal("x\u2028y", set!.Policies[0].Principal.Entity!.Id);
    }
}
