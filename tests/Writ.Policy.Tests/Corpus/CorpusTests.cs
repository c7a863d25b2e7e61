using System.Text;
using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Corpus;

/// <summary>
/// Replays every request of the official Cedar integration corpus (and the hand-written tests, and the cases found by
/// differential testing in tests/conformance/cedar-found) and compares decision, reasons and erroring policies exactly.
/// One test per shard (first hex digit of the file name) so all mismatches of a shard are reported together.
/// <c>shouldValidate</c> belongs to the validator tests.
/// </summary>
public class CorpusTests
{
    private const int ExpectedCorpusRequests = 62_472;
    private const int MaxReported = 25;

    public static TheoryData<string> Shards()
    {
        var data = new TheoryData<string>();
        foreach (var c in "0123456789abcdef") data.Add(c.ToString());
        data.Add("handwritten");
        data.Add("found");
        return data;
    }

    [Theory]
    [MemberData(nameof(Shards))]
    public void ShardMatchesReferenceEngine(string shard)
    {
        var files = TestFiles(shard);
        Assert.NotEmpty(files);
        Func<string, string> resolve = shard == "found" ? relative => Path.Combine(CorpusFiles.FoundRoot, relative) : CorpusFiles.Resolve;
        var mismatches = new List<string>();
        var matched = 0;
        var expected = 0;
        foreach (var file in files)
        {
            var (agreed, total) = RunTestFile(file, resolve, mismatches);
            matched += agreed;
            expected += total;
        }

        Assert.True(mismatches.Count == 0,
            $"{mismatches.Count} of {expected} requests in shard {shard} did not match:\n" + string.Join("\n", mismatches.Take(MaxReported)));
        // Every request of the shard was put to the authorizer and agreed with the reference: none was passed over.
        Assert.Equal(expected, matched);
    }

    [Fact]
    public void CorpusHasAllRequests()
    {
        var total = 0;
        foreach (var f in Directory.GetFiles(Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests"), "*.json"))
        {
            if (f.EndsWith(".entities.json", StringComparison.Ordinal)) continue;
            using var doc = JsonDocument.Parse(File.ReadAllText(f));
            total += doc.RootElement.GetProperty("requests").GetArrayLength();
        }

        Assert.Equal(ExpectedCorpusRequests, total);
    }

    private static List<string> TestFiles(string shard)
    {
        if (shard == "found")
        {
            return Directory.GetFiles(Path.Combine(CorpusFiles.FoundRoot, "corpus-tests"), "*.json")
                .Where(f => !f.EndsWith(".entities.json", StringComparison.Ordinal))
                .Order(StringComparer.Ordinal).ToList();
        }

        if (shard == "handwritten")
        {
            return Directory.GetFiles(Path.Combine(CorpusFiles.ConformanceDir, "tests"), "*.json", SearchOption.AllDirectories)
                .Order(StringComparer.Ordinal).ToList();
        }

        return Directory.GetFiles(Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests"), shard + "*.json")
            .Where(f => !f.EndsWith(".entities.json", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>Replays one test file: how many of its requests were decided exactly as the reference decided, of how many.</summary>
    private static (int Matched, int Total) RunTestFile(string file, Func<string, string> resolve, List<string> mismatches)
    {
        var name = Path.GetFileName(file);
        using var doc = JsonDocument.Parse(File.ReadAllText(file));
        var root = doc.RootElement;
        var requests = root.GetProperty("requests");
        var total = requests.GetArrayLength();

        void FailAll(string why) => mismatches.Add($"{name}: all {total} requests: {why}");

        CedarSchema? schema = null;
        if (root.TryGetProperty("schema", out var schemaEl) && schemaEl.ValueKind == JsonValueKind.String)
        {
            if (!CedarSchema.TryParseCedar(File.ReadAllText(resolve(schemaEl.GetString()!)), out schema, out var serrs))
            {
                FailAll("schema does not parse: " + serrs[0]);
                return (0, total);
            }
        }

        if (!PolicySet.TryParse(File.ReadAllText(resolve(root.GetProperty("policies").GetString()!)), out var policies, out var perrs))
        {
            FailAll("policies do not parse: " + perrs[0]);
            return (0, total);
        }

        if (!Entities.TryParseJson(File.ReadAllText(resolve(root.GetProperty("entities").GetString()!)), schema, out var entities, out var eerr))
        {
            FailAll("entities do not parse: " + eerr);
            return (0, total);
        }

        var matched = 0;
        foreach (var r in requests.EnumerateArray())
        {
            var desc = r.GetProperty("description").GetString();
            // Cedar's test harness validates requests unless a test says "validateRequest": false.
            var validateRequest = !(r.TryGetProperty("validateRequest", out var vr) && vr.ValueKind == JsonValueKind.False);
            if (!CedarJson.TryParseEntityUid(r.GetProperty("principal"), "principal", out var principal, out var err)
                || !CedarJson.TryParseEntityUid(r.GetProperty("action"), "action", out var action, out err)
                || !CedarJson.TryParseEntityUid(r.GetProperty("resource"), "resource", out var resource, out err)
                || !CedarJson.TryParseContext(r.GetProperty("context"), schema, action, validateRequest, out var context, out err))
            {
                mismatches.Add($"{name} [{desc}]: request does not parse: {err}");
                continue;
            }

            var request = new Request(principal!, action!, resource!, context);
            if (schema is not null && validateRequest && !RequestValidator.TryValidate(request, schema, out var verr))
            {
                // the reference harness builds these requests with validation on, so they must be valid
                mismatches.Add($"{name} [{desc}]: request fails schema validation: {verr}");
                continue;
            }

            var response = Authorizer.IsAuthorized(request, policies!, entities!);
            var wantDecision = r.GetProperty("decision").GetString() == "allow" ? Decision.Allow : Decision.Deny;
            var wantReasons = r.GetProperty("reason").EnumerateArray().Select(x => x.GetString()!).ToHashSet();
            var wantErrors = r.GetProperty("errors").EnumerateArray().Select(x => x.GetString()!).ToHashSet();
            var gotErrors = response.Errors.Select(e => e.PolicyId).ToHashSet();
            if (response.Decision != wantDecision || !wantReasons.SetEquals(response.Reasons) || !wantErrors.SetEquals(gotErrors))
            {
                var sb = new StringBuilder();
                sb.Append(name).Append(" [").Append(desc).Append("]: expected ").Append(wantDecision)
                    .Append(" reasons {").Append(string.Join(",", wantReasons.Order())).Append("} errors {").Append(string.Join(",", wantErrors.Order()))
                    .Append("} but got ").Append(response.Decision)
                    .Append(" reasons {").Append(string.Join(",", response.Reasons.Order())).Append("} errors {")
                    .Append(string.Join(", ", response.Errors.Select(e => e.ToString()))).Append('}');
                mismatches.Add(sb.ToString());
            }
            else
            {
                matched++;
            }
        }

        return (matched, total);
    }
}
