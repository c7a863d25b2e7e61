using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Writ.Agent.Cache;
using Writ.Agent.Instances;
using Writ.Agent.NodeAttestation;
using Writ.Agent.PeerTracking;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Agent;
using Writ.Protocol.Evidence;
using Writ.Protocol.Errors;
using Writ.Spiffe;
using Writ.Spiffe.Jwt;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// The SPIFFE Workload API (spec proto, service <c>SpiffeWorkloadAPI</c>, no package). Every call must carry
/// <c>workload.spiffe.io: true</c> (else InvalidArgument); the caller is identified from the kernel (SO_PEERCRED +
/// pidfd + /proc), never from anything it sends, and every call re-checks the caller's instance
/// (<see cref="InstanceTracker.Observe"/>). Streams send the full current state at once and again whenever an SVID
/// rotates or is revoked, an entry changes, the bundle or the CRLs change or the instance's evidence drifts; a stream whose
/// instance exited or lost its last identity ends. Envoy SDS (<see cref="Sds.SdsService"/>) attests its callers through the
/// same internal helpers.
/// </summary>
public sealed class WorkloadApiService(WorkloadAttestationRunner runner, AgentState state, SvidCache cache, InstanceTracker tracker, ConnectionGate gate,
    AgentOptions options, JwtReplayGuard guard, WorkloadRefusalReporter refusals, TimeProvider time, IHostApplicationLifetime lifetime, ILogger<WorkloadApiService> log) : SpiffeWorkloadAPI.SpiffeWorkloadAPIBase
{
    public const string SecurityHeader = "workload.spiffe.io";

    private readonly X509ResponseCache _views = new(state, cache, time);

    public override async Task FetchX509SVID(X509SVIDRequest request, IServerStreamWriter<X509SVIDResponse> responseStream, ServerCallContext context)
    {
        CheckHeader(context);
        var instance = await AttestAsync(context).ConfigureAwait(false);
        instance.StreamOpened();
        try
        {
            await StreamAsync(context, ct => StreamX509Async(instance, responseStream, context, ct)).ConfigureAwait(false);
        }
        finally
        {
            instance.StreamClosed();
        }
    }

    private async Task StreamX509Async(WorkloadInstance instance, IServerStreamWriter<X509SVIDResponse> responseStream, ServerCallContext context, CancellationToken ct)
    {
        string? lastSent = null;
        var opened = instance.Epoch;
        while (!ct.IsCancellationRequested)
        {
            var generation = state.Changed.Generation;
            var own = instance.Changed.Generation;
            Evidence(instance, context);   // gone or not re-attestable: nothing is served (throws the reason)
            SameEpoch(instance, opened, context);
            var view = await _views.GetAsync(instance, generation, own, snapshot => Match(instance, Evidence(instance, context), snapshot, context), ct).ConfigureAwait(false);
            SameEpoch(instance, opened, context);   // the evidence may have drifted while the view was built
            if (view.Response is null)
            {
                if (instance.IsGone || instance.Current.Evidence is null)
                {
                    Evidence(instance, context);   // throws the reason
                }
                if (view.Denials.Count > 0)
                {
                    throw Refusal(StatusCode.PermissionDenied, view.Denials[0].Message, view.Denials[0].WorkloadCode);
                }
                throw Refusal(StatusCode.Unavailable, "no X.509-SVID could be obtained from the server yet; retry with backoff");
            }
            if (view.Fingerprint != lastSent)
            {
                await responseStream.WriteAsync(view.Response, ct).ConfigureAwait(false);
                lastSent = view.Fingerprint;
            }
            await WaitForChangeAsync(generation, instance, own, view, ct).ConfigureAwait(false);
        }
    }

    public override async Task FetchX509Bundles(X509BundlesRequest request, IServerStreamWriter<X509BundlesResponse> responseStream, ServerCallContext context)
    {
        CheckHeader(context);
        var instance = await AttestAsync(context).ConfigureAwait(false);
        // The whole response is compared, so a CRL-only change (a revocation) is sent too.
        // The own trust domain's bundle and the federated ones of the caller's entries (their federates_with, united).
        await StreamAsync(context, ct => StreamBundlesAsync(instance, context, (s, entries) =>
        {
            var r = new X509BundlesResponse();
            r.Bundles.Add(options.TrustDomain.IdString, ByteString.CopyFrom(s.Bundle.X509AuthoritiesDer()));
            foreach (var f in s.FederatedFor(entries))
            {
                r.Bundles[f.TrustDomain.IdString] = ByteString.CopyFrom(f.X509AuthoritiesDer());
            }
            r.Crl.AddRange(s.Crls.Der);
            return r.ToByteArray();
        }, bytes => responseStream.WriteAsync(X509BundlesResponse.Parser.ParseFrom(bytes), ct), ct)).ConfigureAwait(false);
    }

    public override async Task FetchJWTBundles(JWTBundlesRequest request, IServerStreamWriter<JWTBundlesResponse> responseStream, ServerCallContext context)
    {
        CheckHeader(context);
        var instance = await AttestAsync(context).ConfigureAwait(false);
        await StreamAsync(context, ct => StreamBundlesAsync(instance, context, (s, entries) =>
        {
            var r = new JWTBundlesResponse();
            r.Bundles.Add(options.TrustDomain.IdString, ByteString.CopyFromUtf8(s.Bundle.JwksJson()));
            foreach (var f in s.FederatedFor(entries))
            {
                r.Bundles[f.TrustDomain.IdString] = ByteString.CopyFromUtf8(f.JwksJson());
            }
            return r.ToByteArray();
        }, bytes => responseStream.WriteAsync(JWTBundlesResponse.Parser.ParseFrom(bytes), ct), ct)).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs a stream until the caller leaves or the agent stops. Open streams never end on their own, so without
    /// this a stopping agent would wait for the host's shutdown timeout (30 s) before exiting; instead they end with
    /// Unavailable, which SPIFFE clients answer by reconnecting with backoff.
    /// </summary>
    internal async Task StreamAsync(ServerCallContext context, Func<CancellationToken, Task> body)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        try
        {
            await body(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (lifetime.ApplicationStopping.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
        }
        if (lifetime.ApplicationStopping.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            throw Refusal(StatusCode.Unavailable, "the agent is shutting down: reconnect with backoff");
        }
    }

    private async Task StreamBundlesAsync(WorkloadInstance instance, ServerCallContext context, Func<AgentSnapshot, IReadOnlyList<Entry>, byte[]> encode, Func<byte[], Task> send, CancellationToken ct)
    {
        byte[]? last = null;
        while (!ct.IsCancellationRequested)
        {
            var generation = state.Changed.Generation;
            var own = instance.Changed.Generation;
            var snapshot = state.Current;
            var entries = Match(instance, Evidence(instance, context), snapshot, context);   // only a workload with an identity may read the bundles
            var bytes = encode(snapshot, entries);
            if (last is null || !bytes.AsSpan().SequenceEqual(last))
            {
                await send(bytes).ConfigureAwait(false);
                last = bytes;
            }
            using var either = CancellationTokenSource.CreateLinkedTokenSource(ct);
            await Task.WhenAny(state.Changed.WaitAsync(generation, either.Token), instance.Changed.WaitAsync(own, either.Token)).ConfigureAwait(false);
            await either.CancelAsync().ConfigureAwait(false);
            // A caller that left ends the loop without an exception (a one-shot fetch leaves after the first message).
        }
    }

    public override async Task<JWTSVIDResponse> FetchJWTSVID(JWTSVIDRequest request, ServerCallContext context)
    {
        CheckHeader(context);
        if (request.Audience.Count == 0 || request.Audience.Any(string.IsNullOrWhiteSpace))
        {
            throw Refusal(StatusCode.InvalidArgument, "audience must be specified (one or more non-empty values)");
        }
        SpiffeId? wanted = null;
        if (request.SpiffeId.Length > 0 && !SpiffeId.TryParse(request.SpiffeId, out wanted, out var err))
        {
            throw Refusal(StatusCode.InvalidArgument, $"spiffe_id '{request.SpiffeId}' is invalid: {err}");
        }
        var instance = await AttestAsync(context).ConfigureAwait(false);
        var entries = Match(instance, Evidence(instance, context), state.Current, context);
        if (wanted is not null)
        {
            var id = wanted.ToString();
            entries = [.. entries.Where(e => e.SpiffeId == id)];
            if (entries.Count == 0)
            {
                refusals.Refused(Evidence(instance, context), WorkloadApiErrorInterceptor.DeniedCode, $"no identity {wanted} issued: the workload asked for an identity none of its entries gives");
                throw Refusal(StatusCode.PermissionDenied, $"no identity {wanted} issued to this workload");
            }
        }
        var response = new JWTSVIDResponse();
        // Every token is bound to the instance's X.509-SVID for its entry: get the missing ones in one signing call.
        await cache.GetX509Async(instance, entries, context.CancellationToken).ConfigureAwait(false);
        WritException? denied = null;
        foreach (var e in entries)
        {
            try
            {
                var jwt = await cache.GetJwtAsync(instance, e, request.Audience, context.CancellationToken).ConfigureAwait(false);
                response.Svids.Add(new JWTSVID { SpiffeId = jwt.SpiffeId, Svid = jwt.Token, Hint = e.Hint });
            }
            catch (WritException ex) when (ex.Kind is WritErrorKind.Unavailable or WritErrorKind.DeadlineExceeded)
            {
                throw Refusal(StatusCode.Unavailable, "the server is unreachable and no cached JWT-SVID is valid; retry with backoff", ex.Code);
            }
            catch (WritException ex) when (ex.Kind is WritErrorKind.PermissionDenied)
            {
                // Refused by policy for this identity: the others are still served; if none is, the first refusal
                // is the answer, in the server's own words (its detail carries the decision id).
                denied ??= ex;
                AgentLog.WorkloadRefused(log, context.Method, ex.Message);
            }
            catch (WritException)
            {
                throw;   // the interceptor gives it its SPIFFE status, with the code in the detail and the trailer
            }
        }
        if (response.Svids.Count == 0 && denied is not null)
        {
            throw denied;
        }
        return response;
    }

    /// <summary>
    /// Validates a JWT-SVID for the calling relying party: signature against the bundle, audience, expiry; then refuses a
    /// revoked jti (the server's deny list, pushed over Sync) and a replay — the same token validated before for another
    /// relying party (see <see cref="JwtReplayGuard"/> for what "relying party" means here), which is also reported to the
    /// server. The caller is attested only after the token passed the cheap checks.
    /// </summary>
    public override async Task<ValidateJWTSVIDResponse> ValidateJWTSVID(ValidateJWTSVIDRequest request, ServerCallContext context)
    {
        CheckHeader(context);
        if (string.IsNullOrEmpty(request.Audience))
        {
            throw Refusal(StatusCode.InvalidArgument, "audience must be specified");
        }
        if (string.IsNullOrEmpty(request.Svid))
        {
            throw Refusal(StatusCode.InvalidArgument, "svid must be specified");
        }
        var validation = new JwtSvidValidationOptions();
        JwtSvid svid;
        ProcessEvidence caller;
        if (JwtSvidValidator.TryReadUnverified(request.Svid, out var claimed, out _) && claimed.Id.TrustDomain != options.TrustDomain)
        {
            (svid, caller) = await ValidateForeignAsync(request, claimed.Id, validation, context).ConfigureAwait(false);
        }
        else
        {
            var result = JwtSvidValidator.Validate(request.Svid, state.Current.Bundle, [request.Audience], time.GetUtcNow(), validation);
            if (!result.IsValid || result.Svid is null)
            {
                throw Refusal(StatusCode.InvalidArgument, $"the JWT-SVID is not valid: {result.Error}");
            }
            svid = result.Svid;
            caller = Evidence(await AttestAsync(context).ConfigureAwait(false), context);
        }
        var now = time.GetUtcNow();
        var peer = JwtReplayGuard.PeerOf(caller, state.Current, now);
        // The server's deny list names tokens of this trust domain only (a foreign domain's jti is not ours to judge).
        if (svid.Jti is { } jti && svid.Id.TrustDomain == options.TrustDomain && state.Revocations.IsJtiRevoked(jti))
        {
            AgentLog.JwtRevokedRefused(log, jti, svid.Id.ToString(), peer);
            throw Refusal(StatusCode.InvalidArgument, "the JWT-SVID was revoked");
        }
        // Relying parties are named by the entries they match: before the first sync the agent cannot name them the way
        // it will afterwards, so nothing is recorded until then (the cache is in memory and starts empty anyway).
        // Only the audience's own relying party is recorded (its SPIFFE ID or DNS name is the audience): any other local
        // process could otherwise "use" a token it has seen first and get the real relying party refused (and the token
        // revoked). Others get the plain validation answer.
        if (state.Synced && peer.StartsWith("spiffe:", StringComparison.Ordinal) && JwtReplayGuard.IsRelyingPartyFor(caller, state.Current, request.Audience, now)
            && guard.Check(svid, peer, request.Audience, now, validation.Leeway).IsReplay)
        {
            throw Refusal(StatusCode.InvalidArgument,
                "the JWT-SVID was already validated for another relying party: refused as a replay (reported to the server)");
        }
        return new ValidateJWTSVIDResponse
        {
            SpiffeId = svid.Id.ToString(),
            Claims = Struct.Parser.ParseJson(svid.Claims.GetRawText()),
        };
    }

    /// <summary>
    /// A JWT-SVID of a foreign trust domain: accepted only by a caller one of whose entries federates with that domain
    /// (as SPIRE serves a workload the bundles of its entries' <c>federates_with</c>), and verified against that domain's
    /// bundle as the server last pushed it — never against ours, so a token claiming the foreign domain but signed by
    /// any other key is refused. The caller is attested first: which domains it may accept depends on who it is.
    /// </summary>
    private async Task<(JwtSvid Svid, ProcessEvidence Caller)> ValidateForeignAsync(ValidateJWTSVIDRequest request, SpiffeId claimed,
        JwtSvidValidationOptions validation, ServerCallContext context)
    {
        var instance = await AttestAsync(context).ConfigureAwait(false);
        var caller = Evidence(instance, context);
        if (!state.Synced)
        {
            throw Refusal(StatusCode.Unavailable, "the agent has not synced its entries with the server yet; retry with backoff");
        }
        var snapshot = state.Current;
        var td = claimed.TrustDomain;
        var federates = Candidates(instance, caller, snapshot)
            .Any(e => e.FederatesWith.Any(n => TrustDomain.TryParse(n, out var t, out _) && t == td));
        if (!federates)
        {
            throw Refusal(StatusCode.InvalidArgument,
                $"the JWT-SVID is of trust domain '{td}', which none of this workload's registration entries federates with: " +
                "add it to the entry's federates_with to accept that domain's tokens", NotFederatedCode);
        }
        if (!snapshot.Federated.TryGetValue(td, out var bundle))
        {
            throw Refusal(StatusCode.Unavailable,
                $"this agent holds no bundle of the federated trust domain '{td}' yet (the server has not fetched it): retry with backoff; " +
                "`writ federation show` says when the server last refreshed it", NoFederatedBundleCode);
        }
        var result = JwtSvidValidator.Validate(request.Svid, bundle, [request.Audience], time.GetUtcNow(), validation);
        if (!result.IsValid || result.Svid is null)
        {
            throw Refusal(StatusCode.InvalidArgument, $"the JWT-SVID is not valid: {result.Error}");
        }
        return (result.Svid, caller);
    }

    /// <summary>ValidateJWTSVID: a foreign JWT-SVID whose trust domain none of the caller's entries federates with.</summary>
    public const string NotFederatedCode = "WRIT-FED-AGENT-NOT-FEDERATED";

    /// <summary>ValidateJWTSVID: the caller federates with the token's trust domain, but the agent holds no bundle of it yet.</summary>
    public const string NoFederatedBundleCode = "WRIT-FED-AGENT-NO-BUNDLE";

    internal static void CheckHeader(ServerCallContext context)
    {
        if (context.RequestHeaders.GetValue(SecurityHeader) != "true")
        {
            throw Refusal(StatusCode.InvalidArgument, $"security header missing from request: send metadata '{SecurityHeader}: true'");
        }
    }

    /// <summary>
    /// The caller's instance. The connection was admitted and its peer pinned — process and executable — when it was
    /// accepted (<see cref="ConnectionGate"/>); every call is charged to the uid's rate. The first call on a connection
    /// (and any call once the instance was last attested a <c>reattest_interval</c> ago, or could not be re-attested)
    /// runs the attestors, and is served only if they found the process and executable pinned at accept (a process
    /// that connected and then exec'd — or whose forked child calls on the socket after the parent exec'd — is
    /// refused). The other calls on the same connection take the cheap path (<see cref="StillSameCaller"/>): the kernel
    /// still names the same peer (SO_PEERCRED) and a pidfd of that peer, opened for the check, says it has not exited —
    /// so it is the process attested before, under the same pid and start time. What it may have changed since (exec,
    /// credentials, cgroup) is caught by the tracker's periodic re-attestation within one interval, as between calls.
    /// </summary>
    internal async Task<WorkloadInstance> AttestAsync(ServerCallContext context)
    {
        var http = context.GetHttpContext();
        var socket = http.Features.Get<IConnectionSocketFeature>()?.Socket
            ?? throw Refusal(StatusCode.Unauthenticated, "the caller's socket is not available for attestation");
        var items = http.Features.Get<IConnectionItemsFeature>()?.Items
            ?? throw Refusal(StatusCode.Unauthenticated, "the connection was not admitted when accepted; reconnect");
        var accepted = Admitted(http, items, context);
        ConnectionMemo? memo;
        lock (items)
        {
            memo = items.TryGetValue(typeof(ConnectionMemo), out var o) ? o as ConnectionMemo : null;
        }
        if (memo is not null && StillSameCaller(memo, socket) is { } known)
        {
            return known;
        }
        var result = await runner.AttestConnectionAsync(socket, context.CancellationToken).ConfigureAwait(false);
        if (result.Evidence is null)
        {
            throw Refusal(StatusCode.Unauthenticated, result.Describe());
        }
        if (!gate.SameProgram(accepted, result.Evidence.Process.Pin, out var changed))
        {
            throw Refusal(StatusCode.Unauthenticated,
                $"{ConnectionGate.CodeExecChanged}: {changed}: a connection serves only the program that opened it; reconnect from the process that calls");
        }
        foreach (var err in result.Evidence.AttestorErrors)
        {
            AgentLog.AttestorFailed(log, err);
        }
        if (log.IsEnabled(LogLevel.Information))
        {
            // The selector list is joined only when the line is written (it was built on every call before).
            AgentLog.WorkloadAttested(log, result.Evidence.Process.Peer.Pid, result.Evidence.Process.Peer.Uid,
                string.Join(' ', result.Evidence.Selectors.Select(s => s.ToString())));
        }
        var instance = tracker.Observe(result.Evidence);
        // The first attested call binds the connection to its instance and epoch; a later call on it that attests as
        // another instance, or after a drift, is refused (see SameEpoch).
        (string Id, long Epoch) binding = (instance.Id, instance.Epoch);
        lock (items)
        {
            if (items.TryGetValue(typeof(ConnectionBinding), out var b) && b is ConnectionBinding bound)
            {
                binding = (bound.InstanceId, bound.Epoch);
            }
            else
            {
                items[typeof(ConnectionBinding)] = new ConnectionBinding(instance.Id, instance.Epoch);
            }
        }
        if (binding.Id != instance.Id || binding.Epoch != instance.Epoch)
        {
            throw Refusal(StatusCode.Unauthenticated,
                "this workload's evidence changed since the connection was attested (executable, uid, gid, cgroup or container): reconnect to be attested again");
        }
        if (memo is not null && memo.Peer == result.Evidence.Process.Peer)
        {
            memo.Instance = instance;
        }
        else if (memo is null && result.Evidence.Process.Peer == instance.Peer)
        {
            lock (items)
            {
                items.TryAdd(typeof(ConnectionMemo), new ConnectionMemo(result.Evidence.Process.Peer, instance));
            }
        }
        return instance;
    }

    /// <summary>
    /// The peer the connection was admitted with, after charging this call to its uid's rate; a connection refused at
    /// accept gets its reason (ResourceExhausted with a stable code) and is closed after this call (GOAWAY).
    /// </summary>
    private AcceptedPeer Admitted(HttpContext http, IDictionary<object, object?> items, ServerCallContext context)
    {
        ConnectionAdmission? admission;
        lock (items)
        {
            admission = items.TryGetValue(typeof(ConnectionAdmission), out var a) ? a as ConnectionAdmission : null;
        }
        if (admission?.Peer is not { } peer)
        {
            if (admission?.RefusalCode == StatusCode.ResourceExhausted)
            {
                http.Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose();
                throw Refusal(StatusCode.ResourceExhausted, admission.Refusal!);   // logged by the gate, at most once per uid per 10 s
            }
            throw Refusal(StatusCode.Unauthenticated, admission?.Refusal ?? "the connection was not admitted when accepted; reconnect");
        }
        if (gate.TakeCall(peer.Peer.Uid) is { } limited)
        {
            throw Refusal(StatusCode.ResourceExhausted, limited);
        }
        return peer;
    }

    /// <summary>The instance and epoch a connection was first attested as.</summary>
    private sealed record ConnectionBinding(string InstanceId, long Epoch);

    /// <summary>What the connection's first attested call left for the next ones: the peer and its instance (no descriptor).</summary>
    private sealed class ConnectionMemo(PeerCredentials peer, WorkloadInstance instance)
    {
        public PeerCredentials Peer { get; } = peer;

        /// <summary>The instance's epoch when the connection was attested: the cheap path serves only that one.</summary>
        public long Epoch { get; } = instance.Epoch;

        private WorkloadInstance _instance = instance;

        public WorkloadInstance Instance
        {
            get => Volatile.Read(ref _instance);
            set => Volatile.Write(ref _instance, value);
        }
    }

    /// <summary>
    /// The cheap path: the instance if the caller is still, per the kernel, the process attested on this connection
    /// and nothing says to attest it again; null to attest in full. The pidfd is opened for this check and closed at
    /// once: an idle connection holds no descriptor but its socket.
    /// </summary>
    private WorkloadInstance? StillSameCaller(ConnectionMemo memo, System.Net.Sockets.Socket socket)
    {
        var instance = memo.Instance;
        if (instance.IsGone || instance.Current.Evidence is null || instance.Epoch != memo.Epoch || time.GetUtcNow() - instance.LastAttested >= tracker.Interval)
        {
            return null;   // attest in full (which refuses a connection whose instance drifted)
        }
        if (!PeerCredentialReader.TryRead(socket, out var peer, out _) || peer != memo.Peer || peer.Pid != instance.Peer.Pid)
        {
            return null;
        }
        if (!PeerProcessHandle.TryOpen(socket, out var pidfd, out _, out _) || pidfd is null)
        {
            return null;   // no pidfd (old kernel, or none to spare): every call attests in full
        }
        using (pidfd)
        {
            return pidfd.HasExited ? null : instance;
        }
    }

    /// <summary>
    /// A stream (or connection) serves the identity its process had when it was attested, never a later one: when the
    /// instance's evidence drifted (exec of another binary, setuid, cgroup move) the epoch moved, and the caller must
    /// reconnect and be attested afresh. Otherwise a process could fork a child that keeps the socket, exec a binary
    /// with another identity, and have the open stream hand that identity's key to the child.
    /// </summary>
    internal void SameEpoch(WorkloadInstance instance, long epoch, ServerCallContext context)
    {
        if (instance.Epoch != epoch)
        {
            throw Refusal(StatusCode.Unauthenticated,
                "this workload's evidence changed since the connection was attested (executable, uid, gid, cgroup or container): reconnect to be attested again");
        }
    }

    /// <summary>The evidence the instance is served from now; an instance that exited or could not be re-attested gets nothing.</summary>
    internal ProcessEvidence Evidence(WorkloadInstance instance, ServerCallContext context)
    {
        if (instance.GoneReason is { } gone)
        {
            throw Refusal(StatusCode.PermissionDenied, $"this workload instance is no longer served ({gone}); reconnect from a live process");
        }
        return instance.Current.Evidence
            ?? throw Refusal(StatusCode.Unauthenticated, "this workload could not be re-attested; reconnect so it is attested again");
    }

    /// <summary>
    /// Entries whose every selector is in the evidence (selectors ⊆ evidence). None → PermissionDenied; but before the
    /// first full sync (an agent restarted while the server is away) the agent cannot know, so → Unavailable.
    /// </summary>
    internal IReadOnlyList<Entry> Match(WorkloadInstance instance, ProcessEvidence evidence, AgentSnapshot snapshot, ServerCallContext context)
    {
        if (!state.Synced)
        {
            throw Refusal(StatusCode.Unavailable, "the agent has not synced its entries with the server yet; retry with backoff");
        }
        var matched = Candidates(instance, evidence, snapshot);
        if (matched.Count == 0)
        {
            refusals.Refused(evidence, WorkloadApiErrorInterceptor.DeniedCode, "no identity issued: no registration entry matches this workload's evidence");
            throw Refusal(StatusCode.PermissionDenied, "no identity issued");
        }
        return matched;
    }

    /// <summary>The unexpired entries whose every selector is in the evidence; none: empty (no refusal, nothing reported).</summary>
    private IReadOnlyList<Entry> Candidates(WorkloadInstance instance, ProcessEvidence evidence, AgentSnapshot snapshot)
    {
        // Which entries' selectors the evidence holds depends only on the snapshot (immutable) and the selectors: kept
        // per instance and reused while both are the same ones; the expiry is checked on every call.
        Entry[] candidates;
        if (instance.MatchMemo is MatchMemo memo && ReferenceEquals(memo.Snapshot, snapshot) && EvidenceDrift.SameSelectors(memo.Selectors, evidence.Selectors))
        {
            candidates = memo.Candidates;
        }
        else
        {
            var have = SelectorMatch.SetOf(evidence.Selectors);
            candidates = [.. snapshot.Entries.Values
                .Where(e => EvidenceProto.Matches(e.Selectors, have))
                .OrderBy(e => e.SpiffeId, StringComparer.Ordinal).ThenBy(e => e.Id, StringComparer.Ordinal)];
            instance.MatchMemo = new MatchMemo(snapshot, evidence.Selectors, candidates);
        }
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        IReadOnlyList<Entry> matched = candidates;
        foreach (var e in candidates)
        {
            if (e.ExpiresAtUnix != 0 && e.ExpiresAtUnix <= now)
            {
                matched = [.. candidates.Where(c => c.ExpiresAtUnix == 0 || c.ExpiresAtUnix > now)];
                break;
            }
        }
        return matched;
    }

    private sealed record MatchMemo(AgentSnapshot Snapshot, IReadOnlyList<Writ.Protocol.Evidence.Selector> Selectors, Entry[] Candidates);

    /// <summary>
    /// Waits for an entry/bundle change, the earliest rotation time of what was sent, or the earliest expiry of a
    /// matched entry (an expired entry must leave the stream when it expires, not at the next unrelated change).
    /// </summary>
    private async Task WaitForChangeAsync(long generation, WorkloadInstance instance, long own, X509ResponseCache.X509View view, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var wakeAt = view.Svids.Min(s => s.RotateAt);
        if (wakeAt <= now)
        {
            // Due but not renewed yet (the server is away): the cache retries with backoff and raises a change when
            // it succeeds; look again in a second rather than asking in a tight loop.
            wakeAt = now + TimeSpan.FromSeconds(1);
        }
        foreach (var d in view.Denials)
        {
            wakeAt = d.RetryAt < wakeAt ? d.RetryAt : wakeAt;   // ask again for a refused entry (policy may have changed)
        }
        foreach (var e in view.Entries)
        {
            if (e.ExpiresAtUnix > 0)
            {
                var expires = DateTimeOffset.FromUnixTimeSeconds(e.ExpiresAtUnix);
                wakeAt = expires < wakeAt ? expires : wakeAt;
            }
        }
        var soonest = wakeAt - now;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var delay = soonest < TimeSpan.FromMilliseconds(100) ? TimeSpan.FromMilliseconds(100) : soonest;
        await Task.WhenAny(state.Changed.WaitAsync(generation, cts.Token), instance.Changed.WaitAsync(own, cts.Token), Task.Delay(delay, time, cts.Token)).ConfigureAwait(false);
        // No throw when the caller left: the stream's loop ends on the token. A one-shot fetch (a workload starting)
        // leaves after the first message, and an exception per call was a cost paid by every such call.
        await cts.CancelAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// A refusal with the status the SPIFFE Workload API prescribes (the interceptor sends it and logs it), as a
    /// <see cref="WritException"/> as a <see cref="WritException"/>: its code is <paramref name="writCode"/>, else the one the reason
    /// already starts with (the connection gate's <c>WRIT-AGENT-CONN-…</c>), else the Workload API's code for the status.
    /// </summary>
    internal static WritException Refusal(StatusCode code, string reason, string? writCode = null)
    {
        var (prefix, message) = WritStatus.Split(reason);
        return new WritException(writCode ?? prefix ?? WorkloadApiErrorInterceptor.CodeFor(code), WorkloadErrors.KindOf(code), prefix is null ? reason : message);
    }
}
