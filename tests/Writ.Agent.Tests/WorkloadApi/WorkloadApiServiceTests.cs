using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Writ.Agent.Tests.Instances;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;

using Host = Writ.Agent.Tests.WorkloadApi.WorkloadApiHost;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// The Workload API service on a real Unix socket, this test process as the workload, the server faked: what a
/// workload sees of denials and revocations.
/// </summary>
public sealed class WorkloadApiServiceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task A_workload_refused_every_svid_gets_permission_denied_with_the_servers_reason_and_decision_id()
    {
        await using var host = await Host.StartAsync();
        var payments = InstanceRig.Entry("payments", OwnUid);
        host.Rig.SetEntries(payments);
        host.Rig.Server.Deny["payments"] = ("d-4f2a", "denied by policy 'payments-need-tpm'");

        using var call = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        // The server sent no code of its own: the workload gets the Workload API's, before the server's words.
        Assert.Equal($"{WorkloadErrors.IssuanceDenied}: issuance denied by policy 'payments-need-tpm' (decision d-4f2a, see 'writ explain d-4f2a')", e.Status.Detail);

        // With another identity allowed, the stream serves that one only.
        var web = InstanceRig.Entry("web", OwnUid);
        host.Rig.SetEntries(payments, web);
        using var call2 = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await call2.ResponseStream.MoveNext(Ct));
        Assert.Equal(["spiffe://example.org/web"], call2.ResponseStream.Current.Svids.Select(s => s.SpiffeId));
    }

    [Fact]
    public async Task A_jwt_refused_by_the_server_reaches_the_workload_in_the_servers_words()
    {
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("api", OwnUid));
        const string detail = "issuance denied by policy 'jwt-audiences' (decision d-77, see 'writ explain d-77')";
        host.Rig.Server.DenyJwt["api"] = detail;
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await host.Client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "https://evil.example" } }, Host.Headers, cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);   // as the SPIFFE Workload API says, the server's words kept
        Assert.Equal($"{WorkloadErrors.IssuanceDenied}: {detail}", e.Status.Detail);
        Assert.Equal(WorkloadErrors.IssuanceDenied, e.Trailers.GetValue(Writ.Protocol.Errors.WritStatus.TrailerKey));   // and the stable code beside it

        host.Rig.Server.DenyJwt.Clear();
        var ok = await host.Client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "https://good.example" } }, Host.Headers, cancellationToken: Ct);
        Assert.Single(ok.Svids);
        var mint = host.Rig.Server.Mints[^1];
        Assert.Equal(32, mint.BoundCertSha256.Length);   // bound to this process's X.509-SVID
        Assert.Contains(mint.Evidence.Selectors, s => $"{s.Type}:{s.Value}" == OwnUid);
    }

    [Fact]
    public async Task Attack_a_connection_never_serves_the_identity_its_process_drifts_to()
    {
        // A process with a small identity opens a stream, forks a child that keeps the socket, and execs a binary that
        // has an identity of its own. The drift must end the stream (and refuse later calls on the connection) rather
        // than hand the new identity's key to whoever holds the socket; a new connection is attested afresh.
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("small", OwnUid), InstanceRig.Entry("target", OwnUid, "unix:sha256:7a7a"));
        using var call = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await call.ResponseStream.MoveNext(Ct));
        Assert.Equal(["spiffe://example.org/small"], call.ResponseStream.Current.Svids.Select(s => s.SpiffeId));

        var instance = host.Rig.Tracker.Get(host.Rig.Server.Signs[^1].Csrs[0].Evidence.InstanceId)!;
        var before = instance.Current.Evidence!;
        var exec = before with { Selectors = [.. before.Selectors.Where(x => x.Type != "unix" || !x.Value.StartsWith("sha256:", StringComparison.Ordinal)), new("unix", "sha256:7a7a")] };
        instance.Drift(exec, DateTimeOffset.UtcNow);
        instance.Changed.Raise();

        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(Ct))
            {
                Assert.DoesNotContain(call.ResponseStream.Current.Svids, s => s.SpiffeId == "spiffe://example.org/target");
            }
        });
        Assert.Equal(StatusCode.Unauthenticated, ended.StatusCode);
        Assert.Contains("reconnect", ended.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_revoked_svid_is_replaced_on_the_open_stream_at_once()
    {
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        using var call = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await call.ResponseStream.MoveNext(Ct));
        var first = Leaf(call.ResponseStream.Current);

        var sw = System.Diagnostics.Stopwatch.StartNew();
        host.Rig.State.Revocations.Add([new Revocation { SerialHex = first.SerialNumber, ExpiresAtUnix = new DateTimeOffset(first.NotAfter).ToUnixTimeSeconds() }]);
        host.Rig.State.Changed.Raise();   // as the sync client does
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(5));
        Assert.True(await call.ResponseStream.MoveNext(deadline.Token));
        var second = Leaf(call.ResponseStream.Current);
        TestContext.Current.SendDiagnosticMessage($"revocation -> new SVID on the stream in {sw.Elapsed.TotalMilliseconds:F0} ms");
        Assert.NotEqual(first.SerialNumber, second.SerialNumber);
        Assert.Equal("spiffe://example.org/web", call.ResponseStream.Current.Svids.Single().SpiffeId);
    }

    private static X509Certificate2 Leaf(X509SVIDResponse r)
    {
        var der = r.Svids[0].X509Svid.ToByteArray();
        // The chain is concatenated DER: the first certificate's length is in its SEQUENCE header.
        var len = der[1] < 0x80 ? der[1] + 2 : ((der[1] & 0x7f) == 2 ? ((der[2] << 8) | der[3]) + 4 : der[2] + 3);
        return X509CertificateLoader.LoadCertificate(der.AsSpan(0, len));
    }
}
