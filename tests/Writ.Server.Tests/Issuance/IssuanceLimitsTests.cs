using System.Text.Json;
using Writ.Server.Configuration;
using Writ.Server.Issuance;
using Writ.Server.Storage;
using Writ.Server.Tests.Policy;

namespace Writ.Server.Tests.Issuance;

/// <summary>
/// Issue #12 item 7: a registered workload (or its agent) cannot flood the ledger and the database — issuance and the
/// refusals recorded are rate-limited per workload and per agent, and the record after a gap says how many were left out.
/// </summary>
public sealed class IssuanceLimitsTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<List<LedgerEvent>> RecordsAsync(PipelineHarness h, string kind) =>
        [.. (await h.Store.Ledger.ListAsync(0, 5000, kind, null, Ct)).Where(e => e.Kind == kind)];

    [Fact]
    public async Task A_denial_flood_records_only_the_budget_and_the_next_record_counts_the_rest()
    {
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { DenialsPerWorkload = 3 });
        var entry = await h.EntryAsync("spiffe://example.org/db", "unix:uid:1000");
        var attacker = PipelineHarness.Evidence("66:1", "unix:uid:2000");   // matches no selector: every request is denied

        for (var i = 0; i < 20; i++)
            Assert.Equal(7, Assert.Single((await h.SignAsync(entry, attacker)).Denials).Code);
        Assert.Equal(3, (await RecordsAsync(h, "issuance.denied")).Count);

        // A minute later the budget is back; the first record then says how many refusals it stands for.
        h.Ca.Time.Advance(TimeSpan.FromMinutes(1));
        await h.SignAsync(entry, attacker);
        var records = await RecordsAsync(h, "issuance.denied");
        Assert.Equal(4, records.Count);
        using var data = JsonDocument.Parse(records[^1].DataJson);
        Assert.Equal(17, data.RootElement.GetProperty("suppressed_denials").GetInt64());
        using var first = JsonDocument.Parse(records[0].DataJson);
        Assert.False(first.RootElement.TryGetProperty("suppressed_denials", out _));
    }

    [Fact]
    public async Task Issuance_over_the_workload_rate_is_refused_and_other_workloads_keep_theirs()
    {
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { IssuancePerWorkload = 5, DenialsPerWorkload = 2 });
        var web = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var api = await h.EntryAsync("spiffe://example.org/api", "unix:uid:1001");
        var ev = PipelineHarness.Evidence("42:100", "unix:uid:1000");
        for (var i = 0; i < 5; i++)
            Assert.Single((await h.SignAsync(web, ev)).Issued);

        var refused = await h.SignAsync(web, ev);
        Assert.Empty(refused.Issued);
        var denial = Assert.Single(refused.Denials);
        Assert.Equal(8, denial.Code);   // ResourceExhausted
        Assert.Contains("issuance.rate_per_workload", denial.Reason, StringComparison.Ordinal);
        for (var i = 0; i < 10; i++)
            await h.SignAsync(web, ev);

        // Recorded within the denial budget (2), not once per refusal.
        var limited = await RecordsAsync(h, "issuance.rate_limited");
        Assert.Equal(2, limited.Count);
        Assert.All(limited, e => Assert.Equal("spiffe://example.org/web", e.Subject));
        Assert.Single((await h.SignAsync(api, PipelineHarness.Evidence("43:100", "unix:uid:1001"))).Issued);

        h.Ca.Time.Advance(TimeSpan.FromSeconds(12));   // 5 per minute: one more after 12 s
        Assert.Single((await h.SignAsync(web, ev)).Issued);
        Assert.Single((await h.SignAsync(web, ev)).Denials);
    }

    [Fact]
    public async Task A_jwt_flood_spends_only_the_jwt_budget_and_x509_renewals_of_the_same_workload_keep_working()
    {
        // One process of the workload asks for JWT-SVIDs with fresh audiences (each reaches the server) until refused.
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { IssuancePerWorkload = 5, IssuancePerAgent = 8 });
        var web = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var flooder = PipelineHarness.Evidence("42:100", "unix:uid:1000");
        for (var i = 0; i < 5; i++)
            await h.Pipeline.MintJwtAsync(h.Node, web, flooder, [$"https://a{i}.example.org"], 0, null, Ct);
        var jwt = await Assert.ThrowsAsync<IssuanceRateLimitedException>(() =>
            h.Pipeline.MintJwtAsync(h.Node, web, flooder, ["https://fresh.example.org"], 0, null, Ct));
        Assert.Contains("retry later", jwt.Message, StringComparison.Ordinal);

        // Another replica of the same workload still renews its X.509-SVID, up to the X.509 budget of its own.
        var replica = PipelineHarness.Evidence("43:100", "unix:uid:1000");
        for (var i = 0; i < 5; i++)
            Assert.Single((await h.SignAsync(web, replica)).Issued);
        Assert.Contains("issuance.rate_per_workload", Assert.Single((await h.SignAsync(web, replica)).Denials).Reason, StringComparison.Ordinal);

        // The JWT flood across entries spends the agent's JWT budget only: X.509 for another workload still works.
        var api = await h.EntryAsync("spiffe://example.org/api", "unix:uid:1001");
        var apiEv = PipelineHarness.Evidence("44:100", "unix:uid:1001");
        for (var i = 0; i < 3; i++)
            await h.Pipeline.MintJwtAsync(h.Node, api, apiEv, [$"https://b{i}.example.org"], 0, null, Ct);
        var agent = await Assert.ThrowsAsync<IssuanceRateLimitedException>(() =>
            h.Pipeline.MintJwtAsync(h.Node, api, apiEv, ["https://c.example.org"], 0, null, Ct));
        Assert.Contains("issuance.rate_per_agent", agent.Message, StringComparison.Ordinal);
        Assert.Single((await h.SignAsync(api, apiEv)).Issued);
    }

    [Fact]
    public async Task The_agent_budget_caps_all_its_workloads_together()
    {
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { IssuancePerAgent = 4 });
        var issued = 0;
        for (var i = 0; i < 6; i++)
        {
            var e = await h.EntryAsync($"spiffe://example.org/w{i}", $"unix:uid:{2000 + i}");
            var b = await h.SignAsync(e, PipelineHarness.Evidence($"{50 + i}:1", $"unix:uid:{2000 + i}"));
            issued += b.Issued.Count;
            if (b.Denials.Count > 0)
                Assert.Contains("issuance.rate_per_agent", b.Denials[0].Reason, StringComparison.Ordinal);
        }
        Assert.Equal(4, issued);
    }

    [Fact]
    public async Task Zero_turns_a_limit_off()
    {
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { IssuancePerWorkload = 0, IssuancePerAgent = 0, DenialsPerWorkload = 0, DenialsPerAgent = 0 });
        var entry = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        for (var i = 0; i < 150; i++)
            await h.SignAsync(entry, PipelineHarness.Evidence("9:9", "unix:uid:2000"));
        Assert.Equal(150, (await RecordsAsync(h, "issuance.denied")).Count);
    }
}
