using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Writ.Policy.Tests.Differential;

/// <summary>One node process running the reference engine, shared by the differential tests.</summary>
public sealed class ReferenceEngineFixture : IDisposable
{
    internal ReferenceEngine Engine { get; } = new();

    public void Dispose() => Engine.Dispose();
}

/// <summary>
/// Differential testing against the official Cedar engine (<c>@cedar-policy/cedar-wasm@4.12.0</c>): seeded generated
/// cases (schema, entities, policies, templates and links, requests) must get the same decision, reasons, erroring
/// policies and strict-validation outcome from Writ.Policy as from the reference. On a mismatch the seed and a
/// minimised case are printed. <c>WRIT_DIFF_REQUESTS</c> sets how many requests to compare (default 100,000) and
/// <c>WRIT_DIFF_SEED</c> the first seed; <c>WRIT_DIFF_SUMMARY_FILE</c> names a file to receive the one-line summary
/// (counts and timings).
/// </summary>
public sealed class GeneratedDifferentialTests(ReferenceEngineFixture fixture) : IClassFixture<ReferenceEngineFixture>
{
    private const int DefaultRequests = 100_000;
    private const int DefaultSeed = 20_261_124;
    private const int RequestsPerCase = 100;
    private const int CasesPerBatch = 50;
    private const int MaxReported = 3;

    private static int EnvInt(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : fallback;

    internal static GenCase CaseFor(int seed) => new CaseGenerator(seed).Generate(3 + (int)((uint)seed % 18), RequestsPerCase);

    [Fact]
    public async Task GeneratedRequestsMatchTheReferenceEngine()
    {
        var total = EnvInt("WRIT_DIFF_REQUESTS", DefaultRequests);
        var firstSeed = EnvInt("WRIT_DIFF_SEED", DefaultSeed);
        var cases = (total + RequestsPerCase - 1) / RequestsPerCase;
        var sw = Stopwatch.StartNew();
        var stats = new Stats();
        var failures = new List<string>();
        var writTime = TimeSpan.Zero;
        var waitTime = TimeSpan.Zero;
        for (var start = 0; start < cases && failures.Count < MaxReported; start += CasesPerBatch)
        {
            var batch = Enumerable.Range(start, Math.Min(CasesPerBatch, cases - start)).Select(i => CaseFor(firstSeed + i)).ToList();
            var reference = Task.Run(() => fixture.Engine.Answer(batch, validate: true));
            var t0 = sw.Elapsed;
            var ours = batch.Select(c => WritEngine.Answer(c, validate: true)).ToList();
            var t1 = sw.Elapsed;
            var theirs = await reference;
            writTime += t1 - t0;
            waitTime += sw.Elapsed - t1;
            for (var k = 0; k < batch.Count && failures.Count < MaxReported; k++)
            {
                stats.Count(batch[k], theirs[k]);
                if (FirstMismatch(batch[k], ours[k], theirs[k]) is not null) failures.Add(Report(batch[k]));
            }
        }

        var summary = $"compared {stats.Requests} requests and {stats.Validations} policy-set validations from {stats.Cases} cases " +
            $"(seeds {firstSeed}..{firstSeed + cases - 1}) in {sw.Elapsed.TotalSeconds:F1} s " +
            $"(Writ {writTime.TotalSeconds:F1} s, then waiting for the reference {waitTime.TotalSeconds:F1} s); reference: {stats}";
        TestContext.Current.TestOutputHelper?.WriteLine(summary);
        if (Environment.GetEnvironmentVariable("WRIT_DIFF_SUMMARY_FILE") is { Length: > 0 } summaryFile) File.WriteAllText(summaryFile, summary + "\n");
        Assert.True(failures.Count == 0, summary + "\n" + string.Join("\n\n", failures));
        Assert.True(stats.Requests >= total, summary);
        stats.AssertCoverage();
    }

    /// <summary>The comparison itself can fail: a hand-written case with a known answer from the reference.</summary>
    [Fact]
    public void ReferenceBridgeKeepsSixtyFourBitNumbersAndReportsErrors()
    {
        var c = new GenCase(0, null,
            [
                new GenPolicy("p0", "permit(principal, action, resource) when { context.x + 1 > 0 };", false),
                new GenPolicy("p1", "permit(principal, action, resource) when { context.x == 9223372036854775806 };", false),
                new GenPolicy("t0", "forbid(principal == ?principal, action, resource);", true),
            ],
            [new GenLink("t0", "l0", new Ast.EntityUid("User", "mallory"), null)],
            [],
            [
                new GenRequest(new Ast.EntityUid("User", "alice"), new Ast.EntityUid("Action", "read"), new Ast.EntityUid("Doc", "d"), "{\"x\": 9223372036854775807}"),
                new GenRequest(new Ast.EntityUid("User", "alice"), new Ast.EntityUid("Action", "read"), new Ast.EntityUid("Doc", "d"), "{\"x\": 9223372036854775806}"),
                new GenRequest(new Ast.EntityUid("User", "mallory"), new Ast.EntityUid("Action", "read"), new Ast.EntityUid("Doc", "d"), "{\"x\": 1}"),
            ]);
        var theirs = fixture.Engine.Answer([c], validate: false)[0].Answers;
        Assert.Equal("deny", theirs[0].Decision);
        Assert.Equal(["p0"], theirs[0].Errors);
        Assert.Equal("allow", theirs[1].Decision);
        Assert.Equal(["p0", "p1"], theirs[1].Reasons);
        Assert.Equal("deny", theirs[2].Decision);
        Assert.Equal(["l0"], theirs[2].Reasons);
        var ours = WritEngine.Answer(c, validate: false).Answers;
        Assert.All(Enumerable.Range(0, 3), i => Assert.True(ours[i].SameAs(theirs[i]), $"{ours[i]} vs {theirs[i]}"));
        Assert.False(ours[0].SameAs(theirs[1]));
    }

    [Fact]
    public void GeneratorIsDeterministicPerSeed()
    {
        var a = CaseFor(42).Describe();
        Assert.Equal(a, CaseFor(42).Describe());
        Assert.NotEqual(a, CaseFor(43).Describe());
    }

    [Fact]
    public void ShrinkerKeepsOnlyWhatTheFailureNeeds()
    {
        var c = CaseFor(7);
        Assert.True(c.Policies.Count > 3 && c.Entities.Count > 3 && c.Requests.Count > 3);
        var policy = c.Policies[2].Id;
        var entity = c.Entities[5];
        bool Fails(GenCase x) => x.Policies.Any(p => p.Id == policy) && x.Entities.Contains(entity) && x.Requests.Count > 0;
        var small = Shrinker.Shrink(c, Fails);
        Assert.True(Fails(small));
        Assert.Equal([policy], small.Policies.Select(p => p.Id));
        Assert.Equal([entity], small.Entities);
        Assert.Single(small.Requests);
        Assert.Equal("{}", small.Requests[0].ContextJson);
    }

    private static string? FirstMismatch(GenCase c, CaseAnswer ours, CaseAnswer theirs)
    {
        if (theirs.Validation is not null && (ours.Validation is null || !ours.Validation.SameAs(theirs.Validation)))
        {
            return $"validation: Writ {ours.Validation?.ToString() ?? "(none)"} but reference {theirs.Validation}";
        }

        for (var i = 0; i < c.Requests.Count; i++)
        {
            if (!ours.Answers[i].SameAs(theirs.Answers[i])) return $"request {i}: Writ {ours.Answers[i]} but reference {theirs.Answers[i]}";
        }

        return null;
    }

    private string? Mismatch(GenCase c)
    {
        var ours = WritEngine.Answer(c, validate: true);
        var theirs = fixture.Engine.Answer([c], validate: true)[0];
        return FirstMismatch(c, ours, theirs);
    }

    private string Report(GenCase c)
    {
        var original = Mismatch(c) ?? "(does not reproduce when run alone)";
        var small = Shrinker.Shrink(c, x => Mismatch(x) is not null);
        var sb = new StringBuilder();
        sb.Append("MISMATCH at seed ").Append(c.Seed).Append(" (reproduce: WRIT_DIFF_SEED=").Append(c.Seed).Append(" WRIT_DIFF_REQUESTS=").Append(RequestsPerCase)
            .Append("): ").Append(original).Append('\n');
        sb.Append("minimised case: ").Append(Mismatch(small) ?? "(shrunk case no longer fails)").Append('\n').Append(small.Describe());
        return sb.ToString();
    }

    /// <summary>What the reference engine answered, so the test proves the generator reaches the interesting outcomes.</summary>
    private sealed class Stats
    {
        public int Cases;
        public int Requests;
        public int Validations;
        private int _allow;
        private int _deny;
        private int _errored;
        private int _failed;
        private int _validationPassed;
        private int _validationFailed;
        private int _namespaced;
        private int _mismatchedDecided;
        private int _mismatchedRefused;
        private int _mismatchedValidated;

        public void Count(GenCase c, CaseAnswer a)
        {
            Cases++;
            Requests += c.Requests.Count;
            if (c.Schema?.StartsWith("namespace", StringComparison.Ordinal) == true) _namespaced++;
            if (a.Validation is not null)
            {
                Validations++;
                _validationFailed += a.Validation.Policies.Count;
                _validationPassed += c.Policies.Count - a.Validation.Policies.Count;
            }

            for (var i = 0; i < a.Answers.Count; i++)
            {
                var x = a.Answers[i];
                if (x.Failure is not null) _failed++;
                else if (x.Decision == "allow") _allow++;
                else _deny++;
                if (x.Errors.Count > 0) _errored++;
                if (c.Schema is not null && c.Requests[i] is { Mismatched: true } r)
                {
                    if (r.ValidateRequest) _mismatchedValidated++;
                    else if (x.Failure is not null) _mismatchedRefused++;
                    else _mismatchedDecided++;
                }
            }
        }

        public void AssertCoverage()
        {
            Assert.True(_allow > Requests / 50, ToString());
            Assert.True(_deny > Requests / 50, ToString());
            Assert.True(_errored > Requests / 50, ToString());
            Assert.True(_failed < Requests / 5, ToString());
            Assert.True(_validationPassed > 0 && _validationFailed > 0, ToString());
            Assert.True(_namespaced > Cases / 10, ToString());
            Assert.True(_mismatchedDecided > Requests / 100 && _mismatchedRefused > Requests / 100 && _mismatchedValidated > 0, ToString());
        }

        public override string ToString() =>
            $"{_allow} allow, {_deny} deny, {_errored} with erroring policies, {_failed} refused input; validation: {_validationPassed} policies passed, {_validationFailed} failed; {_namespaced} cases in a namespace; " +
            $"contexts not matching the declared type: {_mismatchedDecided} decided and {_mismatchedRefused} refused without request validation, {_mismatchedValidated} with it";
    }
}

/// <summary>
/// Differential fuzzing of the parser: generated policies, damaged by deleting, duplicating or swapping tokens,
/// must be accepted or refused by Writ exactly when the reference accepts or refuses them.
/// </summary>
public sealed class ParserDifferentialTests(ReferenceEngineFixture fixture) : IClassFixture<ReferenceEngineFixture>
{
    private static readonly string[] Tokens =
    [
        "(", ")", "{", "}", "[", "]", ",", ";", ".", "::", "==", "!=", "<", "<=", "&&", "||", "!", "-", "+", "*", "in", "is", "has",
        "like", "if", "then", "else", "when", "unless", "permit", "forbid", "principal", "action", "resource", "context", "true",
        "?principal", "?resource", "@id(\"x\")", "\"s\"", "1", "-9223372036854775808", "9223372036854775808", "User", "::\"a\"", "__cedar",
    ];

    [Fact]
    public void DamagedPoliciesParseInWritExactlyWhenTheyParseInTheReference()
    {
        var rng = new Random(5_100);
        var texts = new List<string>();
        for (var seed = 0; seed < 10_000; seed++)
        {
            var c = new CaseGenerator(31_000 + seed).Generate(3, 0);
            foreach (var p in c.Policies.Where(p => !p.IsTemplate))
            {
                var t = p.Text;
                var damage = rng.Next(1, 3);
                for (var k = 0; k < damage; k++)
                {
                    var at = rng.Next(t.Length + 1);
                    t = rng.Next(5) switch
                    {
                        0 => t.Remove(at, Math.Min(rng.Next(1, 6), t.Length - at)),
                        3 => t.Insert(at, Tokens[rng.Next(Tokens.Length)]),
                        1 or 4 => t.Insert(at, " " + Tokens[rng.Next(Tokens.Length)] + " "),
                        _ => t.Insert(at, t.Substring(at, Math.Min(rng.Next(1, 12), t.Length - at))),
                    };
                }

                texts.Add(t);
            }
        }

        var mismatches = new List<string>();
        var accepted = 0;
        foreach (var chunk in texts.Chunk(200))
        {
            var theirs = fixture.Engine.Parses(chunk);
            for (var i = 0; i < chunk.Length; i++)
            {
                var ours = Ast.PolicySet.TryParse(chunk[i], out _, out var errors);
                if (theirs[i]) accepted++;
                if (ours != theirs[i])
                {
                    mismatches.Add($"Writ {(ours ? "accepts" : "refuses (" + errors[0] + ")")} but the reference {(theirs[i] ? "accepts" : "refuses")}:\n{chunk[i]}");
                }
            }
        }

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {texts.Count} damaged policies:\n" + string.Join("\n\n", mismatches.Take(8)));
        Assert.True(accepted > texts.Count / 50 && accepted < texts.Count * 19 / 20, $"{accepted} of {texts.Count} accepted: the damage is not varied enough");
    }
}
