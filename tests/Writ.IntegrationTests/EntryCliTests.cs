using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>Registration entries through the real CLI against a real server process.</summary>
public sealed class EntryCliTests(SharedServer fixture) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    private static string Parent(string name) => $"spiffe://example.org/writ/agent/join_token/{name}";

    [Fact]
    public async Task Entry_crud_through_the_cli()
    {
        var parent = Parent("crud");
        var created = await Server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--parent-id", parent,
            "--selector", "unix:uid:1000", "--selector", "unix:gid:1000", "--x509-ttl", "30m", "--dns", "web.internal", "--output", "json");
        Assert.True(created.ExitCode == 0, created.ToString());
        using var doc = JsonDocument.Parse(created.Stdout);
        var id = doc.RootElement.GetProperty("id").GetString()!;
        Assert.Equal(1800, doc.RootElement.GetProperty("x509_ttl").GetInt32());
        var rev1 = doc.RootElement.GetProperty("revision").GetInt64();

        var shown = await Server.WritAsync("entry", "show", id);
        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.Contains("spiffe://example.org/web", shown.Stdout, StringComparison.Ordinal);
        Assert.Contains("Selector:   unix:gid:1000", shown.Stdout, StringComparison.Ordinal);
        Assert.Contains("DNS name:   web.internal", shown.Stdout, StringComparison.Ordinal);

        var listed = await Server.WritAsync("entry", "list", "--parent-id", parent);
        Assert.Contains(id, listed.Stdout, StringComparison.Ordinal);
        Assert.Contains("1 entry", listed.Stdout, StringComparison.Ordinal);

        var updated = await Server.WritAsync("entry", "update", "--id", id, "--selector", "unix:uid:2000", "--jwt-ttl", "2m", "--output", "json");
        Assert.True(updated.ExitCode == 0, updated.ToString());
        using var up = JsonDocument.Parse(updated.Stdout);
        Assert.Equal(["unix:uid:2000"], up.RootElement.GetProperty("selectors").EnumerateArray().Select(s => s.GetString()).ToArray());
        Assert.Equal(120, up.RootElement.GetProperty("jwt_ttl").GetInt32());
        Assert.Equal(1800, up.RootElement.GetProperty("x509_ttl").GetInt32());   // not given: kept
        Assert.True(up.RootElement.GetProperty("revision").GetInt64() > rev1);

        var deleted = await Server.WritAsync("entry", "delete", id);
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        var gone = await Server.WritAsync("entry", "show", id);
        Assert.Equal(1, gone.ExitCode);
        Expect.OneLineError(gone, "does not exist");
    }

    [Fact]
    public async Task Bulk_create_from_a_file_is_all_or_nothing()
    {
        using var dir = new TempDir();
        var parent = Parent("bulk");
        var bad = dir["bad.json"];
        await File.WriteAllTextAsync(bad, $$"""
            {"entries": [
              {"spiffe_id": "spiffe://example.org/a", "parent_id": "{{parent}}", "selectors": ["unix:uid:1"]},
              {"spiffe_id": "spiffe://example.org/b", "parent_id": "{{parent}}", "selectors": ["unix:uid:2"], "x509_ttl": "2h"},
              {"spiffe_id": "spiffe://other.org/c", "parent_id": "{{parent}}", "selectors": ["unix:uid:3"]}
            ]}
            """);
        var r = await Server.WritAsync("entry", "create", "--file", bad);
        Expect.OneLineError(r, "entry 3 of 3");
        Assert.Contains("0 entries", (await Server.WritAsync("entry", "list", "--parent-id", parent)).Stdout, StringComparison.Ordinal);

        var good = dir["good.json"];
        await File.WriteAllTextAsync(good, File.ReadAllText(bad).Replace("spiffe://other.org/c", "spiffe://example.org/c", StringComparison.Ordinal));
        var ok = await Server.WritAsync("entry", "create", "--file", good);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Contains("3 entries", (await Server.WritAsync("entry", "list", "--parent-id", parent)).Stdout, StringComparison.Ordinal);

        // The same file again: every entry is a duplicate, nothing more is written.
        var again = await Server.WritAsync("entry", "create", "--file", good);
        Expect.OneLineError(again, "");
        Assert.Contains("3 entries", (await Server.WritAsync("entry", "list", "--parent-id", parent)).Stdout, StringComparison.Ordinal);
    }

    public static TheoryData<string, string[], string> BadEntries => new()
    {
        { "not a SPIFFE ID", ["--spiffe-id", "https://example.org/web"], "not a SPIFFE ID" },
        { "uppercase trust domain", ["--spiffe-id", "spiffe://Example.org/web"], "not a SPIFFE ID" },
        { "dot segment", ["--spiffe-id", "spiffe://example.org/a/../admin"], "not a SPIFFE ID" },
        { "outside the trust domain", ["--spiffe-id", "spiffe://evil.org/web"], "outside this server's trust domain" },
        { "trust domain itself", ["--spiffe-id", "spiffe://example.org"], "has no path" },
        { "reserved agent namespace", ["--spiffe-id", "spiffe://example.org/writ/agent/join_token/x"], "reserved /writ/" },
        { "reserved server ID", ["--spiffe-id", "spiffe://example.org/writ/server"], "reserved /writ/" },
        { "no selectors", ["--spiffe-id", "spiffe://example.org/web", "--no-selector"], "at least one selector" },
        { "selector without value", ["--spiffe-id", "spiffe://example.org/web", "--selector", "unix:"], "type:value" },
        { "misspelt selector type", ["--spiffe-id", "spiffe://example.org/web", "--selector", "unix:uuid:0"], "did you mean 'unix:uid'?" },
        { "unknown selector type", ["--spiffe-id", "spiffe://example.org/web", "--selector", "foo:bar:1"], "--allow-unknown-selector-type" },
        { "TTL below minimum", ["--spiffe-id", "spiffe://example.org/web", "--x509-ttl", "5s"], "below the minimum" },
        { "TTL above max_ttl", ["--spiffe-id", "spiffe://example.org/web", "--jwt-ttl", "48h"], "max_ttl" },
        { "garbage TTL", ["--spiffe-id", "spiffe://example.org/web", "--x509-ttl", "soon"], "duration" },
        { "bad DNS name", ["--spiffe-id", "spiffe://example.org/web", "--dns", "bad name"], "DNS name" },
        { "parent outside the trust domain", ["--spiffe-id", "spiffe://example.org/web", "--parent-id", "spiffe://evil.org/agent"], "parent_id" },
    };

    [Theory]
    [MemberData(nameof(BadEntries))]
    public async Task Invalid_entries_get_a_one_line_error_and_write_nothing(string why, string[] args, string expected)
    {
        var parent = Parent("bad-" + why.Replace(' ', '-'));
        var argv = new List<string> { "entry", "create" };
        if (!args.Contains("--parent-id"))
        {
            argv.AddRange(["--parent-id", parent]);
        }
        if (!args.Contains("--selector") && !args.Contains("--no-selector"))
        {
            argv.AddRange(["--selector", "unix:uid:1000"]);
        }
        argv.AddRange(args.Where(a => a != "--no-selector"));
        var r = await Server.WritAsync([.. argv]);
        Expect.OneLineError(r, expected);
        Assert.Contains("0 entries", (await Server.WritAsync("entry", "list", "--parent-id", parent)).Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_selector_types_are_refused_on_every_path_unless_allowed_for_a_plugin()
    {
        using var dir = new TempDir();
        var parent = Parent("selector-types");
        var file = dir["entries.json"];
        await File.WriteAllTextAsync(file, $$"""
            [{"spiffe_id": "spiffe://example.org/typo", "parent_id": "{{parent}}", "selectors": ["unix:uid:1", "container:idd:abc"]}]
            """);
        Expect.OneLineError(await Server.WritAsync("entry", "create", "--file", file), "did you mean 'container:id'?");

        var ok = await Server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/plugin", "--parent-id", parent,
            "--selector", "unix:uid:1", "--output", "json");
        Assert.True(ok.ExitCode == 0, ok.ToString());
        using var created = JsonDocument.Parse(ok.Stdout);
        var id = created.RootElement.GetProperty("id").GetString()!;
        Expect.OneLineError(await Server.WritAsync("entry", "update", "--id", id, "--selector", "unix:uuid:1"), "did you mean 'unix:uid'?");

        // An attestor plugin the server does not load: accepted when the caller says so, on create and update.
        var plugin = await Server.WritAsync("entry", "update", "--id", id, "--selector", "acme:tenant:blue", "--allow-unknown-selector-type");
        Assert.True(plugin.ExitCode == 0, plugin.ToString());
        Assert.Contains("Selector:   acme:tenant:blue", plugin.Stdout, StringComparison.Ordinal);
        var fromFile = await Server.WritAsync("entry", "create", "--file", file, "--allow-unknown-selector-type");
        Assert.True(fromFile.ExitCode == 0, fromFile.ToString());
        Assert.Contains("2 entries", (await Server.WritAsync("entry", "list", "--parent-id", parent)).Stdout, StringComparison.Ordinal);
        // Well-formed still: the flag is not a way around type:value.
        Expect.OneLineError(await Server.WritAsync("entry", "update", "--id", id, "--selector", "acme:", "--allow-unknown-selector-type"), "type:value");
    }

    [Fact]
    public async Task Entry_update_from_a_file_replaces_the_entry_as_entry_show_prints_it()
    {
        using var dir = new TempDir();
        var parent = Parent("update-file");
        var created = await Server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/edited", "--parent-id", parent,
            "--selector", "unix:uid:1", "--hint", "old", "--dns", "old.internal");
        Assert.True(created.ExitCode == 0, created.ToString());
        var id = created.Stdout.Split('\n')[0].Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1];
        var shown = await Server.WritAsync("entry", "show", id, "--output", "json");
        Assert.True(shown.ExitCode == 0, shown.ToString());

        // Edit what `entry show --output json` printed; `+` is printed as itself (it used to be \u002B).
        var edited = shown.Stdout.Replace("\"unix:uid:1\"", "\"unix:path:/usr/bin/g++\"", StringComparison.Ordinal)
            .Replace("\"old\"", "\"new\"", StringComparison.Ordinal);
        Assert.NotEqual(shown.Stdout, edited);
        var file = dir["entry.json"];
        await File.WriteAllTextAsync(file, edited);
        var updated = await Server.WritAsync("entry", "update", "--file", file, "--output", "json");
        Assert.True(updated.ExitCode == 0, updated.ToString());
        Assert.Contains("\"unix:path:/usr/bin/g++\"", updated.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("\\u002B", updated.Stdout, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(updated.Stdout);
        Assert.Equal(id, doc.RootElement.GetProperty("id").GetString());
        Assert.Equal("new", doc.RootElement.GetProperty("hint").GetString());
        Assert.Equal(["old.internal"], doc.RootElement.GetProperty("dns_names").EnumerateArray().Select(d => d.GetString()).ToArray());

        // One entry per call, with an id; not mixed with the options; the server still validates.
        var two = dir["two.json"];
        await File.WriteAllTextAsync(two, $"[{edited}, {edited}]");
        Expect.OneLineError(await Server.WritAsync("entry", "update", "--file", two), "takes one");
        var noId = dir["no-id.json"];
        await File.WriteAllTextAsync(noId, $$"""{"spiffe_id": "spiffe://example.org/edited", "parent_id": "{{parent}}", "selectors": ["unix:uid:1"]}""");
        Expect.OneLineError(await Server.WritAsync("entry", "update", "--file", noId), "no \"id\"");
        Expect.OneLineError(await Server.WritAsync("entry", "update", "--file", file, "--hint", "x"), "not both");
        await File.WriteAllTextAsync(file, edited.Replace("g++", "g++\", \"unix:uuid:7", StringComparison.Ordinal));
        Expect.OneLineError(await Server.WritAsync("entry", "update", "--file", file), "did you mean 'unix:uid'?");
        var after = await Server.WritAsync("entry", "show", id);
        Assert.Contains("Hint:       new", after.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("uuid", after.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("entry list --output yaml", "--output must be table or json, got 'yaml'")]
    [InlineData("audit list --output yaml", "--output must be table or json, got 'yaml'")]
    [InlineData("revoke list --output xml", "--output must be table or json, got 'xml'")]
    [InlineData("explain d-0 --output yaml", "--output must be text or json, got 'yaml'")]
    [InlineData("audit list --limit 0", "--limit must be a whole number of at least 1")]
    [InlineData("audit list --limit -3", "--limit must be a whole number of at least 1")]
    public async Task Output_formats_and_limits_that_mean_nothing_are_usage_errors(string command, string expected)
    {
        var r = await Server.WritAsync(command.Split(' '));
        Assert.Equal(2, r.ExitCode);
        Expect.OneLineError(r, expected);
    }

    [Fact]
    public async Task An_admin_socket_behind_a_directory_this_user_may_not_search_says_permission_denied()
    {
        // The shared server's socket is in a 0700 directory of root's; nobody cannot even see whether it exists.
        var r = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "dotnet", Repo.WritDll, "entry", "list", "--admin-socket", Server.AdminSocket], workingDir: "/");
        Expect.OneLineError(r, "permission denied reaching the admin socket");
        Assert.DoesNotContain("no admin socket", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Duplicate_entry_is_refused_whatever_the_selector_order()
    {
        var parent = Parent("dup");
        var first = await Server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/dup", "--parent-id", parent,
            "--selector", "unix:uid:1", "--selector", "unix:gid:2");
        Assert.True(first.ExitCode == 0, first.ToString());
        var dup = await Server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/dup", "--parent-id", parent,
            "--selector", "unix:gid:2", "--selector", "unix:uid:1");
        Expect.OneLineError(dup, "");
        Assert.Contains("1 entry", (await Server.WritAsync("entry", "list", "--parent-id", parent)).Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Admin_commands_without_a_server_say_what_to_do()
    {
        using var dir = new TempDir();
        var r = await Proc.WritAsync("entry", "list", "--admin-socket", dir["nothing.sock"]);
        Expect.OneLineError(r, "writ server run");
    }

    [Fact]
    public async Task Healthcheck_reports_ready()
    {
        var r = await Server.WritAsync("healthcheck", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.True(doc.RootElement.GetProperty("ready").GetBoolean());
        Assert.Equal("sqlite", doc.RootElement.GetProperty("store").GetString());
    }
}
