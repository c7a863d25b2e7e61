using System.Security.Cryptography;
using System.Text.Json;
using Writ.Protocol.Evidence;
using Writ.Server.Configuration;
using Writ.Server.Issuance;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Server.Tests.Policy;
using Writ.Spiffe.X509;

namespace Writ.Server.Tests.Issuance;

/// <summary>
/// Issue #13 item 9d: denial evidence written to the ledger is rate-limited per agent (ledger.denials_per_agent) and
/// per workload; what is left out is summarized in one denials.suppressed record per agent and window, never lost.
/// </summary>
public sealed class DenialSummaryTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string OtherAgentId = "spiffe://example.org/writ/agent/join_token/t2";

    private static async Task<List<LedgerEvent>> RecordsAsync(PipelineHarness h, string kind) =>
        [.. (await h.Store.Ledger.ListAsync(0, 5000, kind, null, Ct)).Where(e => e.Kind == kind)];

    private static async Task<(AttestedNode Node, RegistrationEntry Entry)> OtherAgentAsync(PipelineHarness h)
    {
        var node = new AttestedNode
        {
            SpiffeId = OtherAgentId,
            AttestationType = "join_token",
            SerialNumber = "02",
            ExpiresAt = h.Ca.Time.GetUtcNow().AddHours(1),
            Selectors = [new Selector("join_token", "t2")],
        };
        await h.Store.Nodes.CreateAsync(node, Ct);
        var entry = (await h.Store.Entries.CreateAsync([new RegistrationEntry
        {
            SpiffeId = "spiffe://example.org/other",
            ParentId = OtherAgentId,
            Selectors = [new Selector("unix", "uid:1000")],
        }], Ct))[0];
        return (node, entry);
    }

    private static Task<X509Batch> SignAsAsync(PipelineHarness h, AttestedNode node, RegistrationEntry entry, WorkloadEvidence evidence)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return h.Pipeline.SignX509Async(node, [new X509SvidRequest(entry.Id, Csr.Create(key), evidence)], Ct);
    }

    [Fact]
    public async Task An_agent_flooding_denials_gets_a_bounded_ledger_and_one_summary_that_keeps_the_count()
    {
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { DenialsPerAgent = 5, DenialsPerWorkload = 3, IssuancePerWorkload = 0, IssuancePerAgent = 0 });
        var entries = new List<RegistrationEntry>();
        for (var i = 0; i < 4; i++)
            entries.Add(await h.EntryAsync($"spiffe://example.org/w{i}", "unix:uid:1000"));
        var attacker = PipelineHarness.Evidence("66:1", "unix:uid:2000");   // matches no entry: every request is denied
        var (other, otherEntry) = await OtherAgentAsync(h);

        const int flood = 400;
        for (var i = 0; i < flood; i++)
        {
            var refused = Assert.Single((await h.SignAsync(entries[i % entries.Count], attacker)).Denials);
            Assert.Equal(IssuanceErrors.Denied, refused.ErrorCode);   // still refused, recorded or not
        }
        // Bounded: the agent's budget (5) of records, whatever the flood.
        Assert.Equal(5, (await RecordsAsync(h, "issuance.denied")).Count);

        // Another agent's refusals are still recorded while the flood goes on.
        Assert.Single((await SignAsAsync(h, other, otherEntry, PipelineHarness.Evidence("77:1", "unix:uid:3000"))).Denials);
        var denied = await RecordsAsync(h, "issuance.denied");
        Assert.Equal(6, denied.Count);
        Assert.Equal(OtherAgentId, denied[^1].Actor);
        Assert.Empty(await RecordsAsync(h, "denials.suppressed"));   // the window is still open

        // The window closes; the next write (another agent's) carries the flooder's summary, once.
        h.Ca.Time.Advance(IssuanceLimits.SummaryWindow);
        await SignAsAsync(h, other, otherEntry, PipelineHarness.Evidence("77:1", "unix:uid:3000"));
        await SignAsAsync(h, other, otherEntry, PipelineHarness.Evidence("77:1", "unix:uid:3000"));
        var summary = Assert.Single(await RecordsAsync(h, "denials.suppressed"));
        Assert.Equal(PipelineHarness.AgentId, summary.Subject);
        using var data = JsonDocument.Parse(summary.DataJson);
        Assert.Equal(flood - 5, data.RootElement.GetProperty("count").GetInt64());
        Assert.Equal(flood - 5, data.RootElement.GetProperty("entries").EnumerateObject().Sum(e => e.Value.GetInt64()));

        // Nothing counted twice: the flooder's next recorded refusal starts from zero.
        await h.SignAsync(entries[0], attacker);
        using var next = JsonDocument.Parse((await RecordsAsync(h, "issuance.denied"))[^1].DataJson);
        Assert.False(next.RootElement.TryGetProperty("suppressed_denials", out _));
    }

    [Fact]
    public async Task A_holder_of_a_denied_join_token_retrying_gets_a_bounded_ledger_and_a_summary()
    {
        // A denial does not burn the token, so its holder may retry at will: the node.attest_denied records share the
        // denial budget of the would-be agent, and the rest are counted in its denials.suppressed summary.
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { DenialsPerAgent = 5, DenialsPerWorkload = 3 });
        await h.PushAsync(("default.cedar", WritPolicyCompiler.DefaultFiles[0].Text), ("no-nodes.cedar", """
            @id("no-new-nodes")
            forbid (principal is Writ::Node, action == Writ::Action::"AttestNode", resource);
            """));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var publicKey = new System.Security.Cryptography.X509Certificates.PublicKey(key);
        const string Flooder = "spiffe://example.org/writ/agent/join_token/denied-token";
        const int flood = 50;
        for (var i = 0; i < flood; i++)
        {
            var outcome = await h.Pipeline.AttestNodeAsync(new NodeFacts(Flooder, "join_token", ["join_token:denied-token"], []), publicKey, renewal: false, Ct);
            Assert.Null(outcome.Chain);   // refused every time, recorded or not
        }
        Assert.Equal(3, (await RecordsAsync(h, "node.attest_denied")).Count);

        // The window closes; the next write (another would-be agent's refusal) carries the flooder's summary.
        h.Ca.Time.Advance(IssuanceLimits.SummaryWindow);
        await h.Pipeline.AttestNodeAsync(new NodeFacts(OtherAgentId, "join_token", ["join_token:t2"], []), publicKey, renewal: false, Ct);
        var summary = Assert.Single(await RecordsAsync(h, "denials.suppressed"));
        Assert.Equal(Flooder, summary.Subject);
        using var data = JsonDocument.Parse(summary.DataJson);
        Assert.Equal(flood - 3, data.RootElement.GetProperty("count").GetInt64());
        Assert.Equal(flood - 3, data.RootElement.GetProperty("entries").GetProperty(IssuancePipeline.NodeAttestationEntry).GetInt64());
    }

    [Fact]
    public async Task A_summary_whose_write_fails_is_kept_and_written_later_and_shutdown_flushes_an_open_window()
    {
        await using var h = await PipelineHarness.CreateAsync(new LedgerOptions { DenialsPerAgent = 1, DenialsPerWorkload = 1 });
        var entry = await h.EntryAsync("spiffe://example.org/db", "unix:uid:1000");
        var attacker = PipelineHarness.Evidence("66:1", "unix:uid:2000");
        for (var i = 0; i < 10; i++)
            await h.SignAsync(entry, attacker);

        h.Store.FailLedger = true;
        await Assert.ThrowsAsync<StoreUnavailableException>(() => h.Pipeline.FlushSuppressedDenialsAsync(all: true, Ct));
        h.Store.FailLedger = false;
        Assert.Empty(await RecordsAsync(h, "denials.suppressed"));

        await h.Pipeline.FlushSuppressedDenialsAsync(all: true, Ct);   // e.g. at shutdown, before the window closed
        var summary = Assert.Single(await RecordsAsync(h, "denials.suppressed"));
        using var data = JsonDocument.Parse(summary.DataJson);
        Assert.Equal(9, data.RootElement.GetProperty("count").GetInt64());
        Assert.Equal(9, data.RootElement.GetProperty("entries").GetProperty(entry.Id).GetInt64());
        await h.Pipeline.FlushSuppressedDenialsAsync(all: true, Ct);
        Assert.Single(await RecordsAsync(h, "denials.suppressed"));
    }
}
