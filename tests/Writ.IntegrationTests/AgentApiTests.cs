using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>The agent API of a real server: node attestation, ban/evict, sync push, signing — each check attacked.</summary>
public sealed class AgentApiTests(SharedServer fixture) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    private async Task<TestAgent> AttestedAgentAsync(params string[] tokenArgs)
    {
        var agent = await TestAgent.ConnectAsync(Server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(Server, tokenArgs));
        return agent;
    }

    private async Task<string> CreateEntryAsync(string spiffeId, string parentId, params string[] extra)
    {
        var r = await Server.WritAsync(["entry", "create", "--spiffe-id", spiffeId, "--parent-id", parentId, "--selector", "unix:uid:1000", "--output", "json", .. extra]);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task Join_token_attests_once_and_is_refused_on_second_use()
    {
        using var agent = await TestAgent.ConnectAsync(Server);
        var token = await TestAgent.NewJoinTokenAsync(Server);
        var first = await agent.AttestAsync(token);
        Assert.StartsWith("spiffe://example.org/writ/agent/join_token/", first.SpiffeId, StringComparison.Ordinal);
        Assert.DoesNotContain(token, first.SpiffeId, StringComparison.Ordinal);   // the ID names the token, never the secret
        var leaf = X509CertificateLoader.LoadCertificate(first.SvidChain[0].ToByteArray());
        Assert.True(X509SvidValidator.Validate([leaf], agent.Bundle, DateTimeOffset.UtcNow).IsValid);

        using var thief = await TestAgent.ConnectAsync(Server);
        var e = await Assert.ThrowsAsync<RpcException>(() => thief.AttestAsync(token));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Contains("already used", e.Status.Detail, StringComparison.Ordinal);

        var unknown = await Assert.ThrowsAsync<RpcException>(() => thief.AttestAsync("not-a-token"));
        Assert.Equal(StatusCode.PermissionDenied, unknown.StatusCode);

        var listed = await Server.WritAsync("agent", "list");
        Assert.Contains(first.SpiffeId, listed.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_csr_does_not_burn_the_token()
    {
        using var agent = await TestAgent.ConnectAsync(Server);
        var token = await TestAgent.NewJoinTokenAsync(Server);
        var bad = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.AttestJoinTokenAsync(
            new AttestJoinTokenRequest { Token = token, Csr = ByteString.CopyFromUtf8("garbage") }));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        var ok = await agent.AttestAsync(token);
        Assert.NotEmpty(ok.SpiffeId);
    }

    [Fact]
    public async Task Expired_join_token_is_refused()
    {
        using var agent = await TestAgent.ConnectAsync(Server);
        var r = await Server.WritAsync("token", "generate", "--ttl", "1s", "--output", "json");
        using var doc = JsonDocument.Parse(r.Stdout);
        var token = doc.RootElement.GetProperty("token").GetString()!;
        var expiresAt = DateTimeOffset.Parse(doc.RootElement.GetProperty("expires_at").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        await WaitUntilAsync(() => DateTimeOffset.UtcNow > expiresAt.AddSeconds(1), TimeSpan.FromSeconds(10));
        var e = await Assert.ThrowsAsync<RpcException>(() => agent.AttestAsync(token));
        Assert.Contains("expired", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Banned_agent_is_refused_everywhere_until_evicted()
    {
        using var agent = await AttestedAgentAsync();
        var entry = await CreateEntryAsync("spiffe://example.org/banned-workload", agent.AgentId);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = new SvidCsr { EntryId = entry, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = TestEvidence.Of() };
        var signed = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { csr } });
        Assert.Single(signed.Svids);

        var ban = await Server.WritAsync("agent", "ban", agent.AgentId);
        Assert.True(ban.ExitCode == 0, ban.ToString());
        var sign = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { csr } }));
        Assert.Equal(StatusCode.PermissionDenied, sign.StatusCode);
        Assert.Contains("banned", sign.Status.Detail, StringComparison.Ordinal);
        var renew = await Assert.ThrowsAsync<RpcException>(agent.RenewAsync);
        Assert.Equal(StatusCode.PermissionDenied, renew.StatusCode);
        using var stream = agent.Client.Sync(new SyncRequest());
        var sync = await Assert.ThrowsAsync<RpcException>(async () => await stream.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.PermissionDenied, sync.StatusCode);

        var evict = await Server.WritAsync("agent", "evict", agent.AgentId);
        Assert.True(evict.ExitCode == 0, evict.ToString());
        var after = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { csr } }));
        Assert.Equal(StatusCode.Unauthenticated, after.StatusCode);
        Assert.Contains("re-attest", after.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Open_sync_stream_ends_when_the_agent_is_banned()
    {
        using var agent = await AttestedAgentAsync();
        using var stream = agent.Client.Sync(new SyncRequest());
        Assert.True(await stream.ResponseStream.MoveNext(CancellationToken.None));
        Assert.True(stream.ResponseStream.Current.Reset);
        Assert.True((await Server.WritAsync("agent", "ban", agent.AgentId)).ExitCode == 0);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        // The stream first delivers the revocations the ban made (the agent's workloads must drop their SVIDs), never a
        // new entry, then ends refused.
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await stream.ResponseStream.MoveNext(cts.Token))
                Assert.Empty(stream.ResponseStream.Current.Upserts);
        });
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
    }

    [Fact]
    public async Task Calls_without_or_with_a_forged_certificate_are_refused()
    {
        using var agent = await TestAgent.ConnectAsync(Server);
        var none = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.MintJwtSvidAsync(new MintJwtSvidRequest { EntryId = "x", Audience = { "a" } }));
        Assert.Equal(StatusCode.Unauthenticated, none.StatusCode);

        // A self-made certificate claiming an agent ID: right shape, wrong issuer.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var td = TrustDomain.Parse("example.org");
        using var fakeCa = X509Authorities.CreateSelfSignedCa(td, key, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var forged = X509SvidMinter.SignLeaf(fakeCa, key, SpiffeId.Parse("spiffe://example.org/writ/agent/join_token/forged"),
            new PublicKey(leafKey), DateTimeOffset.UtcNow, TimeSpan.FromHours(1));
        using var forgedWithKey = forged.CopyWithPrivateKey(leafKey);
        agent.UseCertificate(X509CertificateLoader.LoadPkcs12(forgedWithKey.Export(X509ContentType.Pkcs12), null));
        var e = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.MintJwtSvidAsync(new MintJwtSvidRequest { EntryId = "x", Audience = { "a" } }));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
    }

    [Fact]
    public async Task Renewal_supersedes_the_old_svid()
    {
        using var agent = await AttestedAgentAsync();
        var old = agent.Svid!;
        var oldCopy = X509CertificateLoader.LoadPkcs12(old.Export(X509ContentType.Pkcs12), null);
        var renewed = await agent.RenewAsync();
        Assert.Equal(agent.AgentId, renewed.SpiffeId);
        Assert.NotEqual(oldCopy.SerialNumber, agent.Svid!.SerialNumber);
        var shown = await Server.WritAsync("agent", "show", agent.AgentId, "--output", "json");
        Assert.Contains(agent.Svid.SerialNumber, shown.Stdout, StringComparison.OrdinalIgnoreCase);

        agent.UseCertificate(oldCopy);
        var e = await Assert.ThrowsAsync<RpcException>(agent.RenewAsync);
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.Contains("superseded", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Signing_refuses_other_agents_entries_and_foreign_csrs()
    {
        using var a = await AttestedAgentAsync();
        using var b = await AttestedAgentAsync();
        var entryOfB = await CreateEntryAsync("spiffe://example.org/b-only", b.AgentId);
        var entryOfA = await CreateEntryAsync("spiffe://example.org/a-only", a.AgentId, "--dns", "a.internal", "--x509-ttl", "10m");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        // Another agent's entry is refused per CSR (code 7), with no decision and nothing about the entry.
        var stolen = await a.Client.SignX509SvidsAsync(new SignX509SvidsRequest
        { Csrs = { new SvidCsr { EntryId = entryOfB, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = TestEvidence.Of() } } });
        Assert.Empty(stolen.Svids);
        Assert.Equal((int)StatusCode.PermissionDenied, Assert.Single(stolen.Denials).Code);
        Assert.DoesNotContain("b-only", stolen.Denials[0].Reason, StringComparison.Ordinal);
        var jwt = await Assert.ThrowsAsync<RpcException>(async () => await a.Client.MintJwtSvidAsync(new MintJwtSvidRequest { EntryId = entryOfB, Audience = { "x" } }));
        Assert.Equal(StatusCode.PermissionDenied, jwt.StatusCode);

        // A CSR that asks for another identity is refused, not silently rewritten.
        var req = new CertificateRequest("CN=x", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri("spiffe://example.org/b-only"));
        req.CertificateExtensions.Add(san.Build());
        var foreign = await a.Client.SignX509SvidsAsync(new SignX509SvidsRequest
        { Csrs = { new SvidCsr { EntryId = entryOfA, Csr = ByteString.CopyFrom(req.CreateSigningRequest()), Evidence = TestEvidence.Of() } } });
        Assert.Empty(foreign.Svids);
        Assert.Equal((int)StatusCode.InvalidArgument, Assert.Single(foreign.Denials).Code);

        var ok = await a.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { new SvidCsr { EntryId = entryOfA, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = TestEvidence.Of() } } });
        var leaf = X509CertificateLoader.LoadCertificate(ok.Svids[0].CertChain[0].ToByteArray());
        var v = X509SvidValidator.Validate([leaf], a.Bundle, DateTimeOffset.UtcNow);
        Assert.True(v.IsValid, v.Error);
        Assert.Equal("spiffe://example.org/a-only", v.Id!.ToString());
        Assert.InRange((leaf.NotAfter - leaf.NotBefore).TotalSeconds, 600, 615);   // entry TTL 10m (+10 s backdating)
        Assert.True(leaf.PublicKey.GetECDsaPublicKey()!.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()));

        var token = await a.Client.MintJwtSvidAsync(new MintJwtSvidRequest { EntryId = entryOfA, Audience = { "https://api.example.org" },
            Evidence = TestEvidence.Of(), BoundCertSha256 = TestEvidence.Thumbprint(leaf.RawData) });
        var jv = Writ.Spiffe.Jwt.JwtSvidValidator.Validate(token.Token, a.Bundle, ["https://api.example.org"], DateTimeOffset.UtcNow);
        Assert.True(jv.IsValid, jv.Error);
        Assert.Equal("spiffe://example.org/a-only", jv.Svid!.Id.ToString());
    }

    [Fact]
    public async Task One_refused_csr_of_a_batch_of_three_leaves_the_other_two_signed_with_a_coded_refusal()
    {
        using var a = await AttestedAgentAsync();
        var web = await CreateEntryAsync("spiffe://example.org/batch-web", a.AgentId);
        var db = await CreateEntryAsync("spiffe://example.org/batch-db", a.AgentId, "--selector", "unix:gid:4242");   // the evidence lacks it
        var api = await CreateEntryAsync("spiffe://example.org/batch-api", a.AgentId);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var evidence = TestEvidence.Of();
        var request = new SignX509SvidsRequest();
        foreach (var entry in new[] { web, db, api })
            request.Csrs.Add(new SvidCsr { EntryId = entry, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = evidence });

        var r = await a.Client.SignX509SvidsAsync(request);

        Assert.Equal([web, api], r.Svids.Select(s => s.EntryId).ToArray());
        var refused = Assert.Single(r.Denials);
        Assert.Equal((db, "WRIT-ISSUE-DENIED", (int)StatusCode.PermissionDenied), (refused.EntryId, refused.ErrorCode, refused.Code));
        Assert.StartsWith("d-", refused.DecisionId, StringComparison.Ordinal);
        Assert.Equal(evidence.InstanceId, refused.InstanceId);
    }

    [Fact]
    public async Task Svids_never_outlive_their_entry()
    {
        using var agent = await AttestedAgentAsync();
        var expires = DateTimeOffset.UtcNow.AddMinutes(2);
        var entry = await CreateEntryAsync("spiffe://example.org/short-lived-entry", agent.AgentId, "--x509-ttl", "1h", "--jwt-ttl", "1h",
            "--expires-at", expires.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var signed = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { new SvidCsr { EntryId = entry, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = TestEvidence.Of() } } });
        var leaf = X509CertificateLoader.LoadCertificate(signed.Svids[0].CertChain[0].ToByteArray());
        Assert.True(leaf.NotAfter.ToUniversalTime() <= expires.UtcDateTime.AddSeconds(1), $"leaf expires {leaf.NotAfter:u}, entry {expires:u}");
        var jwt = await agent.Client.MintJwtSvidAsync(new MintJwtSvidRequest { EntryId = entry, Audience = { "a" }, Evidence = TestEvidence.Of(), BoundCertSha256 = TestEvidence.Thumbprint(leaf.RawData) });
        Assert.True(jwt.ExpiresAtUnix <= expires.ToUnixTimeSeconds() + 1);
    }

    [Fact]
    public async Task Sync_pushes_entry_changes_to_the_agent_at_once()
    {
        using var agent = await AttestedAgentAsync();
        using var other = await AttestedAgentAsync();
        var existing = await CreateEntryAsync("spiffe://example.org/sync-existing", agent.AgentId);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var stream = agent.Client.Sync(new SyncRequest(), cancellationToken: cts.Token);
        var reader = stream.ResponseStream;

        Assert.True(await reader.MoveNext(cts.Token));
        var first = reader.Current;
        Assert.True(first.Reset);
        Assert.True(first.PageEnd);
        Assert.NotNull(first.Bundle);
        Assert.Contains(first.Upserts, e => e.Id == existing);

        // An entry for another agent never reaches this one; its own does, pushed (no polling).
        await CreateEntryAsync("spiffe://example.org/sync-other", other.AgentId);
        var clock = Stopwatch.StartNew();
        var added = await CreateEntryAsync("spiffe://example.org/sync-new", agent.AgentId);
        var createdAt = clock.Elapsed;
        Assert.True(await reader.MoveNext(cts.Token));
        var latency = clock.Elapsed;
        var update = reader.Current;
        Assert.False(update.Reset);
        Assert.Equal([added], update.Upserts.Select(e => e.Id).ToArray());
        TestContext.Current.SendDiagnosticMessage($"entry create → sync push: {latency.TotalMilliseconds:F0} ms (CLI process took {createdAt.TotalMilliseconds:F0} ms)");

        Assert.True((await Server.WritAsync("entry", "delete", existing)).ExitCode == 0);
        Assert.True(await reader.MoveNext(cts.Token));
        Assert.Equal([existing], reader.Current.DeletedEntryIds.ToArray());
        var lastRevision = reader.Current.Revision;

        // Resuming from a revision sends only what changed since.
        using var resumed = agent.Client.Sync(new SyncRequest { SinceRevision = lastRevision }, cancellationToken: cts.Token);
        Assert.True(await resumed.ResponseStream.MoveNext(cts.Token));
        Assert.False(resumed.ResponseStream.Current.Reset);
        Assert.Empty(resumed.ResponseStream.Current.Upserts);
    }

    [Fact]
    public async Task Full_sync_of_a_large_state_comes_in_pages()
    {
        using var agent = await AttestedAgentAsync();
        using var dir = new TempDir();
        const int count = 2500;
        var entries = Enumerable.Range(0, count).Select(i => new
        {
            spiffe_id = $"spiffe://example.org/bulk/w{i}",
            parent_id = agent.AgentId,
            selectors = new[] { $"unix:uid:{i}", "unix:path:" + new string('p', 300) },
        });
        await File.WriteAllTextAsync(dir["many.json"], JsonSerializer.Serialize(new { entries }));
        var r = await Server.WritAsync("entry", "create", "--file", dir["many.json"], "--output", "json");
        Assert.True(r.ExitCode == 0, r.Stderr);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var stream = agent.Client.Sync(new SyncRequest(), cancellationToken: cts.Token);
        var ids = new HashSet<string>();
        var pages = 0;
        while (await stream.ResponseStream.MoveNext(cts.Token))
        {
            pages++;
            Assert.Equal(pages == 1, stream.ResponseStream.Current.Reset);
            ids.UnionWith(stream.ResponseStream.Current.Upserts.Select(e => e.Id));
            if (stream.ResponseStream.Current.PageEnd)
            {
                break;
            }
        }
        Assert.Equal(count, ids.Count);
        Assert.True(pages >= 3, $"expected several pages, got {pages}");
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached in time");
            await Task.Delay(50);
        }
    }
}
