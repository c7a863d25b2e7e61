using System.Security.Cryptography;
using System.Threading.Channels;
using Envoy.Service.Discovery.V3;
using Envoy.Service.Secret.V3;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.Cache;
using Writ.Agent.Instances;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Errors;

namespace Writ.Agent.Sds;

/// <summary>
/// Envoy's secret discovery service (<c>envoy.service.secret.v3.SecretDiscoveryService</c>) on the Workload API socket, as
/// SPIRE's agent serves it. The caller (Envoy) is attested exactly as a Workload API caller is — through
/// <see cref="WorkloadApiService"/>'s helpers: kernel peer credentials, the connection's pinned process and executable,
/// its instance and epoch — and gets only what its own entries give (<see cref="SdsSecrets"/> names them). Like SPIRE, SDS
/// requires no <c>workload.spiffe.io</c> header: Envoy cannot send one on its SDS stream.
/// <para>
/// StreamSecrets answers each request whose resource names changed (the first one included) and pushes a new version
/// whenever what those names resolve to changes: an SVID rotated or was revoked, an entry changed, the bundle changed.
/// Each response has a version (a counter per stream) and a fresh nonce; a request answering an older nonce is ignored,
/// a NACK (error_detail) is logged and the same version is not sent again. The stream ends as a Workload API stream does
/// when the instance exits, drifts or loses its last identity. FetchSecrets answers once (no version, no nonce).
/// DeltaSecrets is not served (Unimplemented, as SPIRE).
/// </para>
/// </summary>
public sealed class SdsService(WorkloadApiService workload, AgentState state, SvidCache cache, AgentOptions options, TimeProvider time, ILogger<SdsService> log)
    : SecretDiscoveryService.SecretDiscoveryServiceBase
{
    /// <summary>Names a request may carry at most (Envoy asks for a handful per stream).</summary>
    public const int MaxNames = 256;

    /// <summary>Longest name accepted: a SPIFFE ID's maximum length.</summary>
    public const int MaxNameLength = 2048;

    public const string NotAuthorizedCode = "WRIT-SDS-NOT-AUTHORIZED";
    public const string TypeUrlCode = "WRIT-SDS-TYPE-URL";
    public const string TooLargeCode = "WRIT-SDS-REQUEST-TOO-LARGE";

    private readonly X509ResponseCache _views = new(state, cache, time);

    public override async Task<DiscoveryResponse> FetchSecrets(DiscoveryRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        Validate(request);
        var instance = await workload.AttestAsync(context).ConfigureAwait(false);
        var view = await ViewAsync(instance, state.Changed.Generation, instance.Changed.Generation, instance.Epoch, context, context.CancellationToken).ConfigureAwait(false);
        var selection = Select(request.ResourceNames, view);
        var response = new DiscoveryResponse { TypeUrl = SdsSecrets.SecretTypeUrl };
        response.Resources.AddRange(SdsSecrets.Resources(selection));
        return response;
    }

    public override async Task StreamSecrets(IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(requestStream);
        ArgumentNullException.ThrowIfNull(responseStream);
        ArgumentNullException.ThrowIfNull(context);
        var instance = await workload.AttestAsync(context).ConfigureAwait(false);
        instance.StreamOpened();
        try
        {
            await workload.StreamAsync(context, ct => StreamAsync(instance, requestStream, responseStream, context, ct)).ConfigureAwait(false);
        }
        finally
        {
            instance.StreamClosed();
        }
    }

    private async Task StreamAsync(WorkloadInstance instance, IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream,
        ServerCallContext context, CancellationToken ct)
    {
        var requests = Channel.CreateBounded<DiscoveryRequest>(new BoundedChannelOptions(16) { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var reading = ReadAsync(requestStream, requests.Writer, stop.Token);
        try
        {
            await ServeAsync(instance, requests.Reader, responseStream, context, ct).ConfigureAwait(false);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await reading.ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException or RpcException)
            {
                // The caller left or the stream ended: nothing more to read.
            }
        }
    }

    /// <summary>Moves the caller's requests to a channel, so the serving loop can wait on them and on changes at once.</summary>
    private static async Task ReadAsync(IAsyncStreamReader<DiscoveryRequest> requestStream, ChannelWriter<DiscoveryRequest> writer, CancellationToken ct)
    {
        try
        {
            while (await requestStream.MoveNext(ct).ConfigureAwait(false))
            {
                await writer.WriteAsync(requestStream.Current, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            writer.TryComplete();
        }
    }

    private async Task ServeAsync(WorkloadInstance instance, ChannelReader<DiscoveryRequest> requests, IServerStreamWriter<DiscoveryResponse> responseStream,
        ServerCallContext context, CancellationToken ct)
    {
        var opened = instance.Epoch;
        var pid = instance.Peer.Pid;
        IReadOnlyList<string>? names = null;   // the last request's names; null until the first request
        var namesChanged = false;
        long counter = 0;
        var version = "";
        string? lastHash = null;
        string? lastNonce = null;
        string? sentVersion = null;
        string? nackedNonce = null;
        while (!ct.IsCancellationRequested)
        {
            var generation = state.Changed.Generation;
            var own = instance.Changed.Generation;
            workload.Evidence(instance, context);   // gone or not re-attestable: nothing is served (throws the reason)
            workload.SameEpoch(instance, opened, context);
            while (requests.TryRead(out var request))
            {
                Validate(request);
                if (request.ErrorDetail is { } error && request.ResponseNonce == (lastNonce ?? request.ResponseNonce) && nackedNonce != (lastNonce ?? ""))
                {
                    // Only a NACK of the last response, once (a peer repeating NACKs or inventing nonces cannot grow the log); its text shortened.
                    nackedNonce = lastNonce ?? "";
                    SdsLog.Rejected(log, pid, Shorten(lastNonce == request.ResponseNonce ? sentVersion ?? "" : request.VersionInfo),
                        Shorten(string.Join(',', request.ResourceNames)), Shorten(error.Message));
                }
                if (lastNonce is not null && request.ResponseNonce != lastNonce)
                {
                    SdsLog.StaleNonce(log, pid, Shorten(request.ResponseNonce), lastNonce);
                    continue;   // answers an older response: the caller has not seen the last one yet
                }
                var requested = request.ResourceNames.ToList();
                if (names is null || !SameNames(names, requested))
                {
                    namesChanged = true;
                }
                names = requested;
            }
            var wakeAt = DateTimeOffset.MaxValue;
            if (names is not null)
            {
                var view = await ViewAsync(instance, generation, own, opened, context, ct).ConfigureAwait(false);
                var selection = Select(names, view);
                var resources = SdsSecrets.Resources(selection).ToList();
                var hash = SdsSecrets.Hash(resources);
                if (hash != lastHash)
                {
                    counter++;
                    version = counter.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    lastHash = hash;
                }
                // A new version, or new names, is sent; the same version is never sent twice for the same names (a NACK
                // of it is logged, not answered with it again).
                if (namesChanged || sentVersion != version)
                {
                    var response = new DiscoveryResponse
                    {
                        TypeUrl = SdsSecrets.SecretTypeUrl,
                        VersionInfo = version,
                        Nonce = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)),
                    };
                    response.Resources.AddRange(resources);
                    await responseStream.WriteAsync(response, ct).ConfigureAwait(false);
                    lastNonce = response.Nonce;
                    sentVersion = version;
                    namesChanged = false;
                    if (log.IsEnabled(LogLevel.Debug))
                    {
                        SdsLog.Sent(log, version, resources.Count, string.Join(',', selection.Secrets.Select(s => s.Name)), pid);
                    }
                }
                wakeAt = view.ReuseUntil;
            }
            if (!await WaitAsync(instance, generation, own, wakeAt, requests, ct).ConfigureAwait(false))
            {
                return;   // the caller closed its side: the stream is over
            }
        }
    }

    /// <summary>
    /// Waits for a request, an entry/bundle/revocation change, a change of the instance, or the moment what was sent may
    /// change on its own (rotation, entry expiry, retry of a refusal). False when the caller closed its side.
    /// </summary>
    private async Task<bool> WaitAsync(WorkloadInstance instance, long generation, long own, DateTimeOffset wakeAt, ChannelReader<DiscoveryRequest> requests, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var delay = wakeAt == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : wakeAt <= now ? TimeSpan.FromSeconds(1) : wakeAt - now;
        if (delay != Timeout.InfiniteTimeSpan && delay < TimeSpan.FromMilliseconds(100))
        {
            delay = TimeSpan.FromMilliseconds(100);
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var request = requests.WaitToReadAsync(cts.Token).AsTask();
        await Task.WhenAny(request, state.Changed.WaitAsync(generation, cts.Token), instance.Changed.WaitAsync(own, cts.Token), Task.Delay(delay, time, cts.Token))
            .ConfigureAwait(false);
        await cts.CancelAsync().ConfigureAwait(false);
        return !request.IsCompletedSuccessfully || request.Result || requests.TryPeek(out _);
    }

    /// <summary>The instance's SVIDs and the state they were matched in, as the Workload API's X.509 stream builds them.</summary>
    private async Task<X509ResponseCache.X509View> ViewAsync(WorkloadInstance instance, long generation, long own, long epoch, ServerCallContext context, CancellationToken ct)
    {
        var view = await _views.GetAsync(instance, generation, own, snapshot => workload.Match(instance, workload.Evidence(instance, context), snapshot, context), ct).ConfigureAwait(false);
        workload.SameEpoch(instance, epoch, context);   // the evidence may have drifted while the view was built
        if (view.Response is null)
        {
            workload.Evidence(instance, context);   // gone: throws the reason
            if (view.Denials.Count > 0)
            {
                throw WorkloadApiService.Refusal(StatusCode.PermissionDenied, view.Denials[0].Message, view.Denials[0].WorkloadCode);
            }
            throw WorkloadApiService.Refusal(StatusCode.Unavailable, "no X.509-SVID could be obtained from the server yet; retry with backoff");
        }
        return view;
    }

    /// <summary>What the names resolve to for this caller; a name it has nothing for refuses the request (as SPIRE does).</summary>
    private SdsSelection Select(IReadOnlyCollection<string> names, X509ResponseCache.X509View view)
    {
        var selection = SdsSecrets.Select(names, view.Svids, new SdsBundleSet(state.Current.Bundle, view.Federated), options.Sds);
        if (selection.Unknown.Count > 0)
        {
            throw new WritException(NotAuthorizedCode, WritErrorKind.PermissionDenied,
                $"this workload has no secret named {string.Join(", ", selection.Unknown.Select(n => $"'{Shorten(n)}'"))}: ask for its own SPIFFE IDs, " +
                $"'{options.Sds.DefaultSvidName}', '{options.Sds.DefaultBundleName}', '{options.Sds.DefaultAllBundlesName}' or {options.TrustDomain.IdString}");
        }
        return selection;
    }

    private static void Validate(DiscoveryRequest request)
    {
        if (request.TypeUrl.Length > 0 && request.TypeUrl != SdsSecrets.SecretTypeUrl)
        {
            throw new WritException(TypeUrlCode, WritErrorKind.InvalidArgument,
                $"type_url '{Shorten(request.TypeUrl)}' is not served here: SDS serves only {SdsSecrets.SecretTypeUrl}");
        }
        if (request.ResourceNames.Count > MaxNames || request.ResourceNames.Any(n => n.Length > MaxNameLength))
        {
            throw new WritException(TooLargeCode, WritErrorKind.InvalidArgument,
                $"the request names {request.ResourceNames.Count} resources (at most {MaxNames}, each at most {MaxNameLength} characters): ask for fewer");
        }
    }

    private static bool SameNames(IReadOnlyList<string> a, IReadOnlyList<string> b) =>
        a.ToHashSet(StringComparer.Ordinal).SetEquals(b);

    private static string Shorten(string s)
    {
        var line = OneLine(s);
        return line.Length <= 120 ? line : line[..120] + "…";
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");
}
