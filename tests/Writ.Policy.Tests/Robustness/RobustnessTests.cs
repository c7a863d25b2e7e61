using System.Text;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Syntax;
using Writ.Policy.Tests.Corpus;

namespace Writ.Policy.Tests.Robustness;

/// <summary>Hostile input: random, truncated and deeply nested text must produce errors, never exceptions or hangs.</summary>
public class RobustnessTests
{
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(20);

    public static TheoryData<string> DeepInputs()
    {
        const int n = 100_000;
        return new TheoryData<string>
        {
            new string('(', n) + "1" + new string(')', n),
            new string('[', n) + new string(']', n),
            string.Concat(Enumerable.Repeat("{a:", n)) + "1" + new string('}', n),
            string.Concat(Enumerable.Repeat("if true then ", n)) + "1" + string.Concat(Enumerable.Repeat(" else 2", n)),
            new string('!', n) + "true",
            new string('-', n) + "1",
            "context" + string.Concat(Enumerable.Repeat(".a", n)),
            "context" + string.Concat(Enumerable.Repeat("[\"a\"]", n)),
            string.Join(" + ", Enumerable.Repeat("1", n)),
            string.Join(" || ", Enumerable.Repeat("false", n)),
            string.Join(" && ", Enumerable.Repeat("true", n)),
            "context has " + string.Join(".", Enumerable.Repeat("a", n)),
            string.Concat(Enumerable.Repeat("ip(", n)) + "\"1.1.1.1\"" + new string(')', n),
            "[1" + string.Concat(Enumerable.Repeat(".contains(1)", n)) + "]",
        };
    }

    [Theory]
    [MemberData(nameof(DeepInputs))]
    public void DeeplyNestedPolicyIsRejectedOrEvaluatedWithoutCrashing(string expr)
    {
        var text = "permit(principal, action, resource) when { " + expr + " };";
        // Run on a thread with a small stack: if recursion were unbounded this would crash the test process.
        Exception? failure = null;
        var ok = false;
        IReadOnlyList<ParseError> errors = [];
        PolicySet? set = null;
        var t = new Thread(() =>
        {
            try
            {
                ok = PolicySet.TryParse(text, out set, out errors);
                if (ok) Authorizer.IsAuthorized(SampleRequest(), set!, Entities.Empty);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                failure = e;
            }
        }, maxStackSize: 1024 * 1024) { IsBackground = true };
        t.Start();
        Assert.True(t.Join(Budget), "parsing did not finish in time");
        Assert.Null(failure);
        if (!ok)
        {
            Assert.NotEmpty(errors);
            Assert.All(errors, e => Assert.DoesNotContain('\n', e.Message));
        }
    }

    [Fact]
    public void TruncatedCorpusPoliciesNeverThrow()
    {
        var files = Directory.GetFiles(Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests"), "*.cedar").Order(StringComparer.Ordinal).Take(300);
        var parsed = 0;
        var rejected = 0;
        foreach (var f in files)
        {
            var text = File.ReadAllText(f);
            for (var cut = 0; cut < text.Length; cut += Math.Max(1, text.Length / 40))
            {
                if (PolicySet.TryParse(text[..cut], out var set, out var errors))
                {
                    parsed++;
                    Authorizer.IsAuthorized(SampleRequest(), set!, Entities.Empty);
                }
                else
                {
                    rejected++;
                    Assert.NotEmpty(errors);
                    Assert.All(errors, e => Assert.True(e.Line >= 1 && e.Column >= 1, e.ToString()));
                }
            }
        }

        Assert.True(rejected > 1000, $"only {rejected} truncations were rejected");
        Assert.True(parsed > 0);
    }

    [Fact]
    public void RandomTextNeverThrows()
    {
        var rng = new Random(20261124);
        var rejected = 0;
        var expressions = 0;
        const string alphabet = "permitforbidwhenunlessprincipalactionresourcecontext()[]{},;.:=!<>&|+-*\"\\@?is has like in if then else 0123456789 Ab_\n\u00e9\ud83d\ude00";
        for (var i = 0; i < 5000; i++)
        {
            var sb = new StringBuilder();
            var len = rng.Next(0, 120);
            for (var k = 0; k < len; k++) sb.Append(alphabet[rng.Next(alphabet.Length)]);
            var text = sb.ToString();
            if (PolicySet.TryParse(text, out var set, out var policyErrors))
            {
                Assert.NotNull(set);
                Assert.Empty(policyErrors);
                Authorizer.IsAuthorized(SampleRequest(), set, Entities.Empty);
            }
            else
            {
                rejected++;
                AssertUsable(policyErrors);
            }

            if (Parser.TryParseExpression(text, out var expr, out var exprErrors))
            {
                expressions++;
                Assert.NotNull(expr);
            }
            else
            {
                AssertUsable(exprErrors);
            }
        }

        // Both outcomes were exercised: the alphabet reaches the parser's accepting paths, not only its first error.
        Assert.True(rejected > 1000, $"only {rejected} random texts were rejected as policies");
        Assert.True(expressions > 0, "no random text parsed as an expression");

        // A rejection is an answer an operator can use: at least one error, at a real position, on one line.
        static void AssertUsable(IReadOnlyList<ParseError> errors)
        {
            Assert.NotEmpty(errors);
            Assert.All(errors, e => Assert.True(e.Line >= 1 && e.Column >= 1 && !e.Message.Contains('\n', StringComparison.Ordinal), e.ToString()));
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"\\ud800\"}, \"attrs\": {}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\"}, \"attrs\": {}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {\"x\": 1.5}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {\"x\": {\"__extn\": {\"fn\": \"nope\", \"arg\": \"1\"}}}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {\"x\": {\"__extn\": {\"fn\": \"ip\", \"arg\": \"1.1.1\"}}}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": [1]}]")]
    [InlineData("[{\"uid\": {\"type\": \"1A\", \"id\": \"a\"}}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": []}, {\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {}}]")]
    [InlineData("[{\"uid\": {\"type\": \"A::if\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"__cedar::A\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": []}]")]
    [InlineData("[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {\"x\": null}, \"parents\": []}]")]
    public void BadEntitiesJsonIsAnError(string json)
    {
        Assert.False(Entities.TryParseJson(json, null, out var entities, out var error));
        Assert.Null(entities);
        Assert.False(string.IsNullOrWhiteSpace(error));
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void DeeplyNestedJsonIsAnError()
    {
        var json = "[{\"uid\": {\"type\": \"A\", \"id\": \"a\"}, \"attrs\": {\"x\": " + new string('[', 100_000) + new string(']', 100_000) + "}}]";
        Assert.False(Entities.TryParseJson(json, null, out _, out var error));
        Assert.Contains("JSON", error, StringComparison.Ordinal);
        Assert.False(CedarJson.TryParseContext("{\"a\": " + new string('[', 100_000) + new string(']', 100_000) + "}", null, null, out _, out _));
    }

    private static Request SampleRequest() =>
        new(new EntityUid("User", "alice"), new EntityUid("Action", "view"), new EntityUid("Photo", "p"));
}
