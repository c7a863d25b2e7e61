using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>
/// Issuance decided by policy, with real server processes and a direct agent-API client (mTLS): a pushed forbid blocks
/// what the entry allows and `writ explain` names it; @max_ttl caps the certificate; `writ policy whatif` lists exactly
/// the decisions a candidate changes; kill -9 during a burst loses no ledger record of a credential a client received.
/// </summary>
public sealed class PipelineTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<TestAgent> AgentAsync(ServerProcess server)
    {
        var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        return agent;
    }

    private static async Task<string> EntryAsync(ServerProcess server, string spiffeId, string parentId, params string[] selectors)
    {
        List<string> args = ["entry", "create", "--spiffe-id", spiffeId, "--parent-id", parentId, "--output", "json"];
        foreach (var s in selectors.Length == 0 ? ["unix:uid:1000"] : selectors)
        {
            args.AddRange(["--selector", s]);
        }
        var r = await server.WritAsync([.. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>`writ policy push` of these files (as a directory), then waits until the server applied the new version. Returns it.</summary>
    private static async Task<long> PushAsync(ServerProcess server, params (string Name, string Text)[] files)
    {
        using var dir = new TempDir();
        foreach (var (name, text) in files)
        {
            await File.WriteAllTextAsync(Path.Combine(dir.Path, name), text, Ct);
        }
        var r = await server.WritAsync("policy", "push", "--file", dir.Path);
        Assert.True(r.ExitCode == 0, r.ToString());
        var m = System.Text.RegularExpressions.Regex.Match(r.Stdout, @"pushed policy version (\d+)");
        Assert.True(m.Success, r.ToString());
        var version = long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        // The server that took the push applies it before its next decision; the log line says so.
        await server.Stderr.WaitForAsync(l => l.Contains($"Issuance policy version {version} active", StringComparison.Ordinal), TimeSpan.FromSeconds(20), () => server.HasExited);
        return version;
    }

    /// <summary>Stores a policy version straight in the database, as another server sharing it would; this server must notice within its poll.</summary>
    private static async Task<long> PushFromAnotherServerAsync(ServerProcess server, params (string Name, string Text)[] files)
    {
        var records = files.Select(f => new PolicyFileRecord(f.Name, f.Text)).ToList();
        Assert.True(WritPolicyCompiler.TryCompile(records, out _, out var errors), string.Join("\n", errors));
        long version;
        await using (var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, Ct))
        {
            var active = await store.Policies.ActiveAsync(Ct);
            version = (await store.Policies.PushAsync(new StoredPolicyVersion { Files = records, Sha256 = WritPolicyCompiler.Sha256(records), Author = "test" }, active?.Version, [], Ct)).Version;
        }
        await server.Stderr.WaitForAsync(l => l.Contains($"Issuance policy version {version} active", StringComparison.Ordinal), TimeSpan.FromSeconds(20), () => server.HasExited);
        return version;
    }

    private static SvidCsr Csr(string entryId, AttestedWorkload evidence, out ECDsa key)
    {
        key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new SvidCsr { EntryId = entryId, Csr = ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key)), Evidence = evidence };
    }

    private static readonly string DefaultText = WritPolicyCompiler.DefaultFiles[0].Text;

    [Fact]
    public async Task A_pushed_forbid_blocks_issuance_the_entry_allows_and_explain_names_it()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var agent = await AgentAsync(server);
        var entry = await EntryAsync(server, "spiffe://example.org/payments/api", agent.AgentId);
        var evidence = TestEvidence.Of("unix:uid:1000", "unix:path:/usr/bin/payments");

        var before = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { Csr(entry, evidence, out var k1) } }, cancellationToken: Ct);
        k1.Dispose();
        var svid = Assert.Single(before.Svids);
        Assert.StartsWith("d-", svid.DecisionId, StringComparison.Ordinal);
        Assert.Equal(evidence.InstanceId, svid.InstanceId);

        var version = await PushAsync(server, ("default.cedar", DefaultText), ("freeze.cedar", """
            // Payments are frozen: no new identities under /payments/.
            @id("freeze-payments")
            forbid (principal is Writ::Workload, action, resource)
            when { resource.path like "/payments/*" };
            """));

        var after = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { Csr(entry, evidence, out var k2) } }, cancellationToken: Ct);
        k2.Dispose();
        Assert.Empty(after.Svids);
        var denial = Assert.Single(after.Denials);
        Assert.Equal(7, denial.Code);
        Assert.Equal("WRIT-ISSUE-DENIED", denial.ErrorCode);
        Assert.Equal("denied by policy 'freeze-payments'", denial.Reason);
        Assert.Equal(evidence.InstanceId, denial.InstanceId);

        var leafDer = svid.CertChain[0].ToByteArray();
        var jwt = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.MintJwtSvidAsync(new MintJwtSvidRequest
        { EntryId = entry, Audience = { "https://bank" }, Evidence = evidence, BoundCertSha256 = TestEvidence.Thumbprint(leafDer) }, cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, jwt.StatusCode);
        Assert.Matches(@"^WRIT-ISSUE-DENIED: denied by policy 'freeze-payments' \(decision d-[0-9a-f]{20}; 'writ explain d-[0-9a-f]{20}' shows why\)$", jwt.Status.Detail);

        var explained = await server.WritAsync("explain", denial.DecisionId);
        Assert.True(explained.ExitCode == 0, explained.ToString());
        Assert.Contains("DENY — denied by policy 'freeze-payments'", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains("determining policies  freeze-payments", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains($"policy version        {version} ", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains("selector  unix:path:/usr/bin/payments", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains("Writ::Workload::\"" + agent.AgentId + "#" + evidence.InstanceId + "\"", explained.Stdout, StringComparison.Ordinal);

        var asJson = await server.WritAsync("explain", svid.DecisionId, "--output", "json");
        Assert.True(asJson.ExitCode == 0, asJson.ToString());
        using var doc = JsonDocument.Parse(asJson.Stdout);
        Assert.Equal("allow", doc.RootElement.GetProperty("decision").GetString());
        Assert.Equal(version - 1, doc.RootElement.GetProperty("policy_version").GetInt64());   // the version active before the push
        Assert.Equal("writ-default-x509", doc.RootElement.GetProperty("determining_policies")[0].GetString());
        using var leaf = X509CertificateLoader.LoadCertificate(leafDer);
        Assert.Equal(leaf.SerialNumber, doc.RootElement.GetProperty("serial").GetString());

        Expect.OneLineError(await server.WritAsync("explain", "d-00000000000000000000"), "not in the ledger");
        Expect.OneLineError(await server.WritAsync("explain", "bad id"), "decision id");
    }

    [Fact]
    public async Task Max_ttl_caps_the_certificate_lifetime()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var agent = await AgentAsync(server);
        var ci = await EntryAsync(server, "spiffe://example.org/ci/build", agent.AgentId);
        var web = await EntryAsync(server, "spiffe://example.org/web", agent.AgentId);
        await PushFromAnotherServerAsync(server, ("ci.cedar", """
            @id("ci-jobs-short") @max_ttl("5m")
            permit (principal is Writ::Workload, action == Writ::Action::"IssueX509Svid", resource)
            when { resource.path like "/ci/*" };

            @id("others")
            permit (principal is Writ::Workload, action == Writ::Action::"IssueX509Svid", resource)
            unless { resource.path like "/ci/*" };

            @id("nodes") permit (principal, action == Writ::Action::"AttestNode", resource);
            """));
        var r = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { Csr(ci, TestEvidence.Of(), out var k1), Csr(web, TestEvidence.Of(), out var k2) } }, cancellationToken: Ct);
        k1.Dispose();
        k2.Dispose();
        Assert.Equal(2, r.Svids.Count);
        using var ciLeaf = X509CertificateLoader.LoadCertificate(r.Svids.Single(s => s.EntryId == ci).CertChain[0].ToByteArray());
        using var webLeaf = X509CertificateLoader.LoadCertificate(r.Svids.Single(s => s.EntryId == web).CertChain[0].ToByteArray());
        var backdate = X509SvidMinter.Backdate.TotalSeconds;
        Assert.Equal(300 + backdate, (ciLeaf.NotAfter - ciLeaf.NotBefore).TotalSeconds);
        Assert.Equal(3600 + backdate, (webLeaf.NotAfter - webLeaf.NotBefore).TotalSeconds);   // the server default, uncapped
    }

    [Fact]
    public async Task Whatif_lists_exactly_the_decisions_a_candidate_would_change()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var agent = await AgentAsync(server);
        var billing = await EntryAsync(server, "spiffe://example.org/billing", agent.AgentId, "unix:uid:1001");
        var web = await EntryAsync(server, "spiffe://example.org/web", agent.AgentId, "unix:uid:1002");
        var ok = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest
        {
            Csrs = { Csr(billing, TestEvidence.Of("unix:uid:1001", "unix:path:/opt/billing"), out var k1), Csr(web, TestEvidence.Of("unix:uid:1002"), out var k2) },
        }, cancellationToken: Ct);
        k1.Dispose();
        k2.Dispose();
        Assert.Equal(2, ok.Svids.Count);
        var billingDecision = ok.Svids.Single(s => s.EntryId == billing).DecisionId;

        var candidate = dir["candidate"];
        Directory.CreateDirectory(candidate);
        await File.WriteAllTextAsync(Path.Combine(candidate, "default.cedar"), DefaultText, Ct);
        await File.WriteAllTextAsync(Path.Combine(candidate, "no-billing.cedar"), """
            @id("no-billing")
            forbid (principal is Writ::Workload, action, resource == Writ::Identity::"spiffe://example.org/billing");
            """, Ct);
        var r = await server.WritAsync("policy", "whatif", "--file", candidate, "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.True(doc.RootElement.GetProperty("replayed").GetInt32() >= 2);   // also the agent's own attestation
        var change = Assert.Single(doc.RootElement.GetProperty("changes").EnumerateArray());
        Assert.Equal(billingDecision, change.GetProperty("decision_id").GetString());
        Assert.Equal("spiffe://example.org/billing", change.GetProperty("spiffe_id").GetString());
        Assert.Equal("allow", change.GetProperty("was").GetString());
        Assert.Equal("deny", change.GetProperty("would_be").GetString());
        Assert.Equal("no-billing", change.GetProperty("determining_policies")[0].GetString());
        Assert.Contains("uid 1001 exe /opt/billing", change.GetProperty("workload").GetString(), StringComparison.Ordinal);

        var text = await server.WritAsync("policy", "whatif", "--file", candidate);
        Assert.Contains("1 of ", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("would change", text.Stdout, StringComparison.Ordinal);

        // Nothing was stored: the same SVID is still issued.
        var again = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { Csr(billing, TestEvidence.Of("unix:uid:1001"), out var k3) } }, cancellationToken: Ct);
        k3.Dispose();
        Assert.Single(again.Svids);

        // A candidate with a type error is refused like a push, in one line.
        var bad = Path.Combine(dir.Path, "bad.cedar");
        await File.WriteAllTextAsync(bad, "permit (principal, action, resource) when { principal.uid == \"x\" };", Ct);
        Expect.OneLineError(await server.WritAsync("policy", "whatif", "--file", bad), "bad.cedar:1:");
    }

    [Fact]
    public async Task Admin_mints_are_recorded_with_the_admin_caller()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var r = await server.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://example.org/ops", "--audience", "a", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var x = await server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/ops", "--output", "json");
        Assert.True(x.ExitCode == 0, x.ToString());
        await server.StopAsync();
        await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, Ct);
        var events = await store.Ledger.ListAsync(0, 100, null, "spiffe://example.org/ops", Ct);
        Assert.Equal(["jwt.issued", "x509.issued"], events.Select(e => e.Kind).ToArray());
        Assert.All(events, e => Assert.Matches("^uid:[0-9]+$", e.Actor));
        Assert.DoesNotContain(JsonDocument.Parse(r.Stdout).RootElement.GetProperty("token").GetString()!, events[0].DataJson, StringComparison.Ordinal);
        Assert.Equal(2, (await store.Ledger.IssuedAsync(new IssuedFilter(SpiffeId: "spiffe://example.org/ops"), DateTimeOffset.UtcNow, Ct)).Count);
    }

    [Fact]
    public async Task Admin_minting_forbidden_by_policy_is_refused_with_a_code_recorded_and_nothing_minted()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        var allowed = await server.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://example.org/ops", "--audience", "a", "--output", "json");
        Assert.True(allowed.ExitCode == 0, allowed.ToString());
        Assert.StartsWith("d-", JsonDocument.Parse(allowed.Stdout).RootElement.GetProperty("decision_id").GetString(), StringComparison.Ordinal);

        await PushAsync(server, ("default.cedar", Writ.Server.Policy.WritPolicyCompiler.DefaultFiles[0].Text),
            ("admin.cedar", """@id("no-admin-mint") forbid (principal, action in [Writ::Action::"AdminMintX509Svid", Writ::Action::"AdminMintJwtSvid"], resource);"""));
        using var outDir = new TempDir();
        var x509 = await server.WritAsync("x509", "mint", "--spiffe-id", "spiffe://example.org/ops", "--write", outDir.Path);
        Expect.OneLineError(x509, "WRIT-MINT-DENIED");
        Assert.Contains("no-admin-mint", x509.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(outDir.Path, "svid.pem")));
        Expect.OneLineError(await server.WritAsync("jwt", "mint", "--spiffe-id", "spiffe://example.org/ops", "--audience", "a"), "WRIT-MINT-DENIED");

        await server.StopAsync();
        await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, Ct);
        var events = await store.Ledger.ListAsync(0, 100, null, "spiffe://example.org/ops", Ct);
        Assert.Equal(["jwt.issued", "issuance.denied", "issuance.denied"], events.Select(e => e.Kind).ToArray());
        Assert.Single(await store.Ledger.IssuedAsync(new IssuedFilter(SpiffeId: "spiffe://example.org/ops"), DateTimeOffset.UtcNow, Ct));
    }

    [Fact]
    public async Task Kill_9_during_a_burst_loses_no_record_of_a_credential_a_client_received()
    {
        using var dir = new TempDir();
        var server = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = server;
        using var agent = await AgentAsync(server);
        var entry = await EntryAsync(server, "spiffe://example.org/burst", agent.AgentId);
        var received = new ConcurrentBag<string>();
        using var stop = new CancellationTokenSource();
        var firstFew = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task Worker()
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var csr = ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key));
            while (!stop.IsCancellationRequested)
            {
                SignX509SvidsResponse r;
                try
                {
                    var req = new SignX509SvidsRequest();
                    for (var i = 0; i < 4; i++)
                    {
                        req.Csrs.Add(new SvidCsr { EntryId = entry, Csr = csr, Evidence = TestEvidence.Of() });
                    }
                    r = await agent.Client.SignX509SvidsAsync(req, cancellationToken: CancellationToken.None);
                }
                catch (RpcException)
                {
                    return;   // the server is gone
                }
                foreach (var s in r.Svids)
                {
                    using var leaf = X509CertificateLoader.LoadCertificate(s.CertChain[0].ToByteArray());
                    received.Add(leaf.SerialNumber);
                }
                if (received.Count >= 40)
                {
                    firstFew.TrySetResult();
                }
            }
        }
        var workers = Enumerable.Range(0, 8).Select(_ => Task.Run(Worker, Ct)).ToArray();
        await firstFew.Task.WaitAsync(TimeSpan.FromSeconds(60), Ct);
        await server.KillAsync();
        await stop.CancelAsync();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        Assert.True(received.Count >= 40);

        // Restart on the same database: the server comes up, and the ledger's hash chain is intact after the crash.
        await server.StartAsync();
        var verify = await server.WritAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        await server.StopAsync();

        await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, Ct);
        var recorded = (await store.Ledger.IssuedAsync(new IssuedFilter(EntryId: entry, IncludeExpired: true), DateTimeOffset.UtcNow, Ct))
            .Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
        var missing = received.Where(s => !recorded.Contains(s)).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} of {received.Count} received SVIDs have no ledger record, e.g. {missing.FirstOrDefault()}");
        // And each has its x509.issued event, chained.
        var events = await store.Ledger.ListAsync(0, 100_000, "x509.issued", "spiffe://example.org/burst", Ct);
        var serials = events.Select(e => JsonDocument.Parse(e.DataJson).RootElement.GetProperty("serial").GetString()!).ToHashSet(StringComparer.Ordinal);
        Assert.All(received, s => Assert.Contains(s, serials));
    }
}
