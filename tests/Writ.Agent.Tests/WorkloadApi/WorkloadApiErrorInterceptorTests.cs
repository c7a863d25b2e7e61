using Grpc.Core;
using Writ.Agent.Tests.Instances;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;

using Host = Writ.Agent.Tests.WorkloadApi.WorkloadApiHost;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// The Workload API behind the agent's error interceptor, on a real Unix socket with this process as the workload: every
/// refusal keeps the status SPIFFE mandates and carries a stable code in its detail and its trailer.
/// </summary>
public sealed class WorkloadApiErrorInterceptorTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task A_fetch_refused_for_lack_of_an_identity_is_permission_denied_with_its_code()
    {
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("someone-else", "unix:uid:4000000"));

        using var call = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Equal(WorkloadApiErrorInterceptor.DeniedCode, e.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.Equal("WRIT-WORKLOAD-DENIED: no identity issued", e.Status.Detail);
    }

    [Fact]
    public async Task A_fetch_the_server_refused_keeps_the_servers_words_under_the_workload_code()
    {
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("payments", OwnUid));
        host.Rig.Server.Deny["payments"] = ("d-4f2a", "denied by policy 'payments-need-tpm'");

        using var call = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        // No code of the server's own here (the test server sends none): the Workload API's code for a server refusal.
        Assert.Equal((WorkloadErrors.IssuanceDenied, "issuance denied by policy 'payments-need-tpm' (decision d-4f2a, see 'writ explain d-4f2a')"),
            WritStatus.Read(e));
    }

    [Fact]
    public async Task A_jwt_refusal_that_carries_the_servers_code_reaches_the_workload_under_that_code()
    {
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("api", OwnUid));
        host.Rig.Server.DenyJwt["api"] = "WRIT-ISSUE-DENIED: issuance denied by policy 'jwt-audiences' (decision d-77)";

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await host.Client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "https://evil.example" } }, Host.Headers, cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Equal("WRIT-ISSUE-DENIED", e.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.Equal("WRIT-ISSUE-DENIED: issuance denied by policy 'jwt-audiences' (decision d-77)", e.Status.Detail);   // not prefixed twice
    }

    [Fact]
    public async Task Malformed_requests_stay_invalid_argument_as_spiffe_requires_with_their_code()
    {
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("api", OwnUid));

        var noHeader = await Assert.ThrowsAsync<RpcException>(async () =>
            await host.Client.FetchJWTSVIDAsync(new JWTSVIDRequest { Audience = { "a" } }, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, noHeader.StatusCode);
        Assert.Equal(WorkloadApiErrorInterceptor.InvalidRequestCode, noHeader.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.StartsWith("WRIT-WORKLOAD-INVALID-REQUEST: security header missing", noHeader.Status.Detail, StringComparison.Ordinal);

        var noAudience = await Assert.ThrowsAsync<RpcException>(async () =>
            await host.Client.FetchJWTSVIDAsync(new JWTSVIDRequest(), Host.Headers, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, noAudience.StatusCode);
        Assert.Equal(WorkloadApiErrorInterceptor.InvalidRequestCode, noAudience.Trailers.GetValue(WritStatus.TrailerKey));
    }
}
