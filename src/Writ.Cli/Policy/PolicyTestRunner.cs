using System.Text.Json;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;
using Writ.Policy.Validation;

namespace Writ.Cli.Policy;

/// <summary>One expectation of a test file that did not hold.</summary>
public sealed record PolicyTestMismatch(string File, string Case, string Expected, string Got)
{
    public override string ToString() => $"FAIL {File}: {Case}: expected {Expected}, got {Got}";
}

/// <summary>The outcome of running test files: every case counted once, every mismatch listed.</summary>
public sealed record PolicyTestReport(int Files, int Passed, IReadOnlyList<PolicyTestMismatch> Mismatches)
{
    public int Failed => Mismatches.Count;
}

/// <summary>
/// Runs test files in the shape of Cedar's integration tests:
/// <c>{"policies": "p.cedar", "entities": "e.json", "schema": "s.cedarschema", "shouldValidate": true,
/// "requests": [{"description", "principal", "action", "resource", "context", "decision", "reason", "errors"}]}</c>.
/// Paths inside a file are resolved against a root directory. Each request is one case, and so is
/// <c>shouldValidate</c> when the file has a schema. A file that cannot be loaded fails all of its cases.
/// Writ also reads an optional <c>templateLinks</c> array (<c>{"templateId", "newId", "values": {"?principal": uid}}</c>).
/// </summary>
public sealed class PolicyTestRunner(string root)
{
    private static readonly JsonDocumentOptions DocOptions = new() { MaxDepth = 128 };

    public string Root { get; } = root;

    /// <summary>The test files a path names: the file itself, or every <c>*.json</c> test file under a directory.</summary>
    public static bool TryExpand(string path, out IReadOnlyList<string> files, out string error)
    {
        files = [];
        if (File.Exists(path))
        {
            files = [path];
            error = "";
            return true;
        }
        if (!Directory.Exists(path))
        {
            error = $"test path {path} does not exist; give a test file or a directory of them";
            return false;
        }
        try
        {
            files = Directory.GetFiles(path, "*.json", SearchOption.AllDirectories)
                .Where(IsTestFile)
                .Order(StringComparer.Ordinal)
                .ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"cannot list {path}: {PolicyInputs.OneLine(e.Message)}";
            return false;
        }
        if (files.Count == 0)
        {
            error = $"no test files (*.json with \"requests\") under {path}; check the path";
            return false;
        }
        error = "";
        return true;
    }

    /// <summary>A directory holds entity files too: a test file is a JSON object with a "requests" array.</summary>
    private static bool IsTestFile(string file)
    {
        try
        {
            if (new FileInfo(file).Length > PolicyInputs.MaxFileBytes)
            {
                return false;
            }
            using var doc = JsonDocument.Parse(File.ReadAllText(file), DocOptions);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("requests", out var r) && r.ValueKind == JsonValueKind.Array;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    public PolicyTestReport Run(IReadOnlyList<string> files)
    {
        var mismatches = new List<PolicyTestMismatch>();
        var passed = 0;
        foreach (var f in files)
        {
            passed += RunFile(f, mismatches);
        }
        return new PolicyTestReport(files.Count, passed, mismatches);
    }

    private string Resolve(string relative) => Path.IsPathRooted(relative) ? relative : Path.Combine(Root, relative);

    /// <summary>Runs one file, adding its mismatches; returns the number of cases that passed.</summary>
    public int RunFile(string file, List<PolicyTestMismatch> mismatches)
    {
        ArgumentNullException.ThrowIfNull(mismatches);
        if (!PolicyInputs.TryReadText(file, "test file", out var text, out var readError))
        {
            mismatches.Add(new PolicyTestMismatch(file, "load", "a readable test file", readError));
            return 0;
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text, DocOptions);
        }
        catch (JsonException e)
        {
            mismatches.Add(new PolicyTestMismatch(file, "load", "a JSON test file", "invalid JSON: " + PolicyInputs.OneLine(e.Message)));
            return 0;
        }
        using (doc)
        {
            try
            {
                return RunDocument(file, doc.RootElement, mismatches);
            }
            catch (InvalidOperationException)
            {
                // a JSON value of the wrong kind where the file shape wants another
                mismatches.Add(new PolicyTestMismatch(file, "load", "a test file in Cedar's integration-test shape", "a field of the wrong JSON type; check the file against docs/policy.md"));
                return 0;
            }
        }
    }

    private int RunDocument(string file, JsonElement root, List<PolicyTestMismatch> mismatches)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("requests", out var requests) || requests.ValueKind != JsonValueKind.Array)
        {
            mismatches.Add(new PolicyTestMismatch(file, "load", "a test file object with a \"requests\" array", "something else"));
            return 0;
        }
        var cases = requests.GetArrayLength();
        var hasValidationCase = root.TryGetProperty("schema", out var schemaEl) && schemaEl.ValueKind == JsonValueKind.String
            && root.TryGetProperty("shouldValidate", out var sv) && sv.ValueKind is JsonValueKind.True or JsonValueKind.False;
        if (hasValidationCase)
        {
            cases++;
        }
        int FailAll(string why)
        {
            mismatches.Add(new PolicyTestMismatch(file, $"all {cases} cases", "the test's inputs to load", why));
            return 0;
        }

        CedarSchema? schema = null;
        if (schemaEl.ValueKind == JsonValueKind.String)
        {
            if (!PolicyInputs.TryLoadSchema(Resolve(schemaEl.GetString()!), out schema, out var se))
            {
                return FailAll(se[0]);
            }
        }
        if (!root.TryGetProperty("policies", out var policiesEl) || policiesEl.ValueKind != JsonValueKind.String)
        {
            return FailAll("no \"policies\" path in the file");
        }
        if (!PolicyInputs.TryLoadPolicies(Resolve(policiesEl.GetString()!), out var policies, out var pe))
        {
            return FailAll(pe[0]);
        }
        if (root.TryGetProperty("templateLinks", out var links))
        {
            if (!PolicyInputs.TryApplyLinks(links, policies!, out policies, out var linkError))
            {
                return FailAll("templateLinks: " + linkError);
            }
        }
        var entities = Entities.Empty;
        if (root.TryGetProperty("entities", out var entitiesEl) && entitiesEl.ValueKind == JsonValueKind.String)
        {
            if (!PolicyInputs.TryLoadEntities(Resolve(entitiesEl.GetString()!), schema, out var loaded, out var ee))
            {
                return FailAll(ee);
            }
            entities = loaded!;
        }

        var passed = 0;
        if (hasValidationCase)
        {
            var want = root.GetProperty("shouldValidate").GetBoolean();
            var result = Validator.Validate(policies!, schema!);
            if (result.Passed == want)
            {
                passed++;
            }
            else
            {
                mismatches.Add(new PolicyTestMismatch(file, "shouldValidate",
                    want ? "the policies to validate" : "a validation error",
                    want ? "validation errors: " + string.Join("; ", result.Errors.Take(3).Select(e => PolicyInputs.OneLine(e.ToString())))
                         : "no validation error"));
            }
        }

        var n = 0;
        foreach (var r in requests.EnumerateArray())
        {
            n++;
            var desc = r.ValueKind == JsonValueKind.Object && r.TryGetProperty("description", out var d) && d.ValueKind == JsonValueKind.String
                ? $"request {n} \"{PolicyInputs.OneLine(d.GetString()!)}\"" : $"request {n}";
            if (RunRequest(r, schema, policies!, entities, out var expected, out var got))
            {
                passed++;
            }
            else
            {
                mismatches.Add(new PolicyTestMismatch(file, desc, expected, got));
            }
        }
        return passed;
    }

    private static bool RunRequest(JsonElement r, CedarSchema? schema, PolicySet policies, Entities entities, out string expected, out string got)
    {
        expected = "a request object with principal, action, resource and decision";
        if (r.ValueKind != JsonValueKind.Object)
        {
            got = "a " + r.ValueKind.ToString().ToLowerInvariant();
            return false;
        }
        if (!r.TryGetProperty("decision", out var decisionEl) || decisionEl.ValueKind != JsonValueKind.String
            || decisionEl.GetString() is not ("allow" or "deny" or "Allow" or "Deny"))
        {
            got = "no \"decision\" of allow or deny";
            return false;
        }
        var wantAllow = decisionEl.GetString()!.Equals("allow", StringComparison.OrdinalIgnoreCase);
        HashSet<string>? wantReasons = r.TryGetProperty("reason", out var reasonEl) ? Ids(reasonEl) : null;
        HashSet<string>? wantErrors = r.TryGetProperty("errors", out var errorsEl) ? Ids(errorsEl) : null;
        expected = Describe(wantAllow, wantReasons, wantErrors);

        EntityUid? principal = null, action = null, resource = null;
        RecordValue? context = null;
        string err = "";
        // With "validateRequest": false the schema still shapes the context (as in Cedar), but its types are not checked.
        var validateRequest = !(r.TryGetProperty("validateRequest", out var vr) && vr.ValueKind == JsonValueKind.False);
        var parsed = Uid(r, "principal", ref principal, ref err) && Uid(r, "action", ref action, ref err) && Uid(r, "resource", ref resource, ref err);
        if (parsed)
        {
            if (r.TryGetProperty("context", out var ctxEl) && ctxEl.ValueKind != JsonValueKind.Null)
            {
                parsed = CedarJson.TryParseContext(ctxEl, schema, action, validateRequest, out context, out err);
            }
        }
        if (!parsed)
        {
            got = "a request that does not load: " + PolicyInputs.OneLine(err);
            return false;
        }
        if (schema is not null && validateRequest && !RequestCheck.TryCheck(schema, principal!, action!, resource!, out var requestError))
        {
            got = "a request the schema rejects: " + requestError;
            return false;
        }

        var response = Authorizer.IsAuthorized(new Request(principal!, action!, resource!, context), policies, entities);
        var gotReasons = Named(response.Reasons, wantReasons, policies);
        var gotErrors = Named(response.Errors.Select(e => e.PolicyId), wantErrors, policies);
        var ok = response.IsAllowed == wantAllow
            && (wantReasons is null || wantReasons.SetEquals(gotReasons))
            && (wantErrors is null || wantErrors.SetEquals(gotErrors));
        got = Describe(response.IsAllowed, gotReasons, gotErrors);
        if (!ok && response.Errors.Count > 0)
        {
            got += " (" + string.Join("; ", response.Errors.Select(e => PolicyInputs.OneLine(e.ToString()))) + ")";
        }
        return ok;
    }

    /// <summary>
    /// The ids of the policies a response names, each written the way the test file names it: by policy id
    /// (<c>policy0</c>, ...) or, when the file uses it, by the policy's <c>@id("...")</c> annotation.
    /// </summary>
    private static HashSet<string> Named(IEnumerable<string> ids, HashSet<string>? wanted, PolicySet policies)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var id in ids)
        {
            if (wanted is not null && !wanted.Contains(id) && policies.TryGet(id, out var p)
                && p.Annotations.TryGetValue("id", out var annotated) && wanted.Contains(annotated))
            {
                set.Add(annotated);
            }
            else
            {
                set.Add(id);
            }
        }
        return set;
    }

    private static bool Uid(JsonElement r, string name, ref EntityUid? uid, ref string error)
    {
        if (!r.TryGetProperty(name, out var el))
        {
            error = $"no \"{name}\"";
            return false;
        }
        return PolicyInputs.TryReadEntityUid(el, name, out uid, out error);
    }

    /// <summary>Policy ids in "reason"/"errors": strings, or objects with a "policyId" (newer corpus versions).</summary>
    private static HashSet<string> Ids(JsonElement el)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        if (el.ValueKind != JsonValueKind.Array)
        {
            return set;
        }
        foreach (var x in el.EnumerateArray())
        {
            if (x.ValueKind == JsonValueKind.String)
            {
                set.Add(x.GetString()!);
            }
            else if (x.ValueKind == JsonValueKind.Object && x.TryGetProperty("policyId", out var id) && id.ValueKind == JsonValueKind.String)
            {
                set.Add(id.GetString()!);
            }
        }
        return set;
    }

    private static string Describe(bool allow, HashSet<string>? reasons, HashSet<string>? errors) =>
        (allow ? "allow" : "deny")
        + (reasons is null ? "" : " reason [" + string.Join(", ", reasons.Order(StringComparer.Ordinal)) + "]")
        + (errors is null ? "" : " errors [" + string.Join(", ", errors.Order(StringComparer.Ordinal)) + "]");
}
