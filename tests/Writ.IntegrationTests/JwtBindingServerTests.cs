using Grpc.Core;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Server.Storage;

namespace Writ.IntegrationTests;

/// <summary>ReportJwtReplay on a real server: only attested agents may report, bad reports change nothing, good ones reach the ledger.</summary>
public sealed class JwtBindingServerTests
{
    private static ReportJwtReplayRequest Report(string jti = "jti-of-a-copied-token") => new()
    {
        Jti = jti,
        SpiffeId = "spiffe://example.org/client",
        FirstPeer = "spiffe:spiffe://example.org/rp-a",
        SecondPeer = "spiffe:spiffe://example.org/rp-b",
        Audience = "https://rp.example.org",
        ExpiresAtUnix = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds(),
    };

    private static async Task<IReadOnlyList<LedgerEvent>> ReplayEventsAsync(ServerProcess server)
    {
        // The ledger as the server wrote it, read through the same store code (a second reader of the SQLite file).
        await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, CancellationToken.None);
        return await store.Ledger.ListAsync(0, 1000, "jwt.replay", null, CancellationToken.None);
    }

    [Fact]
    public async Task Replay_reports_are_authenticated_checked_and_recorded_in_the_ledger()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);

        // No agent certificate: refused.
        using var stranger = await TestAgent.ConnectAsync(server);
        var anon = await Assert.ThrowsAsync<RpcException>(async () => await stranger.Client.ReportJwtReplayAsync(Report()));
        Assert.Equal(StatusCode.Unauthenticated, anon.StatusCode);

        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));

        // Malformed reports: InvalidArgument with one line, nothing recorded.
        var bad = new (ReportJwtReplayRequest Request, string Reason)[]
        {
            (new ReportJwtReplayRequest(Report()) { SpiffeId = "not-an-id" }, "spiffe_id"),
            (new ReportJwtReplayRequest(Report()) { Jti = "" }, "token_sha256"),
            (new ReportJwtReplayRequest(Report()) { Jti = "", TokenSha256 = "ABC" }, "token_sha256"),
            (new ReportJwtReplayRequest(Report()) { Jti = new string('j', 300) }, "jti"),
            (new ReportJwtReplayRequest(Report()) { SecondPeer = "" }, "second_peer"),
            (new ReportJwtReplayRequest(Report()) { SecondPeer = "x\nforged log line" }, "printable"),
            (new ReportJwtReplayRequest(Report()) { SecondPeer = Report().FirstPeer }, "same peer"),
        };
        foreach (var (request, reason) in bad)
        {
            var e = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.ReportJwtReplayAsync(request));
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains(reason, e.Status.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e.Status.Detail);
        }
        Assert.Empty(await ReplayEventsAsync(server));

        // A good report is recorded; the server never issued this jti, so nothing is revoked.
        var r = await agent.Client.ReportJwtReplayAsync(Report());
        Assert.False(r.Revoked);
        var sha = new string('a', 64);
        await agent.Client.ReportJwtReplayAsync(new ReportJwtReplayRequest(Report()) { Jti = "", TokenSha256 = sha });

        var events = await ReplayEventsAsync(server);
        Assert.Equal(2, events.Count);
        Assert.All(events, e =>
        {
            Assert.Equal("jwt.replay", e.Kind);
            Assert.Equal(agent.AgentId, e.Actor);
            Assert.Equal("spiffe://example.org/client", e.Subject);
        });
        Assert.StartsWith("{\"audience\":\"https://rp.example.org\",\"expires_at\":", events[0].DataJson, StringComparison.Ordinal);
        Assert.Contains("\"first_peer\":\"spiffe:spiffe://example.org/rp-a\",\"jti\":\"jti-of-a-copied-token\",\"second_peer\":\"spiffe:spiffe://example.org/rp-b\"}", events[0].DataJson, StringComparison.Ordinal);
        Assert.Contains($"\"token_sha256\":\"{sha}\"", events[1].DataJson, StringComparison.Ordinal);
        Assert.DoesNotContain("\"jti\"", events[1].DataJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_replayed_jti_the_server_issued_is_revoked_others_are_not()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        var now = DateTimeOffset.UtcNow;

        await using (var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, CancellationToken.None))
        {
            // What the issuance pipeline records for each JWT-SVID it mints: the jti with its subject and expiry.
            IssuedCredential Issued(string jti, string id, DateTimeOffset exp) => new()
            {
                Kind = "jwt", Id = jti, SpiffeId = id, AgentId = agent.AgentId, DecisionId = "d-" + jti, IssuedAt = now.AddMinutes(-1), ExpiresAt = exp,
            };
            await store.Ledger.AppendAsync(
                [new LedgerEvent { At = now, Kind = "jwt.issued", Actor = agent.AgentId, Subject = "spiffe://example.org/client", DecisionId = "d-batch" }],
                [Issued("issued-live", "spiffe://example.org/client", now.AddMinutes(5)), Issued("issued-other", "spiffe://example.org/other", now.AddMinutes(5))],
                CancellationToken.None);
        }

        // A jti this server never issued, and one it issued to another SPIFFE ID than the report names: never revoked.
        Assert.False((await agent.Client.ReportJwtReplayAsync(Report("made-up"))).Revoked);
        Assert.False((await agent.Client.ReportJwtReplayAsync(Report("issued-other"))).Revoked);

        Assert.True((await agent.Client.ReportJwtReplayAsync(Report("issued-live"))).Revoked);
        await using (var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(server.DataDir, "writ.db"), TimeProvider.System, CancellationToken.None))
        {
            var revoked = await store.Revocations.ListAsync(DateTimeOffset.UtcNow, includeExpired: false, CancellationToken.None);
            Assert.Contains(revoked, r => r.Jti == "issued-live");
            Assert.DoesNotContain(revoked, r => r.Jti is "made-up" or "issued-other");
        }
        Assert.Equal(3, (await ReplayEventsAsync(server)).Count);
    }
}
