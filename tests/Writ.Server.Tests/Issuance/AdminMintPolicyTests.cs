using System.Security.Cryptography;
using System.Text.Json;
using Writ.Protocol.Errors;
using Writ.Server.Issuance;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Server.Tests.Policy;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.Server.Tests.Issuance;

/// <summary>
/// Issue #13 item 2: admin minting (`writ x509 mint`, `writ jwt mint`) is on the issuance path and decided by Cedar. A
/// built-in permit keeps today's behaviour under every policy set; a forbid of the identity team refuses the mint with
/// WRIT-MINT-DENIED, an issuance.denied record and no credential.
/// </summary>
public sealed class AdminMintPolicyTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly SpiffeId Ops = SpiffeId.Parse("spiffe://example.org/ops");

    private const string ForbidAdminX509 = """
        @id("no-admin-x509")
        forbid (principal, action == Writ::Action::"AdminMintX509Svid", resource)
        when { resource.path like "/ops*" };
        """;

    private static async Task<List<LedgerEvent>> RecordsAsync(PipelineHarness h, string subject) =>
        [.. await h.Store.Ledger.ListAsync(0, 1000, null, subject, Ct)];

    [Fact]
    public async Task Admin_minting_is_allowed_by_the_default_policy_and_recorded_with_its_decision()
    {
        await using var h = await PipelineHarness.CreateAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var x509 = await h.Pipeline.MintAdminX509Async("uid:0", Ops, Csr.Create(key), TimeSpan.FromMinutes(10), ["ops.internal"], Ct);
        var jwt = await h.Pipeline.MintAdminJwtAsync("uid:0", Ops, ["https://api.example.org"], TimeSpan.FromMinutes(5), Ct);

        Assert.Equal(Ops.ToString(), X509SvidValidator.Validate([.. x509.Chain], h.Server.Ca.Bundle, h.Ca.Time.GetUtcNow()).Id?.ToString());
        Assert.Equal(3, jwt.Token.Split('.').Length);
        var records = await RecordsAsync(h, Ops.ToString());
        Assert.Equal(["x509.issued", "jwt.issued"], records.Select(r => r.Kind).ToArray());
        Assert.Equal([x509.DecisionId, jwt.DecisionId], records.Select(r => r.DecisionId).ToArray());
        foreach (var r in records)
        {
            using var data = JsonDocument.Parse(r.DataJson);
            Assert.Equal("policy", data.RootElement.GetProperty("stage").GetString());
            Assert.Equal(WritPolicyCompiler.BuiltinAdminMintId, data.RootElement.GetProperty("determining_policies")[0].GetString());
            Assert.Equal("uid:0", r.Actor);
        }
        Assert.Equal(2, (await h.Store.Ledger.IssuedAsync(new IssuedFilter(SpiffeId: Ops.ToString()), h.Ca.Time.GetUtcNow(), Ct)).Count);
    }

    [Fact]
    public async Task A_set_pushed_before_admin_minting_was_policy_gated_still_allows_it()
    {
        await using var h = await PipelineHarness.CreateAsync();
        await h.PushAsync(("all.cedar", """@id("all") permit (principal, action == Writ::Action::"IssueX509Svid", resource);"""));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var minted = await h.Pipeline.MintAdminX509Async("uid:0", Ops, Csr.Create(key), TimeSpan.FromMinutes(10), [], Ct);
        Assert.NotEmpty(minted.Chain);
    }

    [Fact]
    public async Task A_forbid_policy_refuses_the_mint_with_a_code_and_a_denial_record_and_no_credential()
    {
        await using var h = await PipelineHarness.CreateAsync();
        await h.PushAsync(("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text), ("admin.cedar", ForbidAdminX509));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var refused = await Assert.ThrowsAsync<WritException>(() =>
            h.Pipeline.MintAdminX509Async("uid:0", Ops, Csr.Create(key), TimeSpan.FromMinutes(10), [], Ct));
        Assert.Equal(IssuanceErrors.MintDenied, refused.Code);
        Assert.Equal(WritErrorKind.PermissionDenied, refused.Kind);
        Assert.Contains("no-admin-x509", refused.Message, StringComparison.Ordinal);

        var denial = Assert.Single(await RecordsAsync(h, Ops.ToString()));
        Assert.Equal("issuance.denied", denial.Kind);
        Assert.Contains(denial.DecisionId!, refused.Message, StringComparison.Ordinal);
        using (var data = JsonDocument.Parse(denial.DataJson))
        {
            Assert.Equal("deny", data.RootElement.GetProperty("decision").GetString());
            Assert.Equal("AdminMintX509Svid", data.RootElement.GetProperty("request").GetProperty("action").GetProperty("id").GetString());
        }
        Assert.Empty(await h.Store.Ledger.IssuedAsync(new IssuedFilter(SpiffeId: Ops.ToString()), h.Ca.Time.GetUtcNow(), Ct));

        // The forbid restricts, it does not switch minting off: JWT, and X.509 for other paths, still mint.
        Assert.NotEmpty((await h.Pipeline.MintAdminJwtAsync("uid:0", Ops, ["a"], TimeSpan.FromMinutes(5), Ct)).Token);
        using var key2 = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.NotEmpty((await h.Pipeline.MintAdminX509Async("uid:0", SpiffeId.Parse("spiffe://example.org/web"), Csr.Create(key2), TimeSpan.FromMinutes(10), [], Ct)).Chain);
    }

    [Fact]
    public async Task What_if_replays_admin_mints_against_a_candidate_forbid()
    {
        await using var h = await PipelineHarness.CreateAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var minted = await h.Pipeline.MintAdminX509Async("uid:0", Ops, Csr.Create(key), TimeSpan.FromMinutes(10), [], Ct);
        var record = await h.Store.Ledger.GetByDecisionAsync(minted.DecisionId, Ct);
        Assert.True(WritPolicyCompiler.TryCompile([new("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text), new("admin.cedar", ForbidAdminX509)], out var candidate, out var errors), string.Join("; ", errors));
        var replay = Writ.Server.Api.WhatIfReplay.Replay(record!, candidate!);
        Assert.Equal("deny", replay!.Value.Change!.WouldBe);
        Assert.Equal("admin uid:0 (writ x509 mint)", replay.Value.Change.Workload);
        Assert.True(Writ.Server.Api.WhatIfReplay.Replay(record!, IssuancePolicyEngine.DefaultSet)!.Value.WouldAllow);
    }

    [Fact]
    public void The_built_in_permit_id_is_reserved()
    {
        Assert.False(WritPolicyCompiler.TryCompile([new("mine.cedar", $$"""@id("{{WritPolicyCompiler.BuiltinAdminMintId}}") permit (principal, action, resource);""")], out _, out var errors));
        Assert.Contains("reserved", Assert.Single(errors), StringComparison.Ordinal);
    }
}
