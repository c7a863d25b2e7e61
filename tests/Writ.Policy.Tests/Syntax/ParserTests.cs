using Writ.Policy.Ast;
using Writ.Policy.Evaluation;
using Writ.Policy.Syntax;
using Writ.Policy.Tests.Corpus;

namespace Writ.Policy.Tests.Syntax;

public class ParserTests
{
    [Fact]
    public void ParsesScopeConditionsAndAnnotations()
    {
        const string text = """
            @id("p1") @advice
            permit(principal == User::"alice", action in [Action::"view", NS::Action::"edit"], resource is Photo in Album::"a")
            when { context.ip.isInRange(ip("10.0.0.0/8")) && resource.tags.contains("x") }
            unless { principal has a.b };
            forbid(principal, action, resource);
            """;
        Assert.True(PolicySet.TryParse(text, out var set, out var errors), string.Join("; ", errors));
        Assert.Equal(2, set!.Policies.Count);
        var p = set.Policies[0];
        Assert.Equal("p1", p.Id); // @id names the policy
        Assert.Equal("p1", p.Annotations["id"]);
        Assert.Equal("", p.Annotations["advice"]);
        Assert.Equal(ScopeOp.Eq, p.Principal.Op);
        Assert.Equal(new EntityUid("User", "alice"), p.Principal.Entity);
        Assert.Equal(ActionScopeOp.InSet, p.Action.Op);
        Assert.Equal(2, p.Action.Entities.Count);
        Assert.Equal(ScopeOp.IsIn, p.Resource.Op);
        Assert.Equal("Photo", p.Resource.EntityType);
        Assert.Equal(2, p.Conditions.Count);
        Assert.IsType<AndExpr>(p.Conditions[1].Body); // dotted has desugars into &&
        Assert.Equal("policy1", set.Policies[1].Id);
        Assert.Equal(Effect.Forbid, set.Policies[1].Effect);
    }

    [Fact]
    public void IdsComeFromAtIdOrPosition()
    {
        Assert.True(PolicySet.TryParse("""
            permit(principal, action, resource);
            @id("named") permit(principal, action, resource);
            permit(principal, action, resource);
            """, out var set, out var errors), string.Join("; ", errors));
        Assert.Equal(["policy0", "named", "policy2"], set!.Policies.Select(p => p.Id));

        Assert.False(PolicySet.TryParse("""
            @id("x") permit(principal, action, resource);
            @id("x") forbid(principal, action, resource);
            """, out _, out errors));
        Assert.Contains("used twice", Assert.Single(errors).Message, StringComparison.Ordinal);
        Assert.False(PolicySet.TryParse("@id(\"policy1\") permit(principal, action, resource); permit(principal, action, resource);", out _, out _));
        Assert.False(PolicySet.TryParse("@id(\"\") permit(principal, action, resource);", out _, out _));
    }

    [Theory]
    [InlineData("-9223372036854775808", long.MinValue)]
    [InlineData("9223372036854775807", long.MaxValue)]
    [InlineData("1 + 2 * 3", null)]
    public void ParsesIntegerLiterals(string text, long? expected)
    {
        Assert.True(Parser.TryParseExpression(text, out var e, out var errors), string.Join("; ", errors));
        if (expected is not null) Assert.Equal(expected, ((LongValue)((LiteralExpr)e!).Value).Value);
        else Assert.IsType<BinaryExpr>(e);
    }

    [Fact]
    public void StringEscapesAndLikePatterns()
    {
        Assert.True(Parser.TryParseExpression("\"a\\n\\u{1F600}\\\"\\x41\" like \"a\\**b*\"", out var e, out var errors), string.Join("; ", errors));
        var like = Assert.IsType<LikeExpr>(e);
        Assert.Equal("a\n\U0001F600\"A", ((StringValue)((LiteralExpr)like.Target).Value).Value);
        Assert.Equal(["a*", "b", ""], like.Pattern.Segments);
        Assert.True(like.Pattern.IsMatch("a*xxbyy"));
        Assert.False(like.Pattern.IsMatch("axxbyy"));
    }

    [Theory]
    [InlineData("permit(principal, action, resource)", 1, 36)]
    [InlineData("permit(principal, action, resource) when { 1 < 2 < 3 };", 1, 50)]
    [InlineData("permit(principal, action, resource)\nwhen { foo };", 2, 8)]
    [InlineData("permit(principal, action == Foo::\"a\", resource);", 1, 29)]
    [InlineData("permit(principal == ?resource, action, resource);", 1, 21)]
    [InlineData("permit(principal, action, resource) when { \"\\q\" };", 1, 44)]
    [InlineData("permit(principal, action, resource) when { {a: 1, a: 2} };", 1, 51)]
    [InlineData("permit(principal, action, resource) when { 9223372036854775808 };", 1, 44)]
    [InlineData("permit(principal, action, resource) when { x.foo() };", 1, 44)]
    [InlineData("@a(\"x\") @a(\"y\") permit(principal, action, resource);", 1, 10)]
    public void ReportsErrorsWithPosition(string text, int line, int column)
    {
        Assert.False(PolicySet.TryParse(text, out var set, out var errors));
        Assert.Null(set);
        var first = Assert.Single(errors);
        Assert.Equal((line, column), (first.Line, first.Column));
        Assert.DoesNotContain('\n', first.Message);
    }

    // Acceptance checked against the reference engine (cedar-wasm 4.12.0 checkParsePolicySet).
    [Theory]
    [InlineData("--1", true)]
    [InlineData("!!!!true", true)]
    [InlineData("!!!!!true", false)]
    [InlineData("----1", true)]
    [InlineData("-----1", false)]
    [InlineData("-!true", false)]
    [InlineData("!-1", false)]
    [InlineData("- -1", true)]
    [InlineData("--9223372036854775808", true)]
    [InlineData("-9223372036854775808.x", false)]
    [InlineData("-5.x", true)]
    [InlineData("context.if", false)]
    [InlineData("context has if", false)]
    [InlineData("context has a.if", false)]
    [InlineData("{if: 1}", false)]
    [InlineData("{\"if\": 1}", true)]
    [InlineData("context.__cedar", false)]
    [InlineData("context.__cedarx", true)]
    [InlineData("context.permit", true)]
    [InlineData("[1,]", true)]
    [InlineData("{a:1,}", true)]
    [InlineData("ip(\"1.1.1.1\",)", true)]
    [InlineData("[1].contains(1,)", true)]
    [InlineData("context.contains()", false)]
    [InlineData("context.lessThan()", true)]
    [InlineData("ip()", true)]
    [InlineData("foo(\"a\")", false)]
    [InlineData("principal.ip(\"1\")", false)]
    [InlineData("1 + if true then 1 else 2", false)]
    [InlineData("[if true then 1 else 2]", true)]
    [InlineData("context in context in context", false)]
    [InlineData("context[1]", false)]
    [InlineData("01", true)]
    [InlineData("\"\\x80\"", false)]
    [InlineData("\"\\u{D800}\"", false)]
    [InlineData("\"a\" like \"\\x41\"", true)]
    [InlineData("__cedar::X::\"a\" == context", false)]
    [InlineData("1\u00a0==\u30001\u2028&&\u0085true", true)]
    [InlineData("1 == 1 /* c */", false)]
    public void AcceptsWhatCedarAccepts(string expr, bool accepted)
    {
        var ok = PolicySet.TryParse("permit(principal, action, resource) when { " + expr + " };", out _, out var errors);
        Assert.True(ok == accepted, ok ? "accepted but Cedar rejects it" : "rejected: " + string.Join("; ", errors));
    }

    [Theory]
    [InlineData("permit(principal, action, resource,);", true)]
    [InlineData("permit(principal, action in [], resource);", true)]
    [InlineData("permit(principal, action in [Action::\"a\", Foo::\"b\"], resource);", false)]
    [InlineData("permit(principal in [User::\"a\"], action, resource);", false)]
    [InlineData("permit(principal, action is Action, resource);", false)]
    [InlineData("permit(action, principal, resource);", false)]
    [InlineData("permit(principal, action, resource) when { true };;", false)]
    [InlineData("permit(principal, action == Action::\"a\".b, resource);", false)]
    [InlineData("@if(\"x\") permit(principal, action, resource);", true)]
    public void PolicyLevelAcceptance(string text, bool accepted)
    {
        var ok = PolicySet.TryParse(text, out _, out var errors);
        Assert.True(ok == accepted, ok ? "accepted but Cedar rejects it" : "rejected: " + string.Join("; ", errors));
    }

    [Fact]
    public void EveryCorpusPolicyFileParses()
    {
        var files = Directory.GetFiles(Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests"), "*.cedar")
            .Concat(Directory.GetFiles(Path.Combine(CorpusFiles.ConformanceDir, "tests"), "*.cedar", SearchOption.AllDirectories))
            .ToList();
        Assert.True(files.Count > 7809);
        var failures = new List<string>();
        foreach (var f in files)
        {
            if (!PolicySet.TryParse(File.ReadAllText(f), out _, out var errors))
                failures.Add(Path.GetFileName(f) + ": " + errors[0]);
        }

        Assert.True(failures.Count == 0, $"{failures.Count} files failed:\n" + string.Join("\n", failures.Take(20)));
    }
}
