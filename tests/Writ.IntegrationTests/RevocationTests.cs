using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Server.Storage;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>
/// Revocation with real processes: `writ revoke`, the CRL as openssl sees it, automatic revocation on ban/evict/entry
/// delete, the push to open Sync streams, and an agent trying to revoke what is not its own.
/// </summary>
public sealed class RevocationTests(SharedServer fixture) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // ------------------------------------------------------------------ helpers

    private async Task<TestAgent> AttestedAgentAsync()
    {
        var agent = await TestAgent.ConnectAsync(Server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(Server));
        return agent;
    }

    private async Task<string> CreateEntryAsync(string spiffeId, string parentId)
    {
        var r = await Server.WritAsync("entry", "create", "--spiffe-id", spiffeId, "--parent-id", parentId, "--selector", "unix:uid:1000", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>A workload SVID signed through <paramref name="agent"/> for one instance, as an agent gets it.</summary>
    private static async Task<X509Certificate2> SignAsync(TestAgent agent, string entryId, string instanceId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var evidence = new AttestedWorkload { InstanceId = instanceId, Selectors = { new Writ.Protocol.Agent.Selector { Type = "unix", Value = "uid:1000" } } };
        evidence.Facts["unix.uid"] = "1000";
        var r = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest
        {
            Csrs = { new SvidCsr { EntryId = entryId, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = evidence } },
        });
        Assert.True(r.Svids.Count == 1, "no SVID: " + string.Join("; ", r.Denials.Select(d => d.Reason)));
        return X509CertificateLoader.LoadCertificate(r.Svids[0].CertChain[0].ToByteArray());
    }

    /// <summary>
    /// The issuance pipeline records every SVID it signs (serial, SPIFFE ID, agent, entry, instance): revocation finds
    /// what to revoke there. Read from the server's SQLite database.
    /// </summary>
    private async Task AssertIssuedRecordAsync(X509Certificate2 leaf, string spiffeId, string agentId, string? entryId, string? instanceId)
    {
        await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(Server.DataDir, "writ.db"), TimeProvider.System, Ct);
        var c = Assert.Single(await store.Ledger.IssuedAsync(new IssuedFilter(Id: leaf.SerialNumber), DateTimeOffset.UtcNow, Ct));
        Assert.Equal(("x509", spiffeId, agentId, entryId, instanceId), (c.Kind, c.SpiffeId, c.AgentId, c.EntryId, c.InstanceId));
    }

    private async Task<string> CrlPemAsync()
    {
        var r = await Server.WritAsync("bundle", "show", "--format", "crl");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.StartsWith("-----BEGIN X509 CRL-----", r.Stdout, StringComparison.Ordinal);
        return r.Stdout;
    }

    private async Task<string> BundlePemAsync()
    {
        var r = await Server.WritAsync("bundle", "show");
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout;
    }

    /// <summary>`openssl verify -crl_check` of a certificate against the bundle and the server's current CRL.</summary>
    private async Task<ProcResult> VerifyWithCrlAsync(TempDir dir, X509Certificate2 cert)
    {
        var name = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        await File.WriteAllTextAsync(dir[$"{name}-bundle.pem"], await BundlePemAsync(), Ct);
        await File.WriteAllTextAsync(dir[$"{name}-crl.pem"], await CrlPemAsync(), Ct);
        await File.WriteAllTextAsync(dir[$"{name}-cert.pem"], cert.ExportCertificatePem() + "\n", Ct);
        var crl = await Proc.RunAsync("openssl", ["crl", "-in", dir[$"{name}-crl.pem"], "-noout", "-verify", "-CAfile", dir[$"{name}-bundle.pem"]]);
        Assert.True(crl.ExitCode == 0 && crl.Stderr.Contains("verify OK", StringComparison.Ordinal), "the CRL's signature does not verify: " + crl);
        return await Proc.RunAsync("openssl", ["verify", "-crl_check", "-CAfile", dir[$"{name}-bundle.pem"], "-CRLfile", dir[$"{name}-crl.pem"], dir[$"{name}-cert.pem"]]);
    }

    private static void AssertRevokedByOpenSsl(ProcResult r)
    {
        Assert.True(r.ExitCode != 0, "openssl accepted a revoked certificate:\n" + r);
        Assert.Contains("certificate revoked", r.Stdout + r.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Reads Sync updates until one carries a revocation matching <paramref name="match"/>; returns it and the update.</summary>
    private static async Task<(Revocation Revocation, SyncUpdate Update)> NextRevocationAsync(IAsyncStreamReader<SyncUpdate> reader, Func<Revocation, bool> match, CancellationToken ct)
    {
        while (await reader.MoveNext(ct))
        {
            if (reader.Current.Revocations.FirstOrDefault(match) is { } hit)
            {
                return (hit, reader.Current);
            }
        }
        throw new InvalidOperationException("the Sync stream ended before the revocation arrived");
    }

    private static async Task DrainInitialAsync(IAsyncStreamReader<SyncUpdate> reader, CancellationToken ct)
    {
        while (await reader.MoveNext(ct))
        {
            if (reader.Current.PageEnd)
            {
                return;
            }
        }
    }

    private static string Colons(string serialHex) =>
        string.Join(':', Convert.FromHexString(serialHex).Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    // ------------------------------------------------------------------ tests

    [Fact]
    public async Task Revoking_a_minted_svid_by_serial_puts_it_in_the_crl_and_openssl_refuses_it()
    {
        using var dir = new TempDir();
        var mint = await Server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/rv/minted", "--write", dir["svid"], "--output", "json");
        Assert.True(mint.ExitCode == 0, mint.ToString());
        using var leaf = X509CertificateLoader.LoadCertificateFromFile(dir["svid/svid.pem"]);
        await AssertIssuedRecordAsync(leaf, "spiffe://example.org/rv/minted", "admin", null, null);

        var before = await VerifyWithCrlAsync(dir, leaf);
        Assert.True(before.ExitCode == 0, "a valid SVID was refused before revocation:\n" + before);

        var revoke = await Server.WritAsync("revoke", "--serial", Colons(leaf.SerialNumber), "--reason", "key leaked");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        Assert.Contains("Revoked 1 credential(s)", revoke.Stdout, StringComparison.Ordinal);

        var crlText = await Proc.RunAsync("openssl", ["crl", "-noout", "-text"], stdin: await CrlPemAsync());
        Assert.Contains(leaf.SerialNumber, crlText.Stdout.ToUpperInvariant(), StringComparison.Ordinal);
        AssertRevokedByOpenSsl(await VerifyWithCrlAsync(dir, leaf));

        var list = await Server.WritAsync("revoke", "list", "--output", "json");
        Assert.True(list.ExitCode == 0, list.ToString());
        using var doc = JsonDocument.Parse(list.Stdout);
        var mine = doc.RootElement.GetProperty("revocations").EnumerateArray().Single(r => r.GetProperty("serial").GetString() == leaf.SerialNumber);
        Assert.Equal("key leaked", mine.GetProperty("reason").GetString());
        Assert.Equal("spiffe://example.org/rv/minted", mine.GetProperty("spiffe_id").GetString());

        var again = await Server.WritAsync("revoke", "--serial", leaf.SerialNumber);
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("revoked already", again.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revoking_a_minted_jwt_by_jti_lists_it_and_the_ledger_records_who_did_it()
    {
        var mint = await Server.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://example.org/rv/jwt", "--audience", "https://api.example.org", "--ttl", "5m");
        Assert.True(mint.ExitCode == 0, mint.ToString());
        var payload = mint.Stdout.Trim().Split('.')[1].Replace('-', '+').Replace('_', '/');
        using var claims = JsonDocument.Parse(Convert.FromBase64String(payload + new string('=', (4 - (payload.Length % 4)) % 4)));
        var jti = claims.RootElement.GetProperty("jti").GetString()!;

        var revoke = await Server.WritAsync("revoke", "--jti", jti, "--output", "json");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        using var doc = JsonDocument.Parse(revoke.Stdout);
        var r = Assert.Single(doc.RootElement.GetProperty("revoked").EnumerateArray());
        Assert.Equal("jwt", r.GetProperty("kind").GetString());
        Assert.Equal(jti, r.GetProperty("jti").GetString());
        Assert.Equal("revoked by admin", r.GetProperty("reason").GetString());
        var list = await Server.WritAsync("revoke", "list");
        Assert.Contains(jti, list.Stdout, StringComparison.Ordinal);

        await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(Server.DataDir, "writ.db"), TimeProvider.System, Ct);
        var events = await store.Ledger.ListAsync(0, 10_000, "jwt.revoked", "spiffe://example.org/rv/jwt", Ct);
        var e = Assert.Single(events);
        Assert.StartsWith("uid:", e.Actor, StringComparison.Ordinal);
        Assert.Contains($"\"jti\":\"{jti}\"", e.DataJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revoking_something_unknown_or_asking_wrongly_is_a_one_line_error()
    {
        Expect.OneLineError(await Server.WritAsync("revoke", "--serial", "7F0102030405"), "no unexpired X.509-SVID with serial 7F0102030405");
        Expect.OneLineError(await Server.WritAsync("revoke", "--jti", "no-such-jti"), "no unexpired JWT-SVID with jti no-such-jti");
        Expect.OneLineError(await Server.WritAsync("revoke", "--entry", "no-such-entry"), "nothing to revoke");
        Expect.OneLineError(await Server.WritAsync("revoke", "--serial", "not-hex"), "hexadecimal");
        Expect.OneLineError(await Server.WritAsync("revoke", "--spiffe-id", "web"), "not a SPIFFE ID");
        Expect.OneLineError(await Server.WritAsync("revoke"), "exactly one of --serial");
        Expect.OneLineError(await Server.WritAsync("revoke", "--serial", "0A", "--jti", "x"), "exactly one of --serial");
        Expect.OneLineError(await Server.WritAsync("bundle", "show", "--format", "crl-pem"), "--format must be");
    }

    [Fact]
    public async Task Ban_evict_and_entry_delete_revoke_automatically()
    {
        using var dir = new TempDir();
        using var banned = await AttestedAgentAsync();
        using var evicted = await AttestedAgentAsync();
        using var worker = await AttestedAgentAsync();
        var entry = await CreateEntryAsync("spiffe://example.org/rv/auto", worker.AgentId);
        using var workload = await SignAsync(worker, entry, "4242:1");
        await AssertIssuedRecordAsync(workload, "spiffe://example.org/rv/auto", worker.AgentId, entry, "4242:1");
        Assert.True((await VerifyWithCrlAsync(dir, workload)).ExitCode == 0);

        Assert.True((await Server.WritAsync("entry", "delete", entry)).ExitCode == 0);
        AssertRevokedByOpenSsl(await VerifyWithCrlAsync(dir, workload));

        Assert.True((await Server.WritAsync("agent", "ban", banned.AgentId)).ExitCode == 0);
        AssertRevokedByOpenSsl(await VerifyWithCrlAsync(dir, banned.Svid!));

        Assert.True((await Server.WritAsync("agent", "evict", evicted.AgentId)).ExitCode == 0);
        AssertRevokedByOpenSsl(await VerifyWithCrlAsync(dir, evicted.Svid!));

        var list = await Server.WritAsync("revoke", "list");
        Assert.Contains("entry deleted", list.Stdout, StringComparison.Ordinal);
        Assert.Contains("agent banned", list.Stdout, StringComparison.Ordinal);
        Assert.Contains("agent evicted", list.Stdout, StringComparison.Ordinal);
        Assert.True((await VerifyWithCrlAsync(dir, worker.Svid!)).ExitCode == 0);   // bystanders keep working
    }

    [Fact]
    public async Task A_revocation_reaches_an_open_sync_stream_at_once_with_the_new_crl()
    {
        using var watcher = await AttestedAgentAsync();
        using var victim = await AttestedAgentAsync();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(TimeSpan.FromSeconds(60));
        using var stream = watcher.Client.Sync(new SyncRequest(), cancellationToken: cts.Token);
        await DrainInitialAsync(stream.ResponseStream, cts.Token);

        var clock = Stopwatch.StartNew();
        var revoke = await Server.WritAsync("revoke", "--agent", victim.AgentId, "--reason", "node compromised");
        var cliDone = clock.Elapsed;
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        var (revocation, update) = await NextRevocationAsync(stream.ResponseStream, r => r.SerialHex == victim.Svid!.SerialNumber, cts.Token);
        TestContext.Current.SendDiagnosticMessage($"writ revoke → sync push: {clock.Elapsed.TotalMilliseconds:F0} ms (the CLI process alone took {cliDone.TotalMilliseconds:F0} ms)");

        Assert.Equal(victim.AgentId, revocation.SpiffeId);
        Assert.Equal("node compromised", revocation.Reason);
        Assert.True(revocation.Revision > 0);
        Assert.NotNull(update.Bundle);   // the new CRL comes with it
        Assert.NotEqual(0, update.Bundle.CrlDer.Length);
        ProcResult crlText;
        using (var dir = new TempDir())
        {
            await File.WriteAllBytesAsync(dir["crl.der"], update.Bundle.CrlDer.ToByteArray(), Ct);
            crlText = await Proc.RunAsync("openssl", ["crl", "-inform", "DER", "-in", dir["crl.der"], "-noout", "-text"]);
        }
        Assert.Contains(victim.Svid!.SerialNumber, crlText.Stdout.Replace(":", "", StringComparison.Ordinal).ToUpperInvariant(), StringComparison.Ordinal);

        // The revoked agent SVID no longer opens the agent API.
        var refused = await Assert.ThrowsAsync<RpcException>(() => victim.Client.RenewAgentAsync(new RenewAgentRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
        Assert.Contains("revoked", refused.Status.Detail, StringComparison.Ordinal);

        // A reset agent learns every unexpired revocation in its first batch; one resuming after it learns none again.
        using var fresh = watcher.Client.Sync(new SyncRequest(), cancellationToken: cts.Token);
        var all = new List<Revocation>();
        long revision = 0;
        while (await fresh.ResponseStream.MoveNext(cts.Token))
        {
            all.AddRange(fresh.ResponseStream.Current.Revocations);
            revision = fresh.ResponseStream.Current.Revision;
            if (fresh.ResponseStream.Current.PageEnd)
            {
                break;
            }
        }
        Assert.Contains(all, r => r.SerialHex == victim.Svid.SerialNumber);
        using var resumed = watcher.Client.Sync(new SyncRequest { SinceRevision = Math.Max(revision, revocation.Revision) }, cancellationToken: cts.Token);
        Assert.True(await resumed.ResponseStream.MoveNext(cts.Token));
        Assert.DoesNotContain(resumed.ResponseStream.Current.Revocations, r => r.SerialHex == victim.Svid.SerialNumber);
    }

    [Fact]
    public async Task Attack_an_agent_reporting_another_agents_instance_gone_revokes_nothing_of_it()
    {
        using var dir = new TempDir();
        using var attacker = await AttestedAgentAsync();
        using var victim = await AttestedAgentAsync();
        var entry = await CreateEntryAsync("spiffe://example.org/rv/payments", victim.AgentId);
        using var victimSvid = await SignAsync(victim, entry, "777:9");
        await AssertIssuedRecordAsync(victimSvid, "spiffe://example.org/rv/payments", victim.AgentId, entry, "777:9");

        var report = await attacker.Client.ReportInstanceGoneAsync(new ReportInstanceGoneRequest
        {
            InstanceId = "777:9",   // the victim's instance id, guessed or observed
            SerialHex = { victimSvid.SerialNumber, victim.Svid!.SerialNumber },
            Reason = "exited",
        });
        Assert.Equal(0, report.Revoked);
        Assert.True((await VerifyWithCrlAsync(dir, victimSvid)).ExitCode == 0, "the victim's SVID was revoked by another agent");
        Assert.True((await VerifyWithCrlAsync(dir, victim.Svid)).ExitCode == 0);
        var list = await Server.WritAsync("revoke", "list", "--output", "json");
        Assert.DoesNotContain(victimSvid.SerialNumber, list.Stdout, StringComparison.Ordinal);
        Assert.Contains("asked to revoke 2 credential(s) the ledger does not show as issued through it", Server.Stdout.Text + Server.Stderr.Text, StringComparison.Ordinal);

        // The agent that did issue it may: its instance is gone, its SVID is revoked.
        var own = await victim.Client.ReportInstanceGoneAsync(new ReportInstanceGoneRequest { InstanceId = "777:9", SerialHex = { victimSvid.SerialNumber }, Reason = "exited" });
        Assert.Equal(1, own.Revoked);
        AssertRevokedByOpenSsl(await VerifyWithCrlAsync(dir, victimSvid));
    }
}
