using System.Diagnostics;
using System.Text;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;
using Writ.Policy.Syntax;
using Writ.Policy.Tests.Corpus;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Robustness;

/// <summary>
/// Property/fuzz tests: random bytes, token soup, truncated corpus files and pathologically large or deep inputs go
/// through every reader (policy text and JSON, schema text and JSON, entities, context), the formatter, the validator
/// and the evaluator. None may throw, overflow the stack (each input runs on a thread with a 1 MiB stack) or take
/// longer than <see cref="Budget"/>; every rejection must come with a one-line error.
/// </summary>
public class FuzzTests
{
    /// <summary>
    /// Hang guard per input: far above any linear run even on a loaded machine (a 2 s budget failed three runs in a row
    /// under a load average of 50), so it catches hangs and blow-ups without comparing wall-clock times.
    /// </summary>
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(60);

    private static readonly CedarSchema Schema = ParseSchema();

    private static CedarSchema ParseSchema()
    {
        const string text = """
            entity Group in [Group] { name: String };
            entity User in [Group] { name: String, age?: Long, rec: { a: Long } } tags String;
            entity Doc { owner: User };
            action read appliesTo { principal: [User], resource: [Doc], context: { n: Long } };
            """;
        Assert.True(CedarSchema.TryParseCedar(text, out var s, out var errors), string.Join(" | ", errors));
        return s!;
    }

    private static readonly Request SampleRequest =
        new(new EntityUid("User", "alice"), new EntityUid("Action", "read"), new EntityUid("Doc", "d"));

    private static readonly Entities SampleEntities = Entities.Create(
    [
        new Entity(new EntityUid("User", "alice"), new Dictionary<string, Value> { ["name"] = Value.Of("alice") }, [new EntityUid("Group", "g")]),
        new Entity(new EntityUid("Doc", "d"), new Dictionary<string, Value> { ["owner"] = Value.Of(new EntityUid("User", "alice")) }),
    ]);

    /// <summary>Feeds one input to every reader; what parses is formatted, round-tripped, validated and evaluated.</summary>
    private static void Exercise(string input)
    {
        if (PolicySet.TryParse(input, out var set, out var errors))
        {
            var formatted = PolicyFormatter.Format(set!);
            Assert.True(PolicySet.TryParse(formatted, out _, out var again), "formatted policies do not parse: " + string.Join(" | ", again));
            var json = PolicyJson.ToJson(set!);
            Assert.True(PolicyJson.TryParsePolicySet(json, out _, out var jsonError), "policy JSON does not read back: " + jsonError);
            var validation = Validator.Validate(set!, Schema);
            if (!validation.Passed) OneLineErrors(validation.Errors.Select(e => e.Message));
            var response = Authorizer.IsAuthorized(SampleRequest, set!, SampleEntities);
            if (response.Errors.Count > 0) OneLineErrors(response.Errors.Select(e => e.Error.Message));
        }
        else
        {
            OneLineErrors(errors.Select(e => e.Message));
        }

        if (Parser.TryParseExpression(input, out var expr, out errors))
        {
            Evaluator.TryEvaluate(expr!, SampleRequest, SampleEntities, out _, out _);
            PolicyFormatter.Format(expr!);
        }
        else
        {
            OneLineErrors(errors.Select(e => e.Message));
        }

        if (!PolicyJson.TryParsePolicySet(input, out _, out var error)) OneLineErrors([error]);
        if (!CedarSchema.TryParseCedar(input, out _, out var schemaErrors)) OneLineErrors(schemaErrors.Select(e => e.Message));
        if (!CedarSchema.TryParseJson(input, out _, out schemaErrors)) OneLineErrors(schemaErrors.Select(e => e.Message));
        if (!Entities.TryParseJson(input, null, out _, out error)) OneLineErrors([error]);
        if (!Entities.TryParseJson(input, Schema, out _, out error)) OneLineErrors([error]);
        if (!CedarJson.TryParseContext(input, Schema, SampleRequest.Action, out _, out error)) OneLineErrors([error]);
        if (!CedarJson.TryParseValue(input, null, out _, out error)) OneLineErrors([error]);
    }

    private static void OneLineErrors(IEnumerable<string> errors, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(errors))] string from = "")
    {
        var list = errors.ToList();
        Assert.True(list.Count > 0, $"{from}: rejected without an error");
        foreach (var e in list)
        {
            Assert.False(string.IsNullOrWhiteSpace(e), $"{from}: an empty error message");
            Assert.False(e.Contains('\n', StringComparison.Ordinal) || e.Contains('\r', StringComparison.Ordinal), $"{from}: the error is not one line: {e.ReplaceLineEndings("⏎")}");
        }
    }

    /// <summary>Runs <see cref="Exercise"/> on a 1 MiB-stack thread within the budget; returns a failure description or null.</summary>
    private static string? Survives(string input, string label)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Exercise(input);
            }
            catch (Exception e)
            {
                failure = e;
            }
        }, maxStackSize: 1024 * 1024) { IsBackground = true };
        thread.Start();
        if (!thread.Join(Budget)) return $"{label}: did not finish within {Budget.TotalSeconds} s (a hang?)";
        return failure is null ? null : $"{label}: {failure.GetType().Name}: {failure.Message}".ReplaceLineEndings(" ");
    }

    private static void AllSurvive(IEnumerable<(string Input, string Label)> inputs)
    {
        var failures = new List<string>();
        var n = 0;
        foreach (var (input, label) in inputs)
        {
            n++;
            if (Survives(input, label) is { } f) failures.Add(f);
            if (failures.Count >= 10) break;
        }

        Assert.True(n > 0);
        Assert.True(failures.Count == 0, $"{failures.Count} of {n} inputs failed:\n" + string.Join("\n", failures));
    }

    [Fact]
    public void RandomBytesAreRejectedCleanly()
    {
        var rng = new Random(4_100);
        IEnumerable<(string, string)> Inputs()
        {
            for (var i = 0; i < 1500; i++)
            {
                var bytes = new byte[rng.Next(0, 400)];
                rng.NextBytes(bytes);
                yield return (i % 2 == 0 ? Encoding.UTF8.GetString(bytes) : Encoding.Latin1.GetString(bytes), $"random bytes #{i}");
            }
        }

        AllSurvive(Inputs());
    }

    private static readonly string[] PolicyTokens =
    [
        "permit", "forbid", "(", ")", "principal", "action", "resource", "context", ",", ";", "when", "unless", "{", "}", "==", "!=",
        "in", "is", "has", "like", "if", "then", "else", "&&", "||", "!", "-", "+", "*", "<", "<=", ">", ">=", "[", "]", ".", "::",
        "User", "Action", "\"alice\"", "\"\\u{1F600}\"", "\"\\*\"", "\"a*b\"", "\"\\q\"", "\"", "?principal", "?resource", "?other", "@id",
        "@", "true", "false", "0", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "ip", "decimal", "datetime",
        "duration", "contains", "containsAll", "isEmpty", "getTag", "hasTag", "isInRange", "offset", "__cedar", "__cedar::ipaddr",
        "\"1.2.3.4/33\"", "\"1.0\"", "\"2024-01-01\"", "\"1d\"", "//", "/*", "\n", ":", "a", "b", "_", "é", "\t",
    ];

    [Fact]
    public void PolicyTokenSoupIsRejectedOrHandledCleanly()
    {
        var rng = new Random(4_200);
        IEnumerable<(string, string)> Inputs()
        {
            for (var i = 0; i < 4000; i++)
            {
                var sb = new StringBuilder();
                // Start from a valid policy prefix half of the time so the soup reaches deeper grammar rules.
                if (i % 2 == 0) sb.Append("permit(principal, action, resource) when { ");
                var n = rng.Next(1, 60);
                for (var k = 0; k < n; k++) sb.Append(PolicyTokens[rng.Next(PolicyTokens.Length)]).Append(rng.Next(3) == 0 ? "" : " ");
                yield return (sb.ToString(), $"policy token soup #{i}: {sb}");
            }
        }

        AllSurvive(Inputs());
    }

    private static readonly string[] JsonTokens =
    [
        "{", "}", "[", "]", ":", ",", "\"uid\"", "\"type\"", "\"id\"", "\"attrs\"", "\"parents\"", "\"tags\"", "\"__entity\"", "\"__extn\"",
        "\"fn\"", "\"arg\"", "\"args\"", "\"ip\"", "\"decimal\"", "\"User\"", "\"a\"", "\"\\ud800\"", "1", "-1", "1.5", "1e400",
        "9223372036854775808", "true", "null", "\"effect\"", "\"permit\"", "\"principal\"", "\"op\"", "\"All\"", "\"conditions\"",
        "\"kind\"", "\"when\"", "\"body\"", "\"Value\"", "\"Var\"", "\"entityTypes\"", "\"actions\"", "\"shape\"", "\"Record\"",
        "\"attributes\"", "\"Set\"", "\"element\"", "\"Long\"", "\"staticPolicies\"", "\"templates\"", "\"&&\"", "\"left\"", "\"right\"",
    ];

    [Fact]
    public void JsonTokenSoupIsRejectedOrHandledCleanly()
    {
        var rng = new Random(4_300);
        IEnumerable<(string, string)> Inputs()
        {
            for (var i = 0; i < 4000; i++)
            {
                var sb = new StringBuilder();
                var n = rng.Next(1, 80);
                for (var k = 0; k < n; k++) sb.Append(JsonTokens[rng.Next(JsonTokens.Length)]);
                yield return (sb.ToString(), $"JSON token soup #{i}: {sb}");
            }
        }

        AllSurvive(Inputs());
    }

    [Fact]
    public void TruncationsOfEveryCorpusPolicyFileAreHandled()
    {
        var files = Directory.GetFiles(Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests"), "*.cedar").Order(StringComparer.Ordinal).ToList();
        Assert.True(files.Count > 7000, $"only {files.Count} corpus policy files");
        var failures = new List<string>();
        var cuts = 0;
        foreach (var f in files)
        {
            var text = File.ReadAllText(f);
            var step = Math.Max(1, text.Length / 12);
            for (var cut = 0; cut <= text.Length; cut += step)
            {
                cuts++;
                var part = text[..cut];
                var t = Stopwatch.StartNew();
                try
                {
                    if (PolicySet.TryParse(part, out var set, out var errors))
                    {
                        Assert.True(PolicySet.TryParse(PolicyFormatter.Format(set!), out _, out _));
                        Authorizer.IsAuthorized(SampleRequest, set!, SampleEntities);
                    }
                    else
                    {
                        Assert.All(errors, e => Assert.True(e.Line >= 1 && e.Column >= 1 && !e.Message.Contains('\n', StringComparison.Ordinal), e.ToString()));
                    }
                }
                catch (Exception e)
                {
                    failures.Add($"{Path.GetFileName(f)} cut at {cut}: {e.GetType().Name}: {e.Message}".ReplaceLineEndings(" "));
                }

                if (t.Elapsed > Budget) failures.Add($"{Path.GetFileName(f)} cut at {cut}: took {t.Elapsed.TotalSeconds:F1} s");
            }

            if (failures.Count > 10) break;
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(cuts > 80_000, $"only {cuts} truncations");
    }

    [Fact]
    public void TruncationsOfCorpusSchemasAndEntitiesAreHandled()
    {
        var dir = Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests");
        var schemas = Directory.GetFiles(dir, "*.cedarschema").Order(StringComparer.Ordinal).Take(400);
        var entities = Directory.GetFiles(dir, "*.entities.json").Order(StringComparer.Ordinal).Take(400);
        IEnumerable<(string, string)> Inputs()
        {
            foreach (var f in schemas.Concat(entities))
            {
                var text = File.ReadAllText(f);
                var step = Math.Max(1, text.Length / 6);
                for (var cut = 0; cut < text.Length; cut += step) yield return (text[..cut], $"{Path.GetFileName(f)} cut at {cut}");
            }
        }

        AllSurvive(Inputs());
    }

    public static TheoryData<string> HugeInputLabels()
    {
        var data = new TheoryData<string>();
        foreach (var label in HugeInputs.Keys) data.Add(label);
        return data;
    }

    private const int N = 100_000;

    private static string Rep(string s, int k) => string.Concat(Enumerable.Repeat(s, k));

    /// <summary>Built on demand (labels only in test names).</summary>
    private static readonly Dictionary<string, Func<string>> HugeInputs = new(StringComparer.Ordinal)
    {
        ["parentheses"] = () => "permit(principal, action, resource) when { " + new string('(', N) + "true" + new string(')', N) + " };",
        ["bare parentheses"] = () => new string('(', N),
        ["nots"] = () => "permit(principal, action, resource) when { " + new string('!', N) + "true };",
        ["negations"] = () => "permit(principal, action, resource) when { " + new string('-', N) + "1 == 1 };",
        ["attribute chain"] = () => "permit(principal, action, resource) when { principal" + Rep(".a", N) + " };",
        ["has path"] = () => "permit(principal, action, resource) when { principal has " + string.Join('.', Enumerable.Repeat("a", N)) + " };",
        ["huge set"] = () => "permit(principal, action, resource) when { [" + string.Join(',', Enumerable.Repeat("1", N)) + "].contains(2) };",
        ["huge set containsAll"] = () => "permit(principal, action, resource) when { [" + string.Join(',', Enumerable.Range(0, 20_000)) + "].containsAll([" + string.Join(',', Enumerable.Range(0, 20_000)) + "]) };",
        ["huge record"] = () => "permit(principal, action, resource) when { {" + string.Join(',', Enumerable.Range(0, N).Select(i => "a" + i + ": 1")) + "}.a7 == 1 };",
        ["long string"] = () => "permit(principal, action, resource) when { \"" + new string('x', 1_000_000) + "\" like \"*y\" };",
        ["like backtracking"] = () => "permit(principal, action, resource) when { \"" + new string('a', 50_000) + "\" like \"" + Rep("*a", 500) + "*b\" };",
        ["many wildcards"] = () => "permit(principal, action, resource) when { \"a\" like \"" + new string('*', N) + "\" };",
        ["many policies"] = () => Rep("permit(principal, action, resource) when { context.n > 1 };\n", 20_000),
        ["many annotations"] = () => Rep("@a(\"x\")\n", 10_000) + "permit(principal, action, resource);",
        ["long entity path"] = () => "permit(principal == " + Rep("A::", N) + "\"x\", action, resource);",
        ["nested ifs"] = () => "permit(principal, action, resource) when { " + Rep("if true then ", N) + "true" + Rep(" else false", N) + " };",
        ["nested sets"] = () => "permit(principal, action, resource) when { " + new string('[', N) + new string(']', N) + " == [] };",
        ["nested records"] = () => "permit(principal, action, resource) when { " + Rep("{a: ", N) + "1" + new string('}', N) + " == {} };",
        ["long sum"] = () => "permit(principal, action, resource) when { " + string.Join(" + ", Enumerable.Repeat("9223372036854775807", N)) + " > 0 };",
        ["long product"] = () => "permit(principal, action, resource) when { " + string.Join(" * ", Enumerable.Repeat("2", N)) + " > 0 };",
        ["long or"] = () => "permit(principal, action, resource) when { " + string.Join(" || ", Enumerable.Repeat("principal.nope", 10_000)) + " };",
        ["deep JSON arrays"] = () => new string('[', N) + new string(']', N),
        ["deep JSON objects"] = () => Rep("{\"a\":", N) + "1" + new string('}', N),
        ["deep entity attrs"] = () => "[{\"uid\":{\"type\":\"User\",\"id\":\"a\"},\"attrs\":{\"rec\":" + Rep("{\"a\":", N) + "1" + new string('}', N) + "},\"parents\":[]}]",
        ["many entities"] = () => "[" + string.Join(',', Enumerable.Range(1, 5_000).Select(i => "{\"uid\":{\"type\":\"G\",\"id\":\"" + i + "\"},\"attrs\":{},\"parents\":[{\"type\":\"G\",\"id\":\"" + (i / 2) + "\"}]}")) + "]",
        // The transitive closure is materialised (as in Cedar), so a chain costs n²/2 ancestor entries: 2,000 is 2M.
        ["long hierarchy chain"] = () => "[" + string.Join(',', Enumerable.Range(0, 2_000).Select(i => "{\"uid\":{\"type\":\"G\",\"id\":\"" + i + "\"},\"attrs\":{},\"parents\":[{\"type\":\"G\",\"id\":\"" + (i + 1) + "\"}]}")) + "]",
        ["deep policy JSON"] = () => Rep("{\"!\":{\"arg\":", N) + "{\"Value\":true}" + Rep("}}", N),
        ["deep policy JSON in a policy"] = () => "{\"effect\":\"permit\",\"principal\":{\"op\":\"All\"},\"action\":{\"op\":\"All\"},\"resource\":{\"op\":\"All\"},\"conditions\":[{\"kind\":\"when\",\"body\":" + Rep("{\"&&\":{\"left\":{\"Value\":true},\"right\":", 20_000) + "{\"Value\":true}" + Rep("}}", 20_000) + "}]}",
        ["deep schema records"] = () => "entity A { a: " + Rep("{ a: ", N) + "Long" + new string('}', N) + " };",
        ["deep schema sets"] = () => "entity A { a: " + Rep("Set<", N) + "Long" + new string('>', N) + " };",
        ["long schema namespace"] = () => "namespace " + string.Join("::", Enumerable.Repeat("N", N)) + " { entity A; }",
        ["deep JSON schema"] = () => "{\"\":{\"entityTypes\":{\"A\":{\"shape\":{\"type\":\"Record\",\"attributes\":{\"a\":" + Rep("{\"type\":\"Set\",\"element\":", N) + "{\"type\":\"Long\"}" + new string('}', N) + "}}}},\"actions\":{}}}",
        ["long number"] = () => "permit(principal, action, resource) when { " + new string('9', N) + " == 1 };",
        ["long identifier"] = () => "permit(principal, action, resource) when { context." + new string('a', 1_000_000) + " };",
        ["unterminated string"] = () => "permit(principal, action, resource) when { \"" + new string('\\', N),
        ["line breaks in quoted input"] = () => "permit(principal, action, resource) when { ip(\"1.2.3.4\n\r\u2028\").isIpv4() || decimal(\"1\n\").lessThan(decimal(\"2.0\")) || datetime(\"x\ny\") == context.n || duration(\"\r\") == context[\"a\nb\"] || principal[\"a\nb\"] || principal.getTag(\"\n\") };",
        ["long comment"] = () => "// " + new string('x', 1_000_000),
        ["unterminated block"] = () => "permit(principal, action, resource) when { " + Rep("principal.a == principal.b && ", 30_000),
    };

    [Theory]
    [MemberData(nameof(HugeInputLabels))]
    public void HugeAndDeepInputsAreHandledWithinTheBudget(string label)
    {
        var failure = Survives(HugeInputs[label](), label);
        Assert.True(failure is null, failure);
    }
}
