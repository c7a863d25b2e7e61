using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>The ledger through the real CLI against a real server process; tampering done with the sqlite3 CLI.</summary>
public sealed class AuditCliTests
{
    private const string Parent = "spiffe://example.org/writ/agent/join_token/audit";

    /// <summary>The independent verifier printed in docs/audit.md (Python's hashlib, not our code), so the doc is tested too.</summary>
    private static string PythonVerifierFromDocs()
    {
        var doc = File.ReadAllText(Path.Combine(Repo.Root, "docs", "audit.md"));
        var start = doc.IndexOf("```python\n", StringComparison.Ordinal);
        Assert.True(start >= 0, "docs/audit.md lost its Python verifier");
        start += "```python\n".Length;
        return doc[start..doc.IndexOf("```", start, StringComparison.Ordinal)];
    }

    private static async Task<string> UidAsync()
    {
        var r = await Proc.RunAsync("id", ["-u"]);
        Assert.Equal(0, r.ExitCode);
        return r.Stdout.Trim();
    }

    // The server holds the database open (WAL) and may be writing (its ledger checkpoints): the attacker's sqlite3 waits
    // for the lock instead of failing with SQLITE_BUSY on a loaded machine.
    private static async Task Sqlite3Async(string db, string sql)
    {
        var r = await Proc.RunAsync("sqlite3", ["-cmd", ".timeout 10000", db, sql]);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    private static async Task<string> Sqlite3OutputAsync(string db, string command)
    {
        var r = await Proc.RunAsync("sqlite3", ["-cmd", ".timeout 10000", db, command]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout;
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
        Expect.OneLineError(await server.WritAsync("audit", "show", "d-no-such-decision"), "no ledger record has decision id 'd-no-such-decision'");
        Expect.OneLineError(await server.WritAsync("audit", "list", "--limit", "100000"), "--limit must be between 1 and 5000");
        Expect.OneLineError(await server.WritAsync("audit", "list", "--after", "-3"), "--after must be a record number");
        Expect.OneLineError(await server.WritAsync("audit", "verify", "--anchor", "abc"), "--anchor must be 64 hex digits");
    }

    private static async Task<string> MintAndRevokeAsync(ServerProcess server, TempDir dir, string name)
    {
        var mint = await server.WritAsync("x509", "mint", "--spiffe-id", $"spiffe://example.org/{name}", "--write", dir[name], "--output", "json");
        Assert.True(mint.ExitCode == 0, mint.ToString());
        using var leaf = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(dir[$"{name}/svid.pem"]);
        var revoke = await server.WritAsync("revoke", "--serial", leaf.SerialNumber, "--reason", "key leaked");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        return leaf.SerialNumber;
    }

    [Fact]
    public async Task Un_revoking_a_certificate_or_revoking_one_in_the_database_makes_verify_name_the_serial()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var db = Path.Combine(dir["server"], "writ.db");
        var leaked = await MintAndRevokeAsync(server, dir, "leaked");
        var other = await MintAndRevokeAsync(server, dir, "other");
        var before = await server.WritAsync("audit", "verify");
        Assert.True(before.ExitCode == 0, before.ToString());
        Assert.Contains("revocations table matches the ledger's 2 revocation records", before.Stdout, StringComparison.Ordinal);

        // An attacker un-revokes the leaked certificate: its row goes, its svid.revoked record (hash-chained) stays.
        await Sqlite3Async(db, $"CREATE TABLE saved AS SELECT * FROM revocations WHERE id = '{leaked}'; DELETE FROM revocations WHERE id = '{leaked}'");
        var unrevoked = await server.WritAsync("audit", "verify");
        Assert.Equal(1, unrevoked.ExitCode);
        Expect.OneLineError(unrevoked, $"X.509 serial {leaked} is revoked in the ledger (record ");
        Assert.Contains("but missing from the revocations table", unrevoked.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(other, unrevoked.Stderr, StringComparison.Ordinal);

        // Put back as it was, it verifies again: the check is about that row.
        await Sqlite3Async(db, "INSERT INTO revocations SELECT * FROM saved; DROP TABLE saved");
        var restored = await server.WritAsync("audit", "verify");
        Assert.True(restored.ExitCode == 0, restored.ToString());

        // A revocation slipped into the table without a ledger record.
        await Sqlite3Async(db, "INSERT INTO revocations (kind, id, spiffe_id, entry_id, instance_id, revoked_at_us, expires_at_us, reason, revision) " +
            "SELECT 'x509', 'DEADBEEF01', spiffe_id, entry_id, instance_id, revoked_at_us, expires_at_us, 'quiet', revision FROM revocations LIMIT 1");
        var inserted = await server.WritAsync("audit", "verify");
        Assert.Equal(1, inserted.ExitCode);
        Expect.OneLineError(inserted, "X.509 serial DEADBEEF01 is in the revocations table but the ledger has no svid.revoked record of it");

        // Both at once: the JSON lists every mismatch, the one line names the first and counts the rest.
        await Sqlite3Async(db, $"DELETE FROM revocations WHERE id = '{other}'");
        var json = await server.WritAsync("audit", "verify", "--output", "json");
        Assert.Equal(1, json.ExitCode);
        using var doc = JsonDocument.Parse(json.Stdout);
        Assert.False(doc.RootElement.GetProperty("ok").GetBoolean());
        var mismatches = doc.RootElement.GetProperty("revocation_mismatches").EnumerateArray().Select(m => m.GetString()!).ToList();
        Assert.Equal(2, mismatches.Count);
        Assert.Contains(mismatches, m => m.Contains("DEADBEEF01", StringComparison.Ordinal));
        Assert.Contains(mismatches, m => m.Contains(other, StringComparison.Ordinal) && m.Contains("missing from the revocations table", StringComparison.Ordinal));
        Assert.Contains("and 1 more revocation mismatches", json.Stderr, StringComparison.Ordinal);
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
        await using var server = await ServerProcess.StartAsync(dir["server"], "example.org", "--ledger-checkpoint-interval", "1h");
        for (var i = 0; i < 3; i++)
            await CreateEntryAsync(server, 300 + i);
        var list = await ListJsonAsync(server);
        var anchor = list.GetProperty("head").GetProperty("hash").GetString()!;
        await CreateEntryAsync(server, 399);

        var file = dir["export.jsonl"];
        var export = await server.WritAsync("audit", "export", "--file", file);
        Assert.True(export.ExitCode == 0, export.ToString());
        var lines = await File.ReadAllLinesAsync(file);
        Assert.Equal(5, lines.Length);
        Assert.All(lines, l => Assert.StartsWith("{\"seq\":", l, StringComparison.Ordinal));

        // Offline: no admin socket at all.
        var offline = await Proc.WritAsync("audit", "verify", "--file", file, "--anchor", anchor);
        Assert.True(offline.ExitCode == 0, offline.ToString());
        Assert.Contains("5 records (1 to 5) chain intact", offline.Stdout, StringComparison.Ordinal);
        Assert.Contains("anchor found at record 4", offline.Stdout, StringComparison.Ordinal);

        // The verifier printed in docs/audit.md, outside .NET, agrees with every hash.
        var python = await Proc.RunAsync("sh", ["-c", "command -v python3"]);
        if (python.ExitCode == 0)
        {
            var py = await Proc.RunAsync("python3", ["-c", PythonVerifierFromDocs(), file]);
            Assert.True(py.ExitCode == 0, py.ToString());
            Assert.Equal("ok 5", py.Stdout.Trim());
        }

        // Streaming export to stdout, from a seq on, verifies from its first record.
        var tail = await server.WritAsync("audit", "export", "--after", "2");
        Assert.Equal(lines.Skip(2), tail.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        // Bad paths are one-line errors, and a failed export leaves no file behind. (A missing directory is created, as for
        // every --write; a path through a regular file cannot be.)
        Expect.OneLineError(await server.WritAsync("audit", "export", "--file", Path.Combine(file, "x.jsonl")), "error:");
        Assert.Equal(lines, await File.ReadAllLinesAsync(file));
        // --output is the format, as everywhere else: a file name there is a usage error that says to use --file.
        Expect.OneLineError(await server.WritAsync("audit", "export", "--output", dir["x.jsonl"]), "write to a file with --file FILE");
        Assert.False(File.Exists(dir["x.jsonl"]));
        Assert.Equal(lines, (await server.WritAsync("audit", "export", "--output", "json")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", dir["missing.jsonl"]), "cannot read");
        await File.WriteAllTextAsync(dir["junk.jsonl"], "{\"seq\":1}\n");
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", dir["junk.jsonl"]), "junk.jsonl:1: at_unix_micros is missing");

        // The auditor's copy is edited: named.
        lines[2] = lines[2].Replace("w301", "evil", StringComparison.Ordinal);
        var edited = dir["edited.jsonl"];
        await File.WriteAllLinesAsync(edited, lines);
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", edited), "ledger record 3 was altered");

        // The whole chain rewritten consistently by someone with database access (before any checkpoint covered the
        // records cut; this server checkpoints hourly): verifies alone, not against the anchor.
        var db = Path.Combine(dir["server"], "writ.db");
        await Sqlite3Async(db, "DELETE FROM ledger WHERE seq >= 2; UPDATE ledger_head SET seq = 1, hash = (SELECT hash FROM ledger WHERE seq = 1)");
        var truncated = await server.WritAsync("audit", "verify");
        Assert.True(truncated.ExitCode == 0, truncated.ToString());
        Expect.OneLineError(await server.WritAsync("audit", "verify", "--anchor", anchor), "is not in the ledger");
    }

    [Fact]
    public async Task An_emptied_ledger_with_its_head_reset_fails_verify_against_the_signed_checkpoint_online_and_offline()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"], "example.org", "--ledger-checkpoint-interval", "200ms");
        for (var i = 0; i < 3; i++)
            await CreateEntryAsync(server, 500 + i);
        // The server signs the head (record 4) within an interval and logs the checkpoint.
        await server.Stderr.WaitForAsync(l => l.Contains("Ledger checkpoint signed: record 4 ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var checkpoints = Path.Combine(dir["server"], "checkpoints.jsonl");
        var good = await server.WritAsync("audit", "verify");
        Assert.True(good.ExitCode == 0, good.ToString());
        Assert.Contains("signed checkpoint at record 4", good.Stdout, StringComparison.Ordinal);
        var export = dir["before.jsonl"];
        Assert.Equal(0, (await server.WritAsync("audit", "export", "--file", export)).ExitCode);
        Assert.DoesNotContain("checkpoint", (await Sqlite3OutputAsync(Path.Combine(dir["server"], "writ.db"), ".tables")), StringComparison.Ordinal);

        // The attacker with the database empties the ledger and resets the head: the chain alone is "0 records, intact".
        await Sqlite3Async(Path.Combine(dir["server"], "writ.db"), "BEGIN; DELETE FROM ledger; UPDATE ledger_head SET seq = 0, hash = zeroblob(32); COMMIT;");
        var verify = await server.WritAsync("audit", "verify");
        Assert.Equal(1, verify.ExitCode);
        Expect.OneLineError(verify, "the ledger ends at record 0, but a signed checkpoint");
        Assert.Contains($"--checkpoints {checkpoints}", verify.Stderr, StringComparison.Ordinal);
        // The server refuses to sign over the gap, and says so in its log.
        await server.Stderr.WaitForAsync(l => l.Contains("Ledger checkpoint refused at head 0", StringComparison.Ordinal), TimeSpan.FromSeconds(60));

        // Offline: the export taken before verifies against the checkpoints file; one cut short does not.
        var offline = await Proc.WritAsync("audit", "verify", "--file", export, "--checkpoints", checkpoints);
        Assert.True(offline.ExitCode == 0, offline.ToString());
        Assert.Contains("signed checkpoint at record 4", offline.Stdout, StringComparison.Ordinal);
        var cut = dir["cut.jsonl"];
        await File.WriteAllLinesAsync(cut, (await File.ReadAllLinesAsync(export)).Take(2));
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", cut, "--checkpoints", checkpoints), "the ledger ends at record 2, but a signed checkpoint");
        // An attacker's export that starts right after the checkpoint, its data rewritten and its hashes recomputed from a
        // forged first prev_hash, does not connect to the checkpoint: one line, never "matches"; nor one that starts later.
        var forged = new List<string>();
        var prev = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var template = (await File.ReadAllLinesAsync(export)).Select(l => Writ.Server.Ledger.LedgerExport.TryParseLine(l, out var e, out _) ? e! : null).First(e => e!.Seq == 4)!;
        for (var seq = 5; seq <= 6; seq++)
        {
            var e = template with { Seq = seq, Actor = "uid:0", PrevHash = prev };
            e = e with { Hash = Writ.Server.Ledger.LedgerHash.Compute(e, prev) };
            forged.Add(Writ.Server.Ledger.LedgerExport.ToLine(e));
            prev = e.Hash;
        }
        await File.WriteAllLinesAsync(dir["forged.jsonl"], forged);
        var unlinked = await Proc.WritAsync("audit", "verify", "--file", dir["forged.jsonl"], "--checkpoints", checkpoints);
        Expect.OneLineError(unlinked, "ledger record 5 does not link to the signed checkpoint");
        Assert.DoesNotContain("matches", unlinked.Stdout, StringComparison.Ordinal);
        await File.WriteAllLinesAsync(dir["later.jsonl"], forged.Skip(1));
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", dir["later.jsonl"], "--checkpoints", checkpoints), "cannot be checked against the checkpoint");
        using var other = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var otherKey = dir["other.pub"];
        await File.WriteAllTextAsync(otherKey, other.ExportSubjectPublicKeyInfoPem());
        Expect.OneLineError(await Proc.WritAsync("audit", "verify", "--file", export, "--checkpoints", checkpoints, "--checkpoint-key", otherKey), "signature does not verify");
        Expect.OneLineError(await server.WritAsync("audit", "verify", "--checkpoints", checkpoints), "give it with --file EXPORT");
    }

    [Fact]
    public async Task Audit_list_and_export_page_through_records_too_large_for_one_message()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        await CreateEntryAsync(server, 600);
        // 40 records of 1 MB each (what a flood left behind before the limits): 40 MB, more than one gRPC message may hold.
        await Sqlite3Async(Path.Combine(dir["server"], "writ.db"), """
            WITH RECURSIVE n(i) AS (SELECT 3 UNION ALL SELECT i + 1 FROM n WHERE i < 42)
            INSERT INTO ledger (seq, at_us, kind, actor, subject, decision_id, data, prev_hash, hash)
            SELECT i, 0, 'issuance.denied', 'flood', 'spiffe://example.org/flood', NULL, '{"pad":"' || replace(hex(zeroblob(500000)), '00', 'xx') || '"}', zeroblob(32), zeroblob(32) FROM n;
            """);
        var list = await ListJsonAsync(server, "--limit", "5000");
        Assert.Equal(42, list.GetProperty("events").GetArrayLength());
        Assert.Equal(42, list.GetProperty("events")[41].GetProperty("seq").GetInt64());
        var export = dir["all.jsonl"];
        var r = await server.WritAsync("audit", "export", "--file", export);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(42, File.ReadLines(export).Count());
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
        Assert.Equal(0, (await server.WritAsync("audit", "export", "--file", export)).ExitCode);
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
