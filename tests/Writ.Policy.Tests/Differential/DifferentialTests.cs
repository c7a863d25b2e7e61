using System.IO.Compression;
using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;

namespace Writ.Policy.Tests.Differential;

/// <summary>
/// Replays random policy sets whose answers were recorded from the reference engine (cedar-wasm 4.12.0; see
/// README.md in this folder): parse acceptance, decision, reasons and erroring policies must all match.
/// </summary>
public class DifferentialTests
{
    [Fact]
    public void MatchesReferenceEngineOnRandomPolicies()
    {
        var path = Path.Combine(RepoRoot(), "tests", "Writ.Policy.Tests", "Differential", "cases.jsonl.gz");
        using var file = File.OpenRead(path);
        using var gz = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var mismatches = new List<string>();
        int cases = 0, parsed = 0, allowed = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0) continue;
            cases++;
            using var doc = JsonDocument.Parse(line);
            var c = doc.RootElement;
            var policiesText = c.GetProperty("policies").GetString()!;
            var expected = c.GetProperty("expected");
            var wantParse = expected.GetProperty("parse").GetBoolean();
            var ok = PolicySet.TryParse(policiesText, out var set, out var errors);
            if (ok != wantParse)
            {
                mismatches.Add($"case {cases}: reference {(wantParse ? "accepts" : "rejects")} but Writ {(ok ? "accepts" : "rejects: " + errors[0])}\n{policiesText}");
                continue;
            }

            if (!ok) continue;
            parsed++;
            Assert.True(Entities.TryParseJson(c.GetProperty("entities").GetRawText(), null, out var entities, out var error), error);
            Assert.True(CedarJson.TryParseEntityUid(c.GetProperty("principal"), "principal", out var p, out error), error);
            Assert.True(CedarJson.TryParseEntityUid(c.GetProperty("action"), "action", out var a, out error), error);
            Assert.True(CedarJson.TryParseEntityUid(c.GetProperty("resource"), "resource", out var r, out error), error);
            Assert.True(CedarJson.TryParseContext(c.GetProperty("context"), null, null, out var ctx, out error), error);
            var response = Authorizer.IsAuthorized(new Request(p!, a!, r!, ctx), set!, entities!);
            var wantAllow = expected.GetProperty("decision").GetString() == "allow";
            var wantReasons = expected.GetProperty("reason").EnumerateArray().Select(x => x.GetString()!).ToHashSet();
            var wantErrors = expected.GetProperty("errors").EnumerateArray().Select(x => x.GetString()!).ToHashSet();
            if (wantAllow) allowed++;
            if (response.IsAllowed != wantAllow || !wantReasons.SetEquals(response.Reasons)
                || !wantErrors.SetEquals(response.Errors.Select(e => e.PolicyId)))
            {
                mismatches.Add($"case {cases}: expected {(wantAllow ? "allow" : "deny")} {{{string.Join(",", wantReasons)}}} errors {{{string.Join(",", wantErrors)}}} "
                    + $"but got {response.Decision} {{{string.Join(",", response.Reasons)}}} errors {{{string.Join("; ", response.Errors)}}}\n{policiesText}");
            }
        }

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {cases} cases differ:\n" + string.Join("\n", mismatches.Take(10)));
        Assert.Equal(8000, cases);
        Assert.True(parsed > 4000 && allowed > 300, $"the cases exercise too little: {parsed} parsed, {allowed} allowed");
    }

    [Fact]
    public void EntitiesWithSchemaMatchReferenceEngine()
    {
        var path = Path.Combine(RepoRoot(), "tests", "Writ.Policy.Tests", "Differential", "entities-cases.jsonl.gz");
        using var file = File.OpenRead(path);
        using var gz = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var mismatches = new List<string>();
        int count = 0, accepted = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0) continue;
            count++;
            using var doc = JsonDocument.Parse(line);
            var c = doc.RootElement;
            Assert.True(Writ.Policy.Schema.CedarSchema.TryParseCedar(c.GetProperty("schema").GetString()!, out var schema, out var serrs), serrs.FirstOrDefault()?.ToString());
            var want = c.GetProperty("expected").GetProperty("ok").GetBoolean();
            if (want) accepted++;
            var ok = Entities.TryParseJson(c.GetProperty("entities").GetRawText(), schema, out _, out var error);
            if (ok != want) mismatches.Add($"case {count}: reference {(want ? "accepts" : "rejects")} but Writ {(ok ? "accepts" : "rejects: " + error)}");
        }

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {count} cases differ:\n" + string.Join("\n", mismatches.Take(10)));
        Assert.True(count > 600 && accepted > 100 && accepted < count - 100, $"{count} cases, {accepted} accepted: too one-sided");
    }

    [Fact]
    public void ContextsWithSchemaMatchReferenceEngine()
    {
        var path = Path.Combine(RepoRoot(), "tests", "Writ.Policy.Tests", "Differential", "contexts-cases.jsonl.gz");
        using var file = File.OpenRead(path);
        using var gz = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var mismatches = new List<string>();
        int count = 0, accepted = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0) continue;
            count++;
            using var doc = JsonDocument.Parse(line);
            var c = doc.RootElement;
            Assert.True(Writ.Policy.Schema.CedarSchema.TryParseCedar(c.GetProperty("schema").GetString()!, out var schema, out var serrs), serrs.FirstOrDefault()?.ToString());
            Assert.True(CedarJson.TryParseEntityUid(c.GetProperty("action"), "action", out var action, out var error), error);
            var want = c.GetProperty("expected").GetProperty("ok").GetBoolean();
            if (want) accepted++;
            var ok = CedarJson.TryParseContext(c.GetProperty("context"), schema, action, out _, out error);
            if (ok != want) mismatches.Add($"case {count}: reference {(want ? "accepts" : "rejects")} but Writ {(ok ? "accepts" : "rejects: " + error)}");
        }

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {count} cases differ:\n" + string.Join("\n", mismatches.Take(10)));
        Assert.True(count == 1000 && accepted > 100 && accepted < count - 100, $"{count} cases, {accepted} accepted: too one-sided");
    }

    [Fact]
    public void EstMatchesReferenceEngine()
    {
        var path = Path.Combine(RepoRoot(), "tests", "Writ.Policy.Tests", "Differential", "est-reference.jsonl.gz");
        using var file = File.OpenRead(path);
        using var gz = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var mismatches = new List<string>();
        var count = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0) continue;
            count++;
            using var doc = JsonDocument.Parse(line);
            var c = doc.RootElement;
            var policyFile = Path.Combine(Corpus.CorpusFiles.CorpusRoot, "corpus-tests", c.GetProperty("file").GetString()!);
            Assert.True(PolicySet.TryParse(File.ReadAllText(policyFile), out var set, out _));
            var policy = set!.Policies[c.GetProperty("index").GetInt32()];
            using var mine = JsonDocument.Parse(PolicyJson.ToJson(policy));
            if (!JsonEquals(mine.RootElement, c.GetProperty("est")))
                mismatches.Add($"{Path.GetFileName(policyFile)}#{policy.Id}:\n  reference {c.GetProperty("est").GetRawText()}\n  writ      {mine.RootElement.GetRawText()}");
        }

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {count} policies differ:\n" + string.Join("\n", mismatches.Take(5)));
        Assert.True(count > 400, $"only {count} recorded policies");
    }

    private static bool JsonEquals(JsonElement a, JsonElement b)
    {
        if (a.ValueKind != b.ValueKind) return false;
        switch (a.ValueKind)
        {
            case JsonValueKind.Object:
                var ap = a.EnumerateObject().ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);
                var bp = b.EnumerateObject().ToList();
                return ap.Count == bp.Count && bp.All(p => ap.TryGetValue(p.Name, out var v) && JsonEquals(v, p.Value));
            case JsonValueKind.Array:
                return a.GetArrayLength() == b.GetArrayLength() && a.EnumerateArray().Zip(b.EnumerateArray()).All(x => JsonEquals(x.First, x.Second));
            case JsonValueKind.String:
                return a.GetString() == b.GetString();
            case JsonValueKind.Number:
                return a.GetRawText() == b.GetRawText();
            default:
                return true;
        }
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Writ.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Writ.slnx not found above the test binaries; run the tests from the repository");
    }
}
