using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;
using Writ.Policy.Schema;

namespace Writ.IntegrationTests;

/// <summary>`writ policy validate|authorize|format|test` as real processes over real files.</summary>
public sealed partial class PolicyCliTests
{
    private static string Data(string name) => Path.Combine(AppContext.BaseDirectory, "PolicyData", name);

    private static string Example(string name) => Path.Combine(Repo.Root, "docs", "examples", "policy", name);

    private static string Conformance => Path.Combine(Repo.Shared, "conformance", "cedar");

    private static Task<ProcResult> RunWrit(params string[] args) => Proc.WritAsync(args);

    private static Task<ProcResult> WritIn(string dir, params string[] args) => Proc.RunAsync("dotnet", [Repo.WritDll, .. args], workingDir: dir);

    private static string[] Authorize(string principal, string action, string resource, string context, params string[] more) =>
    [
        "policy", "authorize", "--policies", Example("workloads.cedar"), "--entities", Example("entities.json"),
        "--schema", Example("workloads.cedarschema"), "--principal", principal, "--action", action, "--resource", resource,
        "--context", context, .. more,
    ];

    private const string PaymentsApi = "Workload::\"spiffe://example.org/payments/api\"";
    private const string PaymentsBatch = "Workload::\"spiffe://example.org/payments/batch\"";
    private const string Get = "Action::\"get\"";
    private const string DbPassword = "Secret::\"/payments/db-password\"";
    private const string InCluster = """{"source_ip": "10.1.2.3", "now": "2026-11-24T12:00:00Z"}""";

    [GeneratedRegex(@"^(\d+) passed, (\d+) failed$", RegexOptions.Multiline)]
    private static partial Regex Summary();

    private static (int Passed, int Failed) Counts(ProcResult r)
    {
        var lines = r.Stdout.TrimEnd().Split('\n');
        var m = Summary().Match(lines[^1]);
        Assert.True(m.Success, "no 'N passed, N failed' last line:\n" + r);
        return (int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    // ------------------------------------------------------------------ validate

    [Fact]
    public async Task Validate_accepts_valid_policies_and_templates()
    {
        var r = await RunWrit("policy", "validate", "--policies", Example("workloads.cedar"), "--schema", Example("workloads.cedarschema"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("valid: 5 policies and 0 templates", r.Stdout, StringComparison.Ordinal);

        var t = await RunWrit("policy", "validate", "--policies", Example("grants.cedar"), "--schema", Example("workloads.cedarschema"));
        Assert.True(t.ExitCode == 0, t.ToString());
        Assert.Contains("1 template", t.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_reads_a_json_schema_by_extension_and_by_content()
    {
        using var dir = new TempDir();
        Assert.True(CedarSchema.TryParseCedar(File.ReadAllText(Example("workloads.cedarschema")), out var schema, out _));
        File.WriteAllText(dir["schema.json"], schema!.ToJson());
        File.WriteAllText(dir["schema.txt"], schema.ToJson());
        foreach (var s in new[] { dir["schema.json"], dir["schema.txt"] })
        {
            var r = await RunWrit("policy", "validate", "--policies", Example("workloads.cedar"), "--schema", s);
            Assert.True(r.ExitCode == 0, r.ToString());
        }
    }

    [Fact]
    public async Task Validate_reports_a_parse_error_at_its_line_and_column()
    {
        using var dir = new TempDir();
        var file = dir["bad.cedar"];
        File.WriteAllText(file, "permit (\n  principal,\n  action,\n  resource\n) when { context.x + };\n");
        var r = await RunWrit("policy", "validate", "--policies", file, "--schema", Example("workloads.cedarschema"));
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"{file}:5:22: ", line, StringComparison.Ordinal);
        Expect.OneLineError(r, "does not parse: 1 error");

        var json = JsonNode.Parse((await RunWrit("policy", "validate", "--policies", file, "--schema", Example("workloads.cedarschema"), "--output", "json")).Stdout)!;
        var d = json["diagnostics"]![0]!;
        Assert.Equal("parse", (string?)d["kind"]);
        Assert.Equal(5, (int)d["line"]!);
        Assert.Equal(22, (int)d["column"]!);
        Assert.DoesNotContain(file, (string)d["message"]!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_reports_a_type_error_naming_the_policy()
    {
        using var dir = new TempDir();
        var file = dir["type.cedar"];
        File.WriteAllText(file, "permit (principal, action == Action::\"get\", resource)\nwhen { principal.spiffe_id + 1 > 2 };\n");
        var r = await RunWrit("policy", "validate", "--policies", file, "--schema", Example("workloads.cedarschema"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{file}:2:", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("policy policy0: ", r.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(r, "does not validate against");

        var json = await RunWrit("policy", "validate", "--policies", file, "--schema", Example("workloads.cedarschema"), "--output", "json");
        using var doc = JsonDocument.Parse(json.Stdout);
        Assert.False(doc.RootElement.GetProperty("valid").GetBoolean());
        var d = doc.RootElement.GetProperty("diagnostics")[0];
        Assert.Equal("policy0", d.GetProperty("policy").GetString());
        Assert.Equal(2, d.GetProperty("line").GetInt32());
    }

    [Fact]
    public async Task Validate_fails_on_a_schema_that_does_not_parse()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["s.cedarschema"], "entity Workload {\n  name: Strin\n};\n");
        var r = await RunWrit("policy", "validate", "--policies", Example("workloads.cedar"), "--schema", dir["s.cedarschema"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(dir["s.cedarschema"] + ":", r.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(r, "the schema");
    }

    [Fact]
    public async Task Validate_without_a_schema_is_a_usage_error()
    {
        var r = await RunWrit("policy", "validate", "--policies", Example("workloads.cedar"));
        Assert.Equal(2, r.ExitCode);
        Expect.OneLineError(r, "--schema");
    }

    // ------------------------------------------------------------------ authorize

    [Fact]
    public async Task Authorize_allows_with_the_determining_policy_and_its_annotations()
    {
        var r = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, InCluster));
        Assert.True(r.ExitCode == 0, r.ToString());
        var lines = r.Stdout.Split('\n');
        Assert.Equal("ALLOW", lines[0]);
        Assert.Contains("permit payments-uid-1000", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("@id(\"payments-uid-1000\")", r.Stdout, StringComparison.Ordinal);

        var json = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, InCluster, "--output", "json"));
        var node = JsonNode.Parse(json.Stdout)!;
        Assert.Equal("allow", (string?)node["decision"]);
        Assert.Equal("payments-uid-1000", (string?)node["determining"]![0]!["id"]);   // @id names the policy
        Assert.Equal("payments-uid-1000", (string?)node["determining"]![0]!["annotations"]!["id"]);
        Assert.Empty(node["errors"]!.AsArray());
    }

    [Fact]
    public async Task Authorize_denies_by_forbid_over_a_matching_permit()
    {
        var r = await RunWrit(Authorize(PaymentsBatch, Get, DbPassword, InCluster));
        Assert.True(r.ExitCode == 0, "a deny is a result, not a failure:\n" + r);
        Assert.StartsWith("DENY\n", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("forbid forbid-unknown-binaries", r.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("payments-uid-1000", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Authorize_denies_by_default_when_no_permit_applies()
    {
        var r = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, """{"source_ip": "203.0.113.7", "now": "2026-11-24T12:00:00Z"}"""));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.StartsWith("DENY\n", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("denied by default", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Authorize_reports_erroring_policies_and_skips_them()
    {
        var r = await RunWrit("policy", "authorize", "--policies", Data("errors.cedar"), "--entities", Data("empty.entities.json"),
            "--principal", "Workload::\"web\"", "--action", Get, "--resource", "Secret::\"s\"", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var node = JsonNode.Parse(r.Stdout)!;
        Assert.Equal("allow", (string?)node["decision"]);
        Assert.Equal(["web-by-name"], node["determining"]!.AsArray().Select(d => (string?)d!["id"]));
        var errors = node["errors"]!.AsArray();
        Assert.Equal(["reads-missing-entity", "overflows"], errors.Select(e => (string?)e!["policy"]));
        Assert.All(errors, e => Assert.True((int)e!["line"]! > 0));

        var text = await RunWrit("policy", "authorize", "--policies", Data("errors.cedar"), "--entities", Data("empty.entities.json"),
            "--principal", "Workload::\"other\"", "--action", Get, "--resource", "Secret::\"s\"");
        Assert.StartsWith("DENY\n", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("errors (these policies were skipped):", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("  overflows: " + Data("errors.cedar") + ":7:", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("overflow", text.Stdout, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Authorize_reads_context_as_the_schema_says()
    {
        string[] Args(string context, bool schema) =>
        [
            "policy", "authorize", "--policies", Data("context.cedar"), "--entities", Data("empty.entities.json"),
            "--principal", "Workload::\"web\"", "--action", Get, "--resource", "Secret::\"s\"", "--context", context, "--output", "json",
            .. schema ? new[] { "--schema", Data("context.cedarschema") } : [],
        ];
        var withSchema = JsonNode.Parse((await RunWrit(Args("""{"ip": "10.0.0.1"}""", schema: true))).Stdout)!;
        Assert.Equal("allow", (string?)withSchema["decision"]);

        var outside = JsonNode.Parse((await RunWrit(Args("""{"ip": "192.168.0.1"}""", schema: true))).Stdout)!;
        Assert.Equal("deny", (string?)outside["decision"]);
        Assert.Empty(outside["errors"]!.AsArray());

        // without the schema "10.0.0.1" stays a string, and calling isInRange on a string is an error
        var noSchema = JsonNode.Parse((await RunWrit(Args("""{"ip": "10.0.0.1"}""", schema: false))).Stdout)!;
        Assert.Equal("deny", (string?)noSchema["decision"]);
        Assert.Equal("cluster-network", (string?)noSchema["errors"]![0]!["policy"]);

        // the same context from a file
        using var dir = new TempDir();
        File.WriteAllText(dir["ctx.json"], """{"ip": "10.9.9.9"}""");
        var fromFile = JsonNode.Parse((await RunWrit(Args("@" + dir["ctx.json"], schema: true))).Stdout)!;
        Assert.Equal("allow", (string?)fromFile["decision"]);
    }

    [Fact]
    public async Task Authorize_checks_the_request_against_the_schema()
    {
        var r = await RunWrit("policy", "authorize", "--policies", Data("context.cedar"), "--entities", Data("empty.entities.json"),
            "--schema", Data("context.cedarschema"), "--principal", "Secret::\"s\"", "--action", Get, "--resource", "Secret::\"s\"",
            "--context", """{"ip": "10.0.0.1"}""");
        Assert.Equal(1, r.ExitCode);
        Expect.OneLineError(r, "principal type Secret is not one the action");

        var badContext = await RunWrit("policy", "authorize", "--policies", Data("context.cedar"), "--entities", Data("empty.entities.json"),
            "--schema", Data("context.cedarschema"), "--principal", "Workload::\"web\"", "--action", Get, "--resource", "Secret::\"s\"",
            "--context", """{"ip": "not an address"}""");
        Assert.Equal(1, badContext.ExitCode);
        Expect.OneLineError(badContext, "--context: ");
    }

    [Fact]
    public async Task Authorize_expect_turns_the_other_decision_into_a_failure()
    {
        var ok = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, InCluster, "--expect", "allow"));
        Assert.True(ok.ExitCode == 0, ok.ToString());

        var wrong = await RunWrit(Authorize(PaymentsBatch, Get, DbPassword, InCluster, "--expect", "allow"));
        Assert.Equal(1, wrong.ExitCode);
        Assert.StartsWith("DENY\n", wrong.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(wrong, "expected ALLOW but the decision is DENY");

        var bad = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, InCluster, "--expect", "maybe"));
        Assert.Equal(2, bad.ExitCode);
        Expect.OneLineError(bad, "--expect must be allow or deny");
    }

    [Fact]
    public async Task Authorize_bad_input_gets_one_line_errors()
    {
        var uid = await RunWrit(Authorize("User", Get, DbPassword, InCluster));
        Assert.Equal(2, uid.ExitCode);
        Expect.OneLineError(uid, "--principal: 'User' is not an entity uid");

        var injected = await RunWrit(Authorize("Workload::\"a\" || true", Get, DbPassword, InCluster));
        Assert.Equal(2, injected.ExitCode);
        Expect.OneLineError(injected, "is not an entity uid");

        var missing = await RunWrit("policy", "authorize", "--policies", "/nonexistent/p.cedar", "--entities", Example("entities.json"),
            "--principal", PaymentsApi, "--action", Get, "--resource", DbPassword);
        Assert.Equal(1, missing.ExitCode);
        Expect.OneLineError(missing, "policy file /nonexistent/p.cedar does not exist");

        using var dir = new TempDir();
        File.WriteAllText(dir["e.json"], "[{\"uid\": ");
        var badJson = await RunWrit("policy", "authorize", "--policies", Example("workloads.cedar"), "--entities", dir["e.json"],
            "--principal", PaymentsApi, "--action", Get, "--resource", DbPassword);
        Assert.Equal(1, badJson.ExitCode);
        Expect.OneLineError(badJson, dir["e.json"] + ": entities JSON is not valid JSON");

        var badContext = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, "{\"source_ip\": "));
        Assert.Equal(1, badContext.ExitCode);
        Expect.OneLineError(badContext, "context JSON is not valid JSON");

        var missingContextFile = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, "@" + dir["nope.json"]));
        Assert.Equal(1, missingContextFile.ExitCode);
        Expect.OneLineError(missingContextFile, "context file");

        var badPolicies = await RunWrit("policy", "authorize", "--policies", Data("interior-comment.cedar") + ".missing", "--entities", Example("entities.json"),
            "--principal", PaymentsApi, "--action", Get, "--resource", DbPassword);
        Expect.OneLineError(badPolicies, "does not exist");
    }

    [Fact]
    public async Task Authorize_links_templates_from_a_links_file()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["links.json"], """
            [{"templateId": "grant", "newId": "batch-reads-db-password",
              "values": {"?principal": {"type": "Workload", "id": "spiffe://example.org/payments/batch"},
                         "?resource": {"type": "Secret", "id": "/payments/db-password"}}}]
            """);
        string[] Args(string links, string principal) =>
        [
            "policy", "authorize", "--policies", Example("grants.cedar"), "--entities", Example("entities.json"),
            "--schema", Example("workloads.cedarschema"), "--links", links, "--principal", principal, "--action", Get,
            "--resource", DbPassword, "--context", InCluster, "--output", "json",
        ];
        var r = await RunWrit(Args(dir["links.json"], PaymentsBatch));
        Assert.True(r.ExitCode == 0, r.ToString());
        var node = JsonNode.Parse(r.Stdout)!;
        Assert.Equal("allow", (string?)node["decision"]);
        Assert.Equal("batch-reads-db-password", (string?)node["determining"]![0]!["id"]);

        var other = JsonNode.Parse((await RunWrit(Args(dir["links.json"], PaymentsApi))).Stdout)!;
        Assert.Equal("deny", (string?)other["decision"]);

        File.WriteAllText(dir["bad.json"], """[{"templateId": "grant", "newId": "x", "values": {"?owner": {"type": "Workload", "id": "w"}}}]""");
        var bad = await RunWrit(Args(dir["bad.json"], PaymentsBatch));
        Assert.Equal(1, bad.ExitCode);
        Expect.OneJsonError(bad, "WRIT-CLI-POLICY-INVALID", "unknown slot ?owner");   // asked for JSON: the error is JSON too
    }

    [Fact]
    public async Task Output_must_be_text_or_json_and_json_keeps_messages_readable()
    {
        var bad = await RunWrit(Authorize(PaymentsApi, Get, DbPassword, InCluster, "--output", "yaml"));
        Assert.Equal(2, bad.ExitCode);
        Expect.OneLineError(bad, "--output must be text or json");

        using var dir = new TempDir();
        File.WriteAllText(dir["t.cedar"], "permit (principal, action == Action::\"get\", resource) when { principal.name == \"web\" };\n");
        var r = await RunWrit("policy", "validate", "--policies", dir["t.cedar"], "--schema", Example("workloads.cedarschema"), "--output", "json");
        Assert.Contains("`Workload` has no attribute `name`", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Errors_do_not_echo_terminal_control_characters()
    {
        var r = await RunWrit(Authorize("\u001b[31mUser\u0007", Get, DbPassword, InCluster));
        Assert.Equal(2, r.ExitCode);
        Expect.OneLineError(r, "is not an entity uid");
        Assert.DoesNotContain('\u001b', r.Stderr);
        Assert.DoesNotContain('\u0007', r.Stderr);
    }

    // ------------------------------------------------------------------ format

    [Fact]
    public async Task Format_is_idempotent_and_keeps_comments_between_policies()
    {
        using var dir = new TempDir();
        File.Copy(Data("unformatted.cedar"), dir["p.cedar"]);
        var once = await RunWrit("policy", "format", dir["p.cedar"]);
        Assert.True(once.ExitCode == 0, once.ToString());
        Assert.NotEqual(File.ReadAllText(dir["p.cedar"]), once.Stdout);
        Assert.Contains("// header comment: kept\n\n@id(\"a\")", once.Stdout, StringComparison.Ordinal);
        Assert.Contains("}; // trailing: kept\n// above the forbid: kept\nforbid (", once.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"//not a comment\" like \"//*\"", once.Stdout, StringComparison.Ordinal);

        File.WriteAllText(dir["q.cedar"], once.Stdout);
        var twice = await RunWrit("policy", "format", dir["q.cedar"]);
        Assert.Equal(once.Stdout, twice.Stdout);

        // formatting does not change what the policies decide
        foreach (var f in new[] { dir["p.cedar"], dir["q.cedar"] })
        {
            var r = await RunWrit("policy", "authorize", "--policies", f, "--entities", Data("empty.entities.json"), "--principal", "Workload::\"web\"",
                "--action", Get, "--resource", "Secret::\"s\"", "--context", """{"ip": {"__extn": {"fn": "ip", "arg": "10.1.1.1"}}}""", "--output", "json");
            Assert.Equal("allow", (string?)JsonNode.Parse(r.Stdout)!["decision"]);
        }
    }

    [Fact]
    public async Task Format_check_lists_unformatted_files_and_exits_1()
    {
        using var dir = new TempDir();
        File.Copy(Data("unformatted.cedar"), dir["messy.cedar"]);
        var formatted = await RunWrit("policy", "format", dir["messy.cedar"]);
        File.WriteAllText(dir["tidy.cedar"], formatted.Stdout);

        var r = await RunWrit("policy", "format", "--check", dir["messy.cedar"], dir["tidy.cedar"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"would reformat: {dir["messy.cedar"]}\n", r.Stdout);
        Expect.OneLineError(r, "1 file is not formatted");
        Assert.Equal(File.ReadAllText(Data("unformatted.cedar")), File.ReadAllText(dir["messy.cedar"]));

        var clean = await RunWrit("policy", "format", "--check", dir["tidy.cedar"]);
        Assert.True(clean.ExitCode == 0, clean.ToString());
    }

    [Fact]
    public async Task Format_write_rewrites_in_place_and_keeps_the_mode()
    {
        using var dir = new TempDir();
        File.Copy(Data("unformatted.cedar"), dir["p.cedar"]);
        File.SetUnixFileMode(dir["p.cedar"], UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var expected = (await RunWrit("policy", "format", dir["p.cedar"])).Stdout;

        var r = await RunWrit("policy", "format", "--write", dir["p.cedar"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(expected, File.ReadAllText(dir["p.cedar"]));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dir["p.cedar"]));
        Assert.Equal(["p.cedar"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));

        var again = await RunWrit("policy", "format", "--check", dir["p.cedar"]);
        Assert.True(again.ExitCode == 0, again.ToString());
    }

    [Fact]
    public async Task Format_write_through_a_symlink_rewrites_the_target_and_keeps_the_link()
    {
        using var dir = new TempDir();
        File.Copy(Data("unformatted.cedar"), dir["real.cedar"]);
        File.CreateSymbolicLink(dir["link.cedar"], dir["real.cedar"]);
        var r = await RunWrit("policy", "format", "--write", dir["link.cedar"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.NotNull(new FileInfo(dir["link.cedar"]).LinkTarget);
        var check = await RunWrit("policy", "format", "--check", dir["real.cedar"]);
        Assert.True(check.ExitCode == 0, check.ToString());
    }

    [Fact]
    public async Task Format_refuses_to_write_a_file_whose_comments_it_would_lose()
    {
        using var dir = new TempDir();
        File.Copy(Data("interior-comment.cedar"), dir["c.cedar"]);
        File.Copy(Data("unformatted.cedar"), dir["ok.cedar"]);
        var before = File.ReadAllBytes(dir["c.cedar"]);
        var okBefore = File.ReadAllBytes(dir["ok.cedar"]);

        var r = await RunWrit("policy", "format", "--write", dir["ok.cedar"], dir["c.cedar"]);
        Assert.Equal(1, r.ExitCode);
        Expect.OneLineError(r, $"{dir["c.cedar"]}:3:3: a comment inside a policy would be lost");
        Assert.Contains("nothing was written", r.Stderr, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(dir["c.cedar"]));
        Assert.Equal(okBefore, File.ReadAllBytes(dir["ok.cedar"]));
    }

    [Fact]
    public async Task Format_refuses_a_file_that_does_not_parse()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["bad.cedar"], "permit (principal, action, resource) when { 1 + };\n");
        var r = await RunWrit("policy", "format", "--write", dir["bad.cedar"]);
        Assert.Equal(1, r.ExitCode);
        Expect.OneLineError(r, dir["bad.cedar"] + ":1:");
        Assert.Equal("permit (principal, action, resource) when { 1 + };\n", File.ReadAllText(dir["bad.cedar"]));

        var none = await RunWrit("policy", "format");
        Assert.Equal(2, none.ExitCode);
        Expect.OneLineError(none, "needs at least one FILE");
    }

    // ------------------------------------------------------------------ test

    [Fact]
    public async Task Test_passes_the_hand_written_cedar_tests()
    {
        var r = await RunWrit("policy", "test", "--root", Conformance, Path.Combine(Conformance, "tests"));
        Assert.True(r.ExitCode == 0, r.ToString());
        var (passed, failed) = Counts(r);
        Assert.Equal(0, failed);
        var requests = Directory.GetFiles(Path.Combine(Conformance, "tests"), "*.json", SearchOption.AllDirectories)
            .Sum(f => JsonNode.Parse(File.ReadAllText(f))!["requests"]!.AsArray().Count);
        var files = Directory.GetFiles(Path.Combine(Conformance, "tests"), "*.json", SearchOption.AllDirectories).Length;
        Assert.Equal(requests + files, passed);   // every request, and shouldValidate of every file
    }

    [Fact]
    public async Task Test_prints_a_flipped_expectation_and_fails()
    {
        using var dir = new TempDir();
        var test = JsonNode.Parse(File.ReadAllText(Path.Combine(Conformance, "tests", "multi", "1.json")))!;
        var first = test["requests"]![0]!;
        Assert.Equal("allow", (string?)first["decision"]);
        first["decision"] = "deny";
        File.WriteAllText(dir["flipped.json"], test.ToJsonString());

        // relative paths inside the file are resolved against the current directory when there is no --root
        var r = await WritIn(Conformance, "policy", "test", dir["flipped.json"]);
        Assert.Equal(1, r.ExitCode);
        var fail = Assert.Single(r.Stdout.Split('\n'), l => l.StartsWith("FAIL ", StringComparison.Ordinal));
        Assert.Contains(dir["flipped.json"], fail, StringComparison.Ordinal);
        Assert.Contains((string)first["description"]!, fail, StringComparison.Ordinal);
        Assert.Contains("expected deny reason [policy0] errors []", fail, StringComparison.Ordinal);
        Assert.Contains("got allow reason [policy0] errors []", fail, StringComparison.Ordinal);
        var (passed, failed) = Counts(r);
        Assert.Equal(1, failed);
        Assert.Equal(test["requests"]!.AsArray().Count, passed);   // the other requests + shouldValidate
        Assert.EndsWith(" 1 failed\n", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Test_runs_the_documented_examples()
    {
        var dir = Path.Combine(Repo.Root, "docs", "examples", "policy");
        var r = await RunWrit("policy", "test", "--root", dir, dir);
        Assert.True(r.ExitCode == 0, r.ToString());
        var (passed, failed) = Counts(r);
        Assert.Equal(0, failed);
        Assert.True(passed >= 14, r.ToString());
    }

    [Fact]
    public async Task Test_fails_a_wrong_shouldValidate_and_a_file_whose_inputs_do_not_load()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["p.cedar"], "permit (principal, action == Action::\"get\", resource) when { principal.nope };\n");
        File.WriteAllText(dir["t.json"], """
            {"policies": "p.cedar", "entities": "e.json", "schema": "s.cedarschema", "shouldValidate": true, "requests": []}
            """);
        File.WriteAllText(dir["e.json"], "[]");
        File.Copy(Data("context.cedarschema"), dir["s.cedarschema"]);
        File.WriteAllText(dir["missing.json"], """
            {"policies": "nope.cedar", "entities": "e.json", "requests": [{"principal": {"type": "A", "id": "a"}, "action": {"type": "Action", "id": "get"}, "resource": {"type": "A", "id": "a"}, "decision": "deny"}]}
            """);
        File.WriteAllText(dir["notjson.json"], "{\"requests\": [");

        var r = await RunWrit("policy", "test", "--root", dir.Path, dir["t.json"], dir["missing.json"], dir["notjson.json"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("shouldValidate: expected the policies to validate, got validation errors", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("all 1 cases", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("nope.cedar does not exist", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("invalid JSON", r.Stdout, StringComparison.Ordinal);
        Assert.Equal((0, 3), Counts(r));
    }

    [Fact]
    public async Task Test_bad_paths_get_one_line_errors()
    {
        var missing = await RunWrit("policy", "test", "/nonexistent/tests");
        Assert.Equal(1, missing.ExitCode);
        Expect.OneLineError(missing, "test path /nonexistent/tests does not exist");

        var root = await RunWrit("policy", "test", "--root", "/nonexistent", Path.Combine(Conformance, "tests"));
        Expect.OneLineError(root, "--root /nonexistent is not a directory");

        using var dir = new TempDir();
        var empty = await RunWrit("policy", "test", dir.Path);
        Expect.OneLineError(empty, "no test files");

        var none = await RunWrit("policy", "test");
        Assert.Equal(2, none.ExitCode);
        Expect.OneLineError(none, "needs at least one PATH");
    }
}
