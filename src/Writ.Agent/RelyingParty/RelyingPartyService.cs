using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Writ.Agent.Authz;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Errors;
using Writ.Protocol.RelyingParty;

namespace Writ.Agent.RelyingParty;

/// <summary>
/// Writ's relying-party API on the Workload API socket (<c>writ.relyingparty.v1.RelyingParty</c>), with the Workload API's
/// own checks: the <c>workload.spiffe.io: true</c> header and a caller attested from the kernel that holds at least one
/// identity. <c>Authorize</c> decides a call TO the calling workload (its peer is the caller; the resource is one of the
/// workload's own identities, its first by default) exactly as ext_authz does; <c>WatchRevocations</c> streams the whole
/// revocation set on connect and on every change.
/// </summary>
public sealed class RelyingPartyService(IServiceProvider services, CallDecider decider, AgentState state, IHostApplicationLifetime lifetime)
    : Writ.Protocol.RelyingParty.RelyingParty.RelyingPartyBase
{
    public const string Surface = "sdk";

    /// <summary>Stable code of an Authorize for a resource that is not one of the calling workload's identities.</summary>
    public const string NotOwnResourceCode = "WRIT-AUTHZ-NOT-OWN-RESOURCE";

    /// <summary>Longest JWT-SVID or certificate accepted (bytes).</summary>
    public const int MaxCredentialBytes = 64 * 1024;

    private WorkloadApiService Workload => ActivatorUtilities.CreateInstance<WorkloadApiService>(services);

    public override async Task<AuthorizeResponse> Authorize(AuthorizeRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        WorkloadApiService.CheckHeader(context);
        if (request.PeerCertificateDer.Length > MaxCredentialBytes || request.JwtSvid.Length > MaxCredentialBytes)
        {
            throw new WritException(AuthzCodes.Malformed, WritErrorKind.InvalidArgument, $"the caller's credential is larger than {MaxCredentialBytes} bytes");
        }
        var workload = Workload;
        var instance = await workload.AttestAsync(context).ConfigureAwait(false);
        var own = workload.Match(instance, workload.Evidence(instance, context), state.Current, context);
        var resource = request.ResourceSpiffeId;
        if (resource.Length == 0)
        {
            resource = own[0].SpiffeId;
        }
        else if (!own.Any(e => string.Equals(e.SpiffeId, resource, StringComparison.Ordinal)))
        {
            throw new WritException(NotOwnResourceCode, WritErrorKind.PermissionDenied,
                $"'{CallDecider.OneLine(resource, 200)}' is not an identity of the calling workload: a relying party asks only about calls to itself (leave resource_spiffe_id empty for its first identity)");
        }
        var outcome = decider.Decide(new CallRequest
        {
            CertificateChainDer = request.PeerCertificateDer.Length > 0 ? [request.PeerCertificateDer.ToByteArray()] : [],
            Jwt = request.PeerCertificateDer.Length == 0 && request.JwtSvid.Length > 0 ? request.JwtSvid : null,
            Resource = resource,
            Method = request.Method,
            Path = request.Path,
            Host = request.Host,
            Headers = request.Headers,
        }, Surface);
        return new AuthorizeResponse
        {
            Allowed = outcome.Allowed,
            DecisionId = outcome.DecisionId,
            Reason = outcome.Reason,
            Code = outcome.Code,
            CallerSpiffeId = outcome.CallerSpiffeId,
        };
    }

    public override async Task WatchRevocations(WatchRevocationsRequest request, IServerStreamWriter<Writ.Protocol.RelyingParty.RevocationSet> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(responseStream);
        ArgumentNullException.ThrowIfNull(context);
        WorkloadApiService.CheckHeader(context);
        var workload = Workload;
        var instance = await workload.AttestAsync(context).ConfigureAwait(false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        var ct = cts.Token;
        long sent = -1;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var generation = state.Revocations.Changed.Generation;
                var own = instance.Changed.Generation;
                workload.Match(instance, workload.Evidence(instance, context), state.Current, context);   // only while it holds an identity
                var (serials, jtis, revision) = state.Revocations.Snapshot();
                if (revision != sent)
                {
                    var message = new Writ.Protocol.RelyingParty.RevocationSet { Revision = revision };
                    message.SerialHex.AddRange(serials);
                    message.Jti.AddRange(jtis);
                    await responseStream.WriteAsync(message, ct).ConfigureAwait(false);
                    sent = revision;
                }
                using var either = CancellationTokenSource.CreateLinkedTokenSource(ct);
                await Task.WhenAny(state.Revocations.Changed.WaitAsync(generation, either.Token), instance.Changed.WaitAsync(own, either.Token))
                    .ConfigureAwait(false);
                await either.CancelAsync().ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The relying party left or the agent stops: the stream ends.
        }
    }
}
