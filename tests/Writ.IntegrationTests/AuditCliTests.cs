using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>The ledger through the real CLI against a real server process; tampering done with the sqlite3 CLI.</summary>
public sealed class AuditCliTests
{
    private const string Parent = "spiffe://example.org/writ/agent/join_token/audit";

    /// <summary>An independent verifier written from docs/audit.md alone (Python's hashlib, not our code).</summary>
    private const string PythonVerifier = """
        import hashlib, json, struct, sys
        prev = bytes(32)
        n = 0
        for line in open(sys.argv[1], encoding="utf-8"):
            r = json.loads(line)
            def s(v):
                if v is None:
                    return b"\xff\xff\xff\xff"
                b = v.encode("utf-8")
                return struct.pack(">I", len(b)) + b
            m = b"writ-ledger-v1\n" + prev + struct.pack(">qq", r["seq"], r["at_unix_micros"])
            m += s(r["kind"]) + s(r["actor"]) + s(r["subject"]) + s(r["decision_id"]) + s(r["data_json"])
            h = hashlib.sha256(m).digest()
            if bytes.fromhex(r["prev_hash"]) != prev or h.hex() != r["hash"]:
                print("bad", r["seq"]); sys.exit(1)
            prev = h; n += 1
        print("ok", n)
        """;

    private static async Task<string> UidAsync()
    {
        var r = await Proc.RunAsync("id", ["-u"]);
        Assert.Equal(0, r.ExitCode);
        return r.Stdout.Trim();
    }

    private static async Task Sqlite3Async(string db, string sql)
    {
        var r = await Proc.RunAsync("sqlite3", [db, sql]);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    private static async Task<string> CreateEntryAsync(ServerProcess server, int uid)
    {
        var r = await server.WritAsync("entry", "create", "--spiffe-id", $"spiffe://example.org/w{uid}", "--parent-id", Parent,
            "--selector", $"unix:uid:{uid}", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    private static async Task<JsonElement> ListJsonAsync(ServerProcess server, params string[] args)
    {
        var r = await server.WritAsync(["audit", "list", "--output", "json", .. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.Clone();
    }

    [Fact]
    public async Task Entry_changes_by_the_cli_are_recorded_in_order_with_the_callers_uid_and_the_chain_verifies()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var uid = await UidAsync();

        var id = await CreateEntryAsync(server, 1000);
        var updated = await server.WritAsync("entry", "update", "--id", id, "--hint", "audited");
        Assert.True(updated.ExitCode == 0, updated.ToString());
        var deleted = await server.WritAsync("entry", "delete", id);
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        // A refused create (duplicate of another entry) leaves no record.
        var other = await CreateEntryAsync(server, 2000);
        var dup = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/w2000", "--parent-id", Parent, "--selector", "unix:uid:2000");
        Assert.NotEqual(0, dup.ExitCode);
        var token = await server.WritAsync("token", "generate", "--output", "json");
        Assert.True(token.ExitCode == 0, token.ToString());
        using var tokenDoc = JsonDocument.Parse(token.Stdout);
        var secret = tokenDoc.RootElement.GetProperty("token").GetString()!;

        var list = await ListJsonAsync(server);
        var events = list.GetProperty("events").EnumerateArray().ToList();
        Assert.Equal(["policy.pushed", "entry.created", "entry.updated", "entry.deleted", "entry.created", "join_token.created"],
            events.Select(e => e.GetProperty("kind").GetString()));
        Assert.Equal([1L, 2, 3, 4, 5, 6], events.Select(e => e.GetProperty("seq").GetInt64()));
        Assert.Equal("server", events[0].GetProperty("actor").GetString());
        Assert.All(events.Skip(1), e => Assert.Equal("uid:" + uid, e.GetProperty("actor").GetString()));
        Assert.Equal([id, id, id, other], events.Skip(1).Take(4).Select(e => e.GetProperty("subject").GetString()));
        Assert.Equal("audited", events[2].GetProperty("data").GetProperty("hint").GetString());
        Assert.Equal("spiffe://example.org/w1000", events[3].GetProperty("data").GetProperty("spiffe_id").GetString());
        Assert.Equal(tokenDoc.RootElement.GetProperty("agent_spiffe_id").GetString(), events[5].GetProperty("subject").GetString());
        Assert.DoesNotContain(secret, list.GetRawText(), StringComparison.Ordinal);
        Assert.Equal(6, list.GetProperty("head").GetProperty("seq").GetInt64());
        Assert.Equal(events[5].GetProperty("hash").GetString(), list.GetProperty("head").GetProperty("hash").GetString());

        var filtered = await ListJsonAsync(server, "--kind", "entry.", "--subject", id);
        Assert.Equal(3, filtered.GetProperty("events").GetArrayLength());

        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Contains("ledger verified: 6 records", verify.Stdout, StringComparison.Ordinal);

        var shown = await server.WritAsync("audit", "show", "3");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.Contains("Kind:       entry.updated", shown.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"hint\": \"audited\"", shown.Stdout, StringComparison.Ordinal);
        Expect.OneLineError(await server.WritAsync("audit", "show", "99"), "ledger record 99 does not exist");
    }

    [Fact]
    public async Task Altering_one_ledger_row_in_the_database_makes_verify_name_that_row()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        for (var i = 0; i < 5; i++)
            await CreateEntryAsync(server, 100 + i);
        var before = await server.WritAsync("audit", "verify");
        Assert.True(before.ExitCode == 0, before.ToString());

        // An attacker rewrites who did it in record 4 (data only; the stored hash is left as it was).
        await Sqlite3Async(Path.Combine(dir["server"], "writ.db"), "UPDATE ledger SET data = replace(data, 'w102', 'evil') WHERE seq = 4");
        var after = await server.WritAsync("audit", "verify");
        Assert.Equal(1, after.ExitCode);
        Expect.OneLineError(after, "ledger record 4 was altered (its hash does not match its contents): restore the database from a backup");

        var json = await server.WritAsync("audit", "verify", "--output", "json");
        using var doc = JsonDocument.Parse(json.Stdout);
        Assert.False(doc.RootElement.GetProperty("ok").GetBoolean());
        Assert.Equal(4, doc.RootElement.GetProperty("first_bad_seq").GetInt64());
    }

    [Fact]
    public async Task Deleting_a_middle_ledger_row_is_named_and_so_is_a_truncated_tail()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        for (var i = 0; i < 5; i++)
            await CreateEntryAsync(server, 200 + i);
        var db = Path.Combine(dir["server"], "writ.db");

        await Sqlite3Async(db, "DELETE FROM ledger WHERE seq = 6");   // the last record: only the head knows
        Expect.OneLineError(await server.WritAsync("audit", "verify"), "ledger record 6 is missing");

        await Sqlite3Async(db, "DELETE FROM ledger WHERE seq = 3");
        Expect.OneLineError(await server.WritAsync("audit", "verify"), "ledger record 3 is missing (the next record is 4)");
    }

    [Fact]
    public async Task An_export_verifies_offline_and_an_edited_export_or_a_rewritten_chain_does_not()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        for (var i = 0; i < 3; i++)
            await CreateEntryAsync(server, 300 + i);
        var list = await ListJsonAsync(server);
        var anchor = list.GetProperty("head").GetProperty("hash").GetString()!;
        await CreateEntryAsync(server, 399);

        var file = dir["export.jsonl"];
        var export = await server.WritAsync("audit", "export", "--output", file);
        Assert.True(export.ExitCode == 0, export.ToString());
        var lines = await File.ReadAllLinesAsync(file);
        Assert.Equal(5, lines.Length);
        Assert.All(lines, l => Assert.StartsWith("{\"seq\":", l, StringComparison.Ordinal));

        // Offline: no admin socket at all.
        var offline = await Proc.WritAsync("audit", "verify", "--file", file, "--anchor", anchor);
        Assert.True(offline.ExitCode == 0, offline.ToString());
        Assert.Contains("5 records (1 to 5) chain intact", offline.Stdout, StringComparison.Ordinal);
        Assert.Contains("anchor found at record 4", offline.Stdout, StringComparison.Ordinal);

        // The documented encoding, re-implemented outside .NET, agrees with every hash.
        var python = await Proc.RunAsync("sh", ["-c", "command -v python3"]);
        if (python.ExitCode == 0)
        {
            var py = await Proc.RunAsync("python3", ["-c", PythonVerifier, file]);
            Assert.True(py.ExitCode == 0, py.ToString());
            Assert.Equal("ok 5", py.Stdout.Trim());
        }

        // Streaming export to stdout, from a seq on, verifies from its first record.
        var tail = await server.WritAsync("audit", "export", "--after", "2");
        Assert.Equal(lines.Skip(2), tail.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        // Bad paths are one-line errors, and a failed export leaves no file behind.
        Expect.OneLineError(await server.WritAsync("audit", "export", "--output", dir["no/such/dir/x.jsonl"]), "cannot write");
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", dir["missing.jsonl"]), "cannot read");
        await File.WriteAllTextAsync(dir["junk.jsonl"], "{\"seq\":1}\n");
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", dir["junk.jsonl"]), "junk.jsonl:1: at_unix_micros is missing");

        // The auditor's copy is edited: named.
        lines[2] = lines[2].Replace("w301", "evil", StringComparison.Ordinal);
        var edited = dir["edited.jsonl"];
        await File.WriteAllLinesAsync(edited, lines);
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", edited), "ledger record 3 was altered");

        // The whole chain rewritten consistently by someone with database access: verifies alone, not against the anchor.
        var db = Path.Combine(dir["server"], "writ.db");
        await Sqlite3Async(db, "DELETE FROM ledger WHERE seq >= 2; UPDATE ledger_head SET seq = 1, hash = (SELECT hash FROM ledger WHERE seq = 1)");
        var truncated = await server.WritAsync("audit", "verify");
        Assert.True(truncated.ExitCode == 0, truncated.ToString());
        Expect.OneLineError(await server.WritAsync("audit", "verify", "--anchor", anchor), "is not in the ledger");
    }

    [Fact]
    public async Task Verify_and_export_stream_a_ledger_larger_than_one_page()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        // 2,500 entries in one batch: 2,500 entry.created records in one transaction (the server reads 1,000 a page).
        var entries = string.Join(",", Enumerable.Range(0, 2500).Select(i =>
            $$"""{"spiffe_id": "spiffe://example.org/bulk/{{i}}", "parent_id": "{{Parent}}", "selectors": ["unix:uid:{{i}}"]}"""));
        var file = dir["bulk.json"];
        await File.WriteAllTextAsync(file, $$"""{"entries": [{{entries}}]}""");
        var created = await server.WritAsync("entry", "create", "--file", file, "--output", "json");
        Assert.True(created.ExitCode == 0, created.ToString());

        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Contains("ledger verified: 2501 records", verify.Stdout, StringComparison.Ordinal);

        var export = dir["all.jsonl"];
        Assert.Equal(0, (await server.WritAsync("audit", "export", "--output", export)).ExitCode);
        var lines = await File.ReadAllLinesAsync(export);
        Assert.Equal(2501, lines.Length);
        Assert.StartsWith("{\"seq\":2501,", lines[^1], StringComparison.Ordinal);
        var offline = await Proc.WritAsync("audit", "verify", "--file", export);
        Assert.True(offline.ExitCode == 0, offline.ToString());

        var page = await ListJsonAsync(server, "--after", "1000", "--limit", "5");
        Assert.Equal([1001L, 1002, 1003, 1004, 1005], page.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("seq").GetInt64()));

        // Record 1,700 sits in the second page the server reads.
        await Sqlite3Async(Path.Combine(dir["server"], "writ.db"), "UPDATE ledger SET actor = 'uid:4242' WHERE seq = 1700");
        Expect.OneLineError(await server.WritAsync("audit", "verify"), "ledger record 1700 was altered");
    }

    [Fact]
    public async Task Banning_and_evicting_an_agent_are_recorded_with_the_caller()
    {
        await using var rig = await AgentRig.StartAsync();
        var uid = await UidAsync();
        var agentId = rig.Agent.AgentId;
        var ban = await rig.Server.WritAsync("agent", "ban", agentId);
        Assert.True(ban.ExitCode == 0, ban.ToString());
        var evict = await rig.Server.WritAsync("agent", "evict", agentId);
        Assert.True(evict.ExitCode == 0, evict.ToString());

        var list = await ListJsonAsync(rig.Server, "--kind", "node.", "--subject", agentId);
        var events = list.GetProperty("events").EnumerateArray().Where(e => e.GetProperty("actor").GetString() == "uid:" + uid).ToList();
        Assert.Equal(["node.banned", "node.evicted"], events.Select(e => e.GetProperty("kind").GetString()));
        Assert.True(events[0].GetProperty("data").GetProperty("banned").GetBoolean());
        Assert.Equal("join_token", events[1].GetProperty("data").GetProperty("attestation_type").GetString());
        var verify = await rig.Server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }
}
