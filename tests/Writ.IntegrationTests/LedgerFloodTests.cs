using System.Security.Cryptography;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>
/// Issue #12 item 7, attacked through the real agent API: a registered workload (through its agent) asks for JWT-SVIDs
/// with thousands of long audiences, and floods refused requests. The ledger and the database must not grow with it.
/// </summary>
public sealed class LedgerFloodTests
{
    private static async Task<string> CreateEntryAsync(ServerProcess server, string spiffeId, string parentId)
    {
        var r = await server.WritAsync("entry", "create", "--spiffe-id", spiffeId, "--parent-id", parentId, "--selector", "unix:uid:1000", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    private static async Task<(long Head, List<string> Kinds)> LedgerAsync(ServerProcess server)
    {
        var r = await server.WritAsync("audit", "list", "--limit", "5000", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return (doc.RootElement.GetProperty("head").GetProperty("seq").GetInt64(),
            [.. doc.RootElement.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("kind").GetString()!)]);
    }

    [Fact]
    public async Task Huge_audience_lists_are_refused_before_anything_is_recorded_and_a_denial_flood_is_not_recorded_one_by_one()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"]);
        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        var entry = await CreateEntryAsync(server, "spiffe://example.org/flood", agent.AgentId);
        var db = Path.Combine(dir["server"], "writ.db");
        var (headBefore, _) = await LedgerAsync(server);
        var sizeBefore = new FileInfo(db).Length + (File.Exists(db + "-wal") ? new FileInfo(db + "-wal").Length : 0);

        // The reported attack: 5,000 audiences of ~415 characters (about 2 MB per request), ten times.
        for (var i = 0; i < 10; i++)
        {
            var huge = new MintJwtSvidRequest { EntryId = entry, Evidence = TestEvidence.Of() };
            huge.Audience.AddRange(Enumerable.Range(0, 5000).Select(n => $"https://rp{i}-{n}.example.org/" + new string('a', 380)));
            var e = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.MintJwtSvidAsync(huge));
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains("issuance.max_request_bytes", e.Status.Detail, StringComparison.Ordinal);
        }
        var many = new MintJwtSvidRequest { EntryId = entry, Evidence = TestEvidence.Of() };
        many.Audience.AddRange(Enumerable.Range(0, 17).Select(n => $"aud-{n}"));
        var tooMany = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.MintJwtSvidAsync(many));
        Assert.Equal(StatusCode.InvalidArgument, tooMany.StatusCode);
        Assert.Contains("at most 16 audiences (issuance.max_audiences)", tooMany.Status.Detail, StringComparison.Ordinal);

        // A CSR carrying huge evidence is refused alone, without a record.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var fat = TestEvidence.Of();
        fat.Facts["padding"] = new string('p', 200_000);
        var signed = await agent.Client.SignX509SvidsAsync(new SignX509SvidsRequest { Csrs = { new SvidCsr { EntryId = entry, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = fat } } });
        Assert.Contains("issuance.max_request_bytes", Assert.Single(signed.Denials).Reason, StringComparison.Ordinal);
        Assert.Equal(headBefore, (await LedgerAsync(server)).Head);

        // Thirty refused requests (the evidence matches no selector of the entry): fewer records than refusals.
        for (var i = 0; i < 30; i++)
        {
            var denied = await Assert.ThrowsAsync<RpcException>(async () => await agent.Client.MintJwtSvidAsync(
                new MintJwtSvidRequest { EntryId = entry, Audience = { "https://api.example.org" }, Evidence = TestEvidence.Of("unix:uid:2000") }));
            Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        }
        var (_, kinds) = await LedgerAsync(server);
        var recorded = kinds.Count(k => k == "issuance.denied");
        Assert.InRange(recorded, 1, 29);
        var sizeAfter = new FileInfo(db).Length + (File.Exists(db + "-wal") ? new FileInfo(db + "-wal").Length : 0);
        TestContext.Current.TestOutputHelper?.WriteLine($"flood: {recorded} of 30 refusals recorded; database + WAL grew by {sizeAfter - sizeBefore} bytes");
        Assert.True(sizeAfter - sizeBefore < 4 << 20, $"the database grew by {sizeAfter - sizeBefore} bytes");
    }

    [Fact]
    public async Task A_workload_over_its_issuance_rate_is_refused_with_resource_exhausted()
    {
        using var dir = new TempDir();
        await using var server = await ServerProcess.StartAsync(dir["server"], "example.org", "--issuance-rate-per-workload", "5");
        using var agent = await TestAgent.ConnectAsync(server);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(server));
        var entry = await CreateEntryAsync(server, "spiffe://example.org/busy", agent.AgentId);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = ByteString.CopyFrom(Csr.Create(key));
        var request = new SignX509SvidsRequest();
        for (var i = 0; i < 20; i++)
            request.Csrs.Add(new SvidCsr { EntryId = entry, Csr = csr, Evidence = TestEvidence.Of() });
        var r = await agent.Client.SignX509SvidsAsync(request);
        Assert.InRange(r.Svids.Count, 5, 19);
        Assert.NotEmpty(r.Denials);
        Assert.All(r.Denials, d => Assert.Equal((int)StatusCode.ResourceExhausted, d.Code));
        Assert.Contains("issuance.rate_per_workload", r.Denials[0].Reason, StringComparison.Ordinal);
        // JWT-SVIDs have a budget of their own (a JWT flood cannot starve X.509 renewals, nor the other way round): not
        // refused for the rate while the X.509 budget is spent (whatever the decision), then refused once it runs out.
        var calls = 0;
        RpcException? limited = null;
        while (limited is null && calls < 20)
        {
            calls++;
            try
            {
                await agent.Client.MintJwtSvidAsync(new MintJwtSvidRequest { EntryId = entry, Audience = { $"https://a{calls}.example.org" }, Evidence = TestEvidence.Of() });
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.ResourceExhausted)
            {
                limited = e;
            }
            catch (RpcException)
            {
            }
        }
        Assert.NotNull(limited);
        Assert.InRange(calls, 6, 20);
        var (_, kinds) = await LedgerAsync(server);
        Assert.Contains("issuance.rate_limited", kinds);
    }
}
