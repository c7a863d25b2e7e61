using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Writ.Server.Issuance;
using Writ.Server.Policy;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Policy;

/// <summary>The decision pipeline in process: match, policy, TTL, records, and what happens when the ledger fails.</summary>
public sealed class IssuancePipelineTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Default_policy_issues_when_the_entry_matches_and_records_the_decision_first()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var batch = await h.SignAsync(entry, PipelineHarness.Evidence("42:100", "unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/web"));

        var svid = Assert.Single(batch.Issued);
        Assert.Empty(batch.Denials);
        Assert.Matches("^d-[0-9a-f]{20}$", svid.DecisionId);
        var record = await h.Store.Ledger.GetByDecisionAsync(svid.DecisionId, Ct);
        Assert.NotNull(record);
        Assert.Equal("x509.issued", record.Kind);
        Assert.Equal(PipelineHarness.AgentId, record.Actor);
        using var data = JsonDocument.Parse(record.DataJson);
        Assert.Equal(svid.Leaf.SerialNumber, data.RootElement.GetProperty("serial").GetString());
        Assert.Equal("allow", data.RootElement.GetProperty("decision").GetString());
        Assert.Equal(0, data.RootElement.GetProperty("policy_version").GetInt64());
        Assert.Equal("writ-default-x509", data.RootElement.GetProperty("determining_policies")[0].GetString());
        Assert.Equal("42:100", data.RootElement.GetProperty("evidence").GetProperty("instance_id").GetString());
        var issued = await h.Store.Ledger.IssuedAsync(new IssuedFilter(Id: svid.Leaf.SerialNumber), h.Ca.Time.GetUtcNow(), Ct);
        Assert.Equal("42:100", Assert.Single(issued).InstanceId);
        // Keys in ordinal order, no whitespace: the canonical form the ledger asks for.
        Assert.Equal(WritCedar.Canonical(System.Text.Json.Nodes.JsonNode.Parse(record.DataJson)!), record.DataJson);
    }

    [Fact]
    public async Task A_selector_missing_from_the_evidence_is_a_denial_naming_that_selector()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/db", "unix:uid:1000", "unix:sha256:abc");
        // An attacker's process has the uid but not the binary.
        var batch = await h.SignAsync(entry, PipelineHarness.Evidence("7:1", "unix:uid:1000", "unix:sha256:def"));

        Assert.Empty(batch.Issued);
        var denial = Assert.Single(batch.Denials);
        Assert.Equal(7, denial.Code);
        Assert.Equal($"selector unix:sha256:abc of entry {entry.Id} is not in the workload's evidence", denial.Reason);
        var record = await h.Store.Ledger.GetByDecisionAsync(denial.DecisionId!, Ct);
        Assert.Equal("issuance.denied", record!.Kind);
        Assert.Contains("\"stage\":\"match\"", record.DataJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_evidence_is_a_denial()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var batch = await h.SignAsync(entry, null);
        Assert.Empty(batch.Issued);
        Assert.Contains("no workload evidence", Assert.Single(batch.Denials).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_pushed_forbid_blocks_what_the_entry_allows_and_the_record_names_it()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/payments/api", "unix:uid:1000");
        var ev = PipelineHarness.Evidence("42:100", "unix:uid:1000");
        Assert.Single((await h.SignAsync(entry, ev)).Issued);

        var version = await h.PushAsync(("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text), ("freeze.cedar", """
            @id("freeze-payments")
            forbid (principal is Writ::Workload, action, resource)
            when { resource.path like "/payments/*" };
            """));
        var batch = await h.SignAsync(entry, ev);

        Assert.Empty(batch.Issued);
        var denial = Assert.Single(batch.Denials);
        Assert.Equal("denied by policy 'freeze-payments'", denial.Reason);
        var record = await h.Store.Ledger.GetByDecisionAsync(denial.DecisionId!, Ct);
        using var data = JsonDocument.Parse(record!.DataJson);
        Assert.Equal(version, data.RootElement.GetProperty("policy_version").GetInt64());
        Assert.Equal("freeze-payments", data.RootElement.GetProperty("determining_policies")[0].GetString());
        Assert.Equal("Writ::Workload", data.RootElement.GetProperty("request").GetProperty("principal").GetProperty("type").GetString());
    }

    [Fact]
    public async Task No_permit_is_a_denial_that_says_so()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        await h.PushAsync(("only-nodes.cedar", """@id("nodes") permit (principal, action == Writ::Action::"AttestNode", resource);"""));
        var denial = Assert.Single((await h.SignAsync(entry, PipelineHarness.Evidence("1:1", "unix:uid:1000"))).Denials);
        Assert.Equal("no policy permits IssueX509Svid for spiffe://example.org/web", denial.Reason);
    }

    [Fact]
    public async Task Max_ttl_of_the_deciding_permit_caps_the_certificate()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/ci/job", "unix:uid:1000");
        await h.PushAsync(("ci.cedar", """
            @id("ci-short") @max_ttl("5m")
            permit (principal, action == Writ::Action::"IssueX509Svid", resource) when { resource.path like "/ci/*" };
            """));
        var svid = Assert.Single((await h.SignAsync(entry, PipelineHarness.Evidence("1:1", "unix:uid:1000"))).Issued);
        using var cert = X509CertificateLoader.LoadCertificate(svid.Leaf.Der);
        Assert.Equal(h.Ca.Time.GetUtcNow().AddMinutes(5), new DateTimeOffset(cert.NotAfter.ToUniversalTime()));
    }

    [Fact]
    public async Task When_the_ledger_write_fails_no_credential_is_handed_out()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        h.Store.FailLedger = true;
        var e = await Assert.ThrowsAsync<StoreUnavailableException>(() => h.SignAsync(entry, PipelineHarness.Evidence("1:1", "unix:uid:1000")));
        CaTestOneLine(e);
        Assert.DoesNotContain("disk full", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<StoreUnavailableException>(() => h.Pipeline.MintJwtAsync(h.Node, entry, PipelineHarness.Evidence("1:1", "unix:uid:1000"), ["aud"], 0, new byte[32], Ct));
    }

    [Fact]
    public async Task Jwt_default_policy_permits_bound_tokens_only()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var entry = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var ev = PipelineHarness.Evidence("1:1", "unix:uid:1000");
        var bearer = await h.Pipeline.MintJwtAsync(h.Node, entry, ev, ["https://api"], 0, null, Ct);
        Assert.Null(bearer.Token);
        Assert.Equal("no policy permits IssueJwtSvid for spiffe://example.org/web", bearer.Decision.Reason);
        Assert.Contains($"'writ explain {bearer.Decision.Id}'", bearer.Decision.DeniedDetail, StringComparison.Ordinal);

        var bound = await h.Pipeline.MintJwtAsync(h.Node, entry, ev, ["https://api"], 0, new byte[32], Ct);
        Assert.NotNull(bound.Token);
        var record = await h.Store.Ledger.GetByDecisionAsync(bound.Decision.Id, Ct);
        Assert.Equal("jwt.issued", record!.Kind);
        Assert.Contains($"\"jti\":\"{bound.Jti}\"", record.DataJson, StringComparison.Ordinal);
        Assert.DoesNotContain(bound.Token!, record.DataJson, StringComparison.Ordinal);   // never the token itself
        Assert.Single(await h.Store.Ledger.IssuedAsync(new IssuedFilter(Id: bound.Jti), h.Ca.Time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task Node_attestation_is_decided_and_recorded()
    {
        await using var h = await PipelineHarness.CreateAsync();
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var facts = new NodeFacts("spiffe://example.org/writ/agent/join_token/t2", "join_token", ["join_token:t2"], []);
        var ok = await h.Pipeline.AttestNodeAsync(facts, new PublicKey(key), renewal: false, Ct);
        Assert.NotNull(ok.Chain);
        Assert.Equal("node.attested", (await h.Store.Ledger.GetByDecisionAsync(ok.Decision.Id, Ct))!.Kind);

        await h.PushAsync(("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text), ("nojt.cedar",
            """@id("no-join-tokens") forbid (principal, action == Writ::Action::"AttestNode", resource) when { principal.attestation == "join_token" };"""));
        var denied = await h.Pipeline.AttestNodeAsync(facts, new PublicKey(key), renewal: true, Ct);
        Assert.Null(denied.Chain);
        Assert.Equal("denied by policy 'no-join-tokens'", denied.Decision.Reason);
        Assert.Equal("node.attest_denied", (await h.Store.Ledger.GetByDecisionAsync(denied.Decision.Id, Ct))!.Kind);
    }

    [Fact]
    public async Task A_stored_version_that_does_not_compile_keeps_the_previous_set()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var good = await h.PushAsync(("a.cedar", """@id("all") permit (principal, action, resource);"""));
        Assert.Equal(good, (await h.Server.Policy.CurrentAsync(Ct)).Version);
        // A database edited by hand: the store takes anything.
        await h.PushAsync(("broken.cedar", "permit (principal, action, resource) when { principal.nope };"));
        var active = await h.Server.Policy.CurrentAsync(Ct);
        Assert.Equal(good, active.Version);
        Assert.Equal("all", Assert.Single(active.Compiled.Set.All).Id);
    }

    [Fact]
    public async Task The_engine_picks_up_a_version_pushed_by_another_server()
    {
        await using var h = await PipelineHarness.CreateAsync();
        await using var engine = new IssuancePolicyEngine(h.Store.Policies, new Writ.Protocol.ChangeSignal(), TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, TimeSpan.FromMilliseconds(50));
        await engine.StartAsync(Ct);
        Assert.Equal(0, engine.Current.Version);
        var v = await h.PushAsync(("a.cedar", """@id("all") permit (principal, action, resource);"""));   // raises h's signal, not engine's
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (engine.Current.Version != v && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, Ct);
        }
        Assert.Equal(v, engine.Current.Version);
    }

    private static void CaTestOneLine(Exception e)
    {
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
    }
}
