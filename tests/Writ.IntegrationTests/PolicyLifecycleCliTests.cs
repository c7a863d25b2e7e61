using System.Text.Json;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Admin;

namespace Writ.IntegrationTests;

/// <summary>writ policy push|list|show|diff|rollback against a real server process.</summary>
public sealed class PolicyLifecycleCliTests
{
    private const string Permit = """
        @id("web-x509")
        permit (principal, action == Writ::Action::"IssueX509Svid", resource)
        when { resource.path like "/web/*" };

        """;

    private static async Task<List<JsonElement>> VersionsAsync(ServerProcess server)
    {
        var r = await server.WritAsync("policy", "list", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return [.. doc.RootElement.GetProperty("versions").EnumerateArray().Select(e => e.Clone())];
    }

    [Fact]
    public async Task A_push_with_a_type_error_is_refused_with_the_validators_error_and_nothing_changes()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var before = await VersionsAsync(server);
        var only = Assert.Single(before);
        Assert.Equal(1, only.GetProperty("version").GetInt64());
        Assert.Equal("server", only.GetProperty("author").GetString());
        Assert.Equal("default policy set", only.GetProperty("comment").GetString());

        var bad = dir["bad.cedar"];
        // A string compared with a number: a type error only the schema validator finds.
        await File.WriteAllTextAsync(bad, """
            @id("typo")
            permit (principal, action == Writ::Action::"IssueX509Svid", resource)
            when { resource.path == 7 };

            """);
        var r = await server.WritAsync("policy", "push", "--file", bad);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("bad.cedar:3:", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("policy typo:", r.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(r, "policy push refused: 1 error against the Writ schema (listed above); nothing changed");

        var after = await VersionsAsync(server);
        Assert.Equal(before.Select(v => v.GetRawText()), after.Select(v => v.GetRawText()));
        var audit = await server.WritAsync("audit", "list", "--kind", "policy.");
        Assert.Contains("1 record;", audit.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Push_show_diff_rollback_round_trip()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);

        // show of the default set round-trips: push it back and nothing changes.
        var v1 = await server.WritAsync("policy", "show");
        Assert.True(v1.ExitCode == 0, v1.ToString());
        var defaults = dir["default.cedar"];
        await File.WriteAllTextAsync(defaults, v1.Stdout);
        var same = await server.WritAsync("policy", "push", "--file", defaults);
        Assert.True(same.ExitCode == 0, same.ToString());
        Assert.Contains("unchanged", same.Stdout, StringComparison.Ordinal);
        Assert.Single(await VersionsAsync(server));

        // A directory of two files, pushed in name order.
        var set = Directory.CreateDirectory(dir["set"]).FullName;
        await File.WriteAllTextAsync(Path.Combine(set, "a-default.cedar"), v1.Stdout);
        await File.WriteAllTextAsync(Path.Combine(set, "b-web.cedar"), Permit);
        await File.WriteAllTextAsync(Path.Combine(set, "notes.txt"), "not a policy");
        var pushed = await server.WritAsync("policy", "push", "--file", set, "--comment", "web permit");
        Assert.True(pushed.ExitCode == 0, pushed.ToString());
        Assert.Contains("pushed policy version 2 (4 policies in 2 files", pushed.Stdout, StringComparison.Ordinal);

        var versions = await VersionsAsync(server);
        Assert.Equal([2L, 1L], versions.Select(v => v.GetProperty("version").GetInt64()));
        Assert.True(versions[0].GetProperty("active").GetBoolean());
        Assert.False(versions[1].GetProperty("active").GetBoolean());
        Assert.Equal("web permit", versions[0].GetProperty("comment").GetString());
        Assert.StartsWith("uid:", versions[0].GetProperty("author").GetString(), StringComparison.Ordinal);
        Assert.Equal(4, versions[0].GetProperty("policies").GetInt32());

        var table = await server.WritAsync("policy", "list");
        Assert.Matches(@"(?m)^2\s+\*\s+", table.Stdout);

        var written = dir["out"];
        var show = await server.WritAsync("policy", "show", "2", "--write", written);
        Assert.True(show.ExitCode == 0, show.ToString());
        Assert.Equal(Permit, await File.ReadAllTextAsync(Path.Combine(written, "b-web.cedar")));
        Assert.Equal(v1.Stdout, await File.ReadAllTextAsync(Path.Combine(written, "a-default.cedar")));
        var printed = await server.WritAsync("policy", "show", "2");
        Assert.Contains("// ---- file: b-web.cedar ----", printed.Stdout, StringComparison.Ordinal);

        var diff = await server.WritAsync("policy", "diff", "1", "2");
        Assert.True(diff.ExitCode == 0, diff.ToString());
        Assert.Contains("--- /dev/null\n+++ v2/b-web.cedar\n@@ -0,0 +1,3 @@\n+@id(\"web-x509\")\n", diff.Stdout, StringComparison.Ordinal);
        Assert.Contains("--- v1/default.cedar\n+++ /dev/null\n", diff.Stdout, StringComparison.Ordinal);

        var none = await server.WritAsync("policy", "diff", "2");
        Assert.Contains("no differences between v2 and v2", none.Stdout, StringComparison.Ordinal);

        var rollback = await server.WritAsync("policy", "rollback", "1", "--comment", "undo web");
        Assert.True(rollback.ExitCode == 0, rollback.ToString());
        Assert.Contains("policy version 3 has the text of version 1", rollback.Stdout, StringComparison.Ordinal);
        versions = await VersionsAsync(server);
        Assert.Equal(3, versions[0].GetProperty("version").GetInt64());
        Assert.Equal(1, versions[0].GetProperty("rolled_back_from").GetInt64());
        Assert.Equal(versions[2].GetProperty("sha256").GetString(), versions[0].GetProperty("sha256").GetString());
        var back = await server.WritAsync("policy", "show");
        Assert.Equal(v1.Stdout, back.Stdout);

        // --file candidate against the active version (one file each: compared directly).
        var candidate = dir["candidate.cedar"];
        await File.WriteAllTextAsync(candidate, v1.Stdout.Replace("when { context.bound };", "when { context.bound && context.requested_ttl <= 300 };", StringComparison.Ordinal));
        var cdiff = await server.WritAsync("policy", "diff", "--file", candidate);
        Assert.Contains("-when { context.bound };\n+when { context.bound && context.requested_ttl <= 300 };", cdiff.Stdout, StringComparison.Ordinal);
        Assert.Contains("+++ candidate/candidate.cedar", cdiff.Stdout, StringComparison.Ordinal);

        Expect.OneLineError(await server.WritAsync("policy", "rollback", "9"), "policy version 9 does not exist");

        var audit = await server.WritAsync("audit", "list", "--kind", "policy.", "--output", "json");
        using var doc = JsonDocument.Parse(audit.Stdout);
        var events = doc.RootElement.GetProperty("events").EnumerateArray().ToList();
        Assert.Equal(["policy.pushed", "policy.pushed", "policy.rolled_back"], events.Select(e => e.GetProperty("kind").GetString()));
        Assert.Equal(["policy:1", "policy:2", "policy:3"], events.Select(e => e.GetProperty("subject").GetString()));
        Assert.Equal(2, events[1].GetProperty("data").GetProperty("version").GetInt64());
        Assert.Equal(["a-default.cedar", "b-web.cedar"], events[1].GetProperty("data").GetProperty("files").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal(1, events[2].GetProperty("data").GetProperty("rolled_back_from").GetInt64());
        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }

    [Fact]
    public async Task The_default_policy_is_installed_once_and_kept_across_restarts()
    {
        using var dir = new TempDir();
        var server = await ServerProcess.StartAsync(dir["server"]);
        await using (server)
        {
            var p = dir["p.cedar"];
            await File.WriteAllTextAsync(p, Permit);
            Assert.Equal(0, (await server.WritAsync("policy", "push", "--file", p)).ExitCode);
            await server.StopAsync();
            await server.StartAsync();
            var versions = await VersionsAsync(server);
            Assert.Equal([2L, 1L], versions.Select(v => v.GetProperty("version").GetInt64()));
            var shown = await server.WritAsync("policy", "show");
            Assert.Equal(Permit, shown.Stdout);
        }
    }

    [Fact]
    public async Task A_client_that_skips_the_cli_check_is_refused_by_the_server_and_nothing_changes()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var admin = new AdminConnection(server.AdminSocket);
        var before = await VersionsAsync(server);

        foreach (var text in (string[])["permit (principal, action, resource) when { resource.path == 7 };", "permit (principal", ""])
        {
            var request = new PushPolicyRequest();
            request.Files.Add(new PolicyFile { Name = "evil.cedar", Text = text });
            var e = await Assert.ThrowsAsync<CommandFailedException>(() => admin.CallAsync(c => c.PushPolicyAsync(request)));
            Assert.StartsWith("the push was refused and nothing changed: evil.cedar", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e.Message);
        }
        var empty = await Assert.ThrowsAsync<CommandFailedException>(() => admin.CallAsync(c => c.PushPolicyAsync(new PushPolicyRequest())));
        Assert.Contains("the policy set is empty", empty.Message, StringComparison.Ordinal);
        var twice = new PushPolicyRequest();
        twice.Files.Add(new PolicyFile { Name = "a.cedar", Text = Permit });
        twice.Files.Add(new PolicyFile { Name = "a.cedar", Text = Permit });
        await Assert.ThrowsAsync<CommandFailedException>(() => admin.CallAsync(c => c.PushPolicyAsync(twice)));

        var after = await VersionsAsync(server);
        Assert.Equal(before.Select(v => v.GetRawText()), after.Select(v => v.GetRawText()));
        var audit = await server.WritAsync("audit", "list", "--kind", "policy.");
        Assert.Contains("1 record;", audit.Stdout, StringComparison.Ordinal);
    }
}
