using Envoy.Service.Discovery.V3;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.Sds;
using Writ.Agent.Tests.Instances;

namespace Writ.Agent.Tests.Sds;

/// <summary>
/// A local workload attacking the agent through SDS (attacker review of issue #17): what it sends must not let it grow
/// the agent's logs without bound.
/// </summary>
public sealed class SdsAttackTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static DiscoveryRequest Request(params string[] names)
    {
        var r = new DiscoveryRequest { TypeUrl = SdsSecrets.SecretTypeUrl };
        r.ResourceNames.AddRange(names);
        return r;
    }

    private static async Task<DiscoveryResponse> NextAsync(AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> call)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(15));
        Assert.True(await call.ResponseStream.MoveNext(deadline.Token), "the stream ended");
        return call.ResponseStream.Current;
    }

    [Fact]
    public async Task A_nack_flood_with_huge_messages_does_not_write_unbounded_warnings()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        using var call = host.Client.StreamSecrets(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(Request("default"), Ct);
        var first = await NextAsync(call);

        // The attacker NACKs the last response 20 times, each with a 1 MB error message and a 1 MB version.
        var huge = new string('A', 1 << 20);
        for (var i = 0; i < 20; i++)
        {
            var nack = Request("default");
            nack.VersionInfo = huge;
            nack.ResponseNonce = first.Nonce;
            nack.ErrorDetail = new Google.Rpc.Status { Code = 3, Message = huge };
            await call.RequestStream.WriteAsync(nack, Ct);
        }
        // A stale request after them: once it is ignored, every NACK before it was handled (requests are served in order).
        var stale = Request("default");
        stale.ResponseNonce = "0000";
        await call.RequestStream.WriteAsync(stale, Ct);
        await Deadline.UntilAsync(() => host.Log.Entries.Any(e => e.Message.Contains("ignored a request", StringComparison.Ordinal)), "the stale request to be ignored");

        var warnings = host.Log.Entries.Where(e => e.Level >= LogLevel.Warning && e.Message.Contains("rejected", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(warnings);
        // Each warning is one bounded line (a peer's text is shortened), and the same nonce's NACK is logged once.
        Assert.All(warnings, w => Assert.True(w.Message.Length <= 4096, $"a NACK warning of {w.Message.Length} characters"));
        Assert.Single(warnings);
    }
}
