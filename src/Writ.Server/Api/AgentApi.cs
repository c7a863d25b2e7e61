using System.Security.Cryptography.X509Certificates;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;
using Writ.Server.Hosting;
using Writ.Server.Issuance;
using Writ.Server.NodeAttestation;
using Writ.Server.Policy;
using Writ.Server.Registration;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;
using Selector = Writ.Protocol.Evidence.Selector;
using X509Svid = Writ.Protocol.Agent.X509Svid;

namespace Writ.Server.Api;

/// <summary>
/// The agent API. <c>AttestAgent</c> and <c>AttestJoinToken</c> (node attestation: NodeAttestation/) need only server-authenticated TLS; every other call is authenticated by the
/// agent's X.509-SVID presented as TLS client certificate, checked on every call against the bundle and the node
/// record (banned → PermissionDenied, evicted or superseded → Unauthenticated).
/// </summary>
public sealed partial class AgentApi(ServerContext server, ILogger<AgentApi> log) : AgentService.AgentServiceBase
{
    public const int MaxCsrsPerCall = 500;
    public const int SyncPageBytes = 1 << 20;
    public const int SyncPageEntries = 1000;

    private static readonly string AgentPathPrefix = "/writ/agent/";

    public override async Task AttestAgent(IAsyncStreamReader<AttestAgentRequest> requestStream, IServerStreamWriter<AttestAgentResponse> responseStream,
        ServerCallContext context)
    {
        var ct = context.CancellationToken;
        // Unauthenticated: a caller that opens the stream and sends nothing is cut off after the attestation time limit.
        var timeout = server.NodeAttestation.Limits.Timeout;
        AttestAgentRequest? first;
        using (var firstRead = new CancellationTokenSource(timeout, server.Time))
        using (var readOrLeave = CancellationTokenSource.CreateLinkedTokenSource(ct, firstRead.Token))
        {
            try
            {
                first = await requestStream.MoveNext(readOrLeave.Token).ConfigureAwait(false) ? requestStream.Current : null;
            }
            catch (OperationCanceledException) when (firstRead.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                first = null;
                await RefuseAttestationAsync(new WritException(NodeAttestationCodes.Timeout, WritErrorKind.DeadlineExceeded,
                    $"no attestation request arrived within {timeout.TotalSeconds:0}s of opening the stream: send the params first"), context).ConfigureAwait(false);
            }
        }
        if (first?.Params is not { } p)
        {
            await RefuseAttestationAsync(new WritException(NodeAttestationCodes.BadRequest, WritErrorKind.InvalidArgument,
                "the first AttestAgent request must carry params (attestation type, evidence, CSR): upgrade the agent"), context).ConfigureAwait(false);
            return;
        }
        async Task<ReadOnlyMemory<byte>> Challenge(ReadOnlyMemory<byte> challenge, CancellationToken t)
        {
            await responseStream.WriteAsync(new AttestAgentResponse { Challenge = ByteString.CopyFrom(challenge.Span) }, t).ConfigureAwait(false);
            if (!await requestStream.MoveNext(t).ConfigureAwait(false) || requestStream.Current.StepCase != AttestAgentRequest.StepOneofCase.ChallengeResponse)
            {
                throw new WritException(NodeAttestationCodes.BadRequest, WritErrorKind.InvalidArgument, "the agent did not answer the attestation challenge");
            }
            return requestStream.Current.ChallengeResponse.Memory;
        }
        var r = await server.NodeAttestation.AttestAsync(p.AttestationType, p.Payload.Memory, p.Csr.Memory, Challenge, context.Peer, ct).ConfigureAwait(false);
        await responseStream.WriteAsync(new AttestAgentResponse { Result = AttestResponseFor(r.AgentId, r.Chain, r.DecisionId) }, ct).ConfigureAwait(false);
    }

    /// <summary>A malformed AttestAgent request is a refused attestation too: logged, counted, in the ledger; then thrown.</summary>
    private async Task RefuseAttestationAsync(WritException refusal, ServerCallContext context)
    {
        await server.NodeAttestation.RefusedAsync("unknown", context.Peer, refusal).ConfigureAwait(false);
        throw refusal;
    }

    public override async Task<AttestResponse> AttestJoinToken(AttestJoinTokenRequest request, ServerCallContext context)
    {
        var r = await server.NodeAttestation.AttestAsync(JoinTokenNodeAttestor.TypeName, Encoding.UTF8.GetBytes(request.Token), request.Csr.Memory,
            (_, _) => throw new WritException(NodeAttestationCodes.BadRequest, WritErrorKind.InvalidArgument, "this attestation needs a challenge round: use AttestAgent"),
            context.Peer, context.CancellationToken).ConfigureAwait(false);
        return AttestResponseFor(r.AgentId, r.Chain, r.DecisionId);
    }

    public override async Task<AttestResponse> RenewAgent(RenewAgentRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var key = Issuance.Issuer.VerifyCsr(request.Csr.Span, caller.Id);
        var r = await server.NodeAttestation.RenewAsync(caller.Node, key, context.CancellationToken).ConfigureAwait(false);
        return AttestResponseFor(r.AgentId, r.Chain, r.DecisionId);
    }

    public override async Task Sync(SyncRequest request, IServerStreamWriter<SyncUpdate> responseStream, ServerCallContext context)
    {
        // The stream also ends when the server stops: the agent reconnects (to the next server) instead of holding the
        // shutdown until the host's timeout cuts it.
        using var callOrStop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, server.Stopping);
        try
        {
            await SyncUntilCancelledAsync(request, responseStream, context, callOrStop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (server.Stopping.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            throw new WritException(AgentApiErrors.ServerStopping, WritErrorKind.Unavailable, "the server is stopping: reconnect");
        }
    }

    private async Task SyncUntilCancelledAsync(SyncRequest request, IServerStreamWriter<SyncUpdate> responseStream, ServerCallContext context, CancellationToken ct)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var parents = caller.ParentIds;
        var since = request.SinceRevision;
        if (since < 0 || since > await server.Store.Entries.CurrentRevisionAsync(ct).ConfigureAwait(false))
        {
            since = 0;   // the agent is ahead of this store (restored or replaced database): start over with a full state
        }
        // sync.fanout shared (issue #16): after the first batch, changes come from the server's one feed, sliced by
        // this agent's parents in memory; per_stream (or a stream outside the feed's window) reads the store itself.
        var feed = server.Options.SharedSyncFeed ? server.SyncFeed : null;
        feed?.EnsureStarted();
        var epoch = feed?.Epoch ?? 0;
        long bundleSent = -1;
        System.Numerics.BigInteger crlSent = -1;
        long otherCrlsSent = -1;
        var revocationCursor = since;
        var full = since == 0;   // the first batch is the full state (reset) unless the agent resumes from a revision
        var first = true;
        long woke = 0;
        var recheckSignal = server.Posture.SignalFor(caller.Id.ToString());
        string? recheckSent = null;
        ActivePolicy? policySent = null;
        long federatedSent = -1;
        // Shared: the stream's certificate chain is verified again only when the bundle moved, the certificate nears its
        // end, or a minute passed; the node, ban and revocation checks run on every wake.
        var certificateCheck = new StreamCertificateCheck();
        // The stream's own wake-up, poked by every signal it follows and by the CRL's refresh time: a thousand streams
        // waiting on one shared task would contend on its continuation list at every change (issue #16 fan-out).
        var wake = new Sync.StreamWake();
        void Poke() => wake.Poke();
        using var onStop = ct.Register(wake.Poke);
        using var onFeed = feed?.Advanced.Subscribe(Poke);
        using var onChanges = server.Changes.Subscribe(Poke);
        using var onRecheck = recheckSignal.Subscribe(Poke);
        using var onActivated = server.Policy.Activated.Subscribe(Poke);
        using var onPushed = server.PolicyChanged.Subscribe(Poke);
        var crlFired = 0;
        using var crlDue = server.Time.CreateTimer(_ =>
        {
            Volatile.Write(ref crlFired, 1);
            Poke();
        }, null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        Revocation.CrlSnapshot? crlTimed = null;
        while (!ct.IsCancellationRequested)
        {
            // Drained before anything is read: a signal raised from here on wakes the wait below at once.
            wake.Drain();
            // The call policy (request-time decisions): in the first update, then whenever another version becomes active.
            var policy = await server.Policy.CurrentAsync(ct).ConfigureAwait(false);
            var callPolicy = ReferenceEquals(policy, policySent) ? null : CallPolicyOf(policy);
            EntryChanges changes;
            IReadOnlyList<RevocationRecord> revocations;
            long cursor;
            if (full || feed is null || !feed.TrySlice(since, revocationCursor, parents, epoch, server.Time.GetUtcNow(), out changes, out revocations, out cursor))
            {
                changes = await server.Store.Entries.ChangesSinceAsync(since, parents, ct).ConfigureAwait(false);
                (revocations, cursor) = await RevocationsForSyncAsync(full || changes.Full, revocationCursor, changes.Revision, ct).ConfigureAwait(false);
                if (feed is not null && changes.Full)
                    epoch = feed.Epoch;   // a reset catches up with a restored store: the feed's window is good again
            }
            var crl = await server.Revocations.CrlAsync(cursor, ct).ConfigureAwait(false);
            var bundleSeq = server.Ca.BundleSequence;
            var bundleChanged = bundleSeq != bundleSent || crl.Number != crlSent || crl.OtherServersVersion != otherCrlsSent;
            var federated = FederatedBundlesForSync(federatedSent);
            if (first || changes.Upserts.Count > 0 || changes.DeletedIds.Count > 0 || bundleChanged || revocations.Count > 0 || callPolicy is not null || federated is not null)
            {
                // The store answers with the whole state when the agent's revision predates pruned deletions:
                // then the agent must drop what it holds (reset), or it would keep entries deleted meanwhile.
                await SendPagesAsync(responseStream, changes, full || changes.Full, bundleChanged ? crl : null, revocations, ct, callPolicy, federated).ConfigureAwait(false);
                if (woke != 0)
                    server.Metrics.SyncPushed(System.Diagnostics.Stopwatch.GetElapsedTime(woke));
                bundleSent = bundleSeq;
                crlSent = crl.Number;
                otherCrlsSent = crl.OtherServersVersion;
                policySent = policy;
                federatedSent = federated?.Version ?? federatedSent;
            }
            revocationCursor = cursor;
            since = changes.Revision;
            full = false;
            first = false;
            // Continuous attestation: the node's outstanding recheck, once (a reconnected agent gets it again).
            if (server.Posture.Pending(caller.Id.ToString()) is { } recheck && recheck.Id != recheckSent)
            {
                await responseStream.WriteAsync(new SyncUpdate { Revision = since, NodeRecheck = recheck }, ct).ConfigureAwait(false);
                recheckSent = recheck.Id;
            }

            if (!ReferenceEquals(crl, crlTimed) || Interlocked.Exchange(ref crlFired, 0) == 1)
            {
                // A new CRL, or the timer fired (the CRL may not be re-signed yet: it fires again, at least a second later).
                // No wall-clock comparison: a timer may fire a little before the wall-clock deadline.
                crlDue.Change(CrlRefreshDue(crl), Timeout.InfiniteTimeSpan);
                crlTimed = crl;
            }
            if (feed is null)
            {
                // per_stream: the store's own revision watch as well.
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
                await Task.WhenAny(server.Store.Entries.WaitForChangeAsync(changes.Revision, stop.Token), wake.WaitAsync()).ConfigureAwait(false);
                await stop.CancelAsync().ConfigureAwait(false);
            }
            else
            {
                await wake.WaitAsync().ConfigureAwait(false);
            }
            woke = System.Diagnostics.Stopwatch.GetTimestamp();
            ct.ThrowIfCancellationRequested();
            try
            {
                // Banned, evicted or revoked meanwhile: the stream ends. Shared: the node records are read once per
                // change (feed advance or node announcement) for every stream woken by it.
                var freshness = feed?.Freshness() ?? default;
                caller = await AuthenticateAsync(context, feed is null ? null : (id, t) => feed.NodeAsync(id, freshness, t), feed is null ? null : certificateCheck).ConfigureAwait(false);
            }
            catch (WritException)
            {
                // ...but first the revocations that came with it (a ban, a drifted node's revoke) reach the agent, which
                // drops those SVIDs from its workloads at once instead of serving them until they expire.
                var (last, _) = await RevocationsForSyncAsync(false, revocationCursor, since, ct).ConfigureAwait(false);
                if (last.Count > 0)
                {
                    await SendPagesAsync(responseStream, new EntryChanges(since, [], []), false, null, last, ct).ConfigureAwait(false);
                }
                throw;
            }
            parents = caller.ParentIds;
        }
    }

    public override async Task<AnswerNodeRecheckResponse> AnswerNodeRecheck(AnswerNodeRecheckRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var status = await server.Posture.AnswerAsync(caller.Node, request.Id, request.Payload.Memory, context.CancellationToken).ConfigureAwait(false);
        return new AnswerNodeRecheckResponse { NodeStatus = status == NodeStatus.Drifted ? "drifted" : "active" };
    }

    private async Task SendPagesAsync(IServerStreamWriter<SyncUpdate> stream, EntryChanges changes, bool full, Revocation.CrlSnapshot? withBundle,
        IReadOnlyList<RevocationRecord> revocations, CancellationToken ct, CallPolicy? callPolicy = null, FederatedBundlesUpdate? federated = null)
    {
        var page = NewPage(changes.Revision, full);
        AttachFederatedBundles(page, federated);
        if (withBundle is not null)
        {
            page.Bundle = BundleProto(withBundle);
        }
        if (callPolicy is not null)
        {
            page.CallPolicy = callPolicy;
        }
        var size = page.CalculateSize();
        foreach (var e in changes.Upserts)
        {
            var p = EntryMapping.ToProto(e);
            var s = p.CalculateSize() + 8;
            if (page.Upserts.Count > 0 && (size + s > SyncPageBytes || page.Upserts.Count >= SyncPageEntries))
            {
                await stream.WriteAsync(page, ct).ConfigureAwait(false);
                page = NewPage(changes.Revision, reset: false);
                size = 0;
            }
            page.Upserts.Add(p);
            size += s;
        }
        foreach (var id in changes.DeletedIds)
        {
            if (size + id.Length + 8 > SyncPageBytes)
            {
                await stream.WriteAsync(page, ct).ConfigureAwait(false);
                page = NewPage(changes.Revision, reset: false);
                size = 0;
            }
            page.DeletedEntryIds.Add(id);
            size += id.Length + 8;
        }
        foreach (var r in revocations)
        {
            var p = Revocation.RevocationMapping.ToProto(r);
            var s = p.CalculateSize() + 8;
            if (size + s > SyncPageBytes || page.Revocations.Count >= SyncPageEntries)
            {
                await stream.WriteAsync(page, ct).ConfigureAwait(false);
                page = NewPage(changes.Revision, reset: false);
                size = 0;
            }
            page.Revocations.Add(p);
            size += s;
        }
        page.PageEnd = true;
        await stream.WriteAsync(page, ct).ConfigureAwait(false);
    }

    private static SyncUpdate NewPage(long revision, bool reset) => new() { Revision = revision, Reset = reset };

    public override async Task<SignX509SvidsResponse> SignX509Svids(SignX509SvidsRequest request, ServerCallContext context)
    {
        var caller = NotQuarantined(await AuthenticateAsync(context).ConfigureAwait(false), context);
        if (request.Csrs.Count == 0 || request.Csrs.Count > MaxCsrsPerCall)
        {
            throw new WritException(AgentApiErrors.BadRequest, WritErrorKind.InvalidArgument, $"send between 1 and {MaxCsrsPerCall} CSRs per call, got {request.Csrs.Count}");
        }
        var max = server.Options.Ledger.MaxRequestBytes;
        // An oversized CSR (its evidence) is refused alone: it never reaches the policy or the ledger.
        var requests = request.Csrs.Select(c => c.CalculateSize() is var size && size > max
            ? new X509SvidRequest(c.EntryId, ReadOnlyMemory<byte>.Empty, null, TooLarge("this CSR with its evidence", size, max), EchoableId(c.Evidence?.InstanceId ?? ""), IssuanceErrors.TooLarge)
            : ToRequest(c.EntryId, c.Csr, c.Evidence)).ToList();
        var batch = await Pipeline.SignX509Async(caller.Node, requests, context.CancellationToken).ConfigureAwait(false);
        var response = new SignX509SvidsResponse();
        foreach (var i in batch.Issued)
        {
            var svid = new X509Svid { EntryId = i.Entry.Id, SpiffeId = i.Entry.SpiffeId, ExpiresAtUnix = i.Leaf.NotAfter.ToUnixTimeSeconds(), DecisionId = i.DecisionId, InstanceId = i.InstanceId };
            svid.CertChain.Add(ByteString.CopyFrom(i.Leaf.Der));
            svid.CertChain.AddRange(i.ChainAboveLeaf.Select(ByteString.CopyFrom));
            response.Svids.Add(svid);
        }
        foreach (var d in batch.Denials)
        {
            response.Denials.Add(new SvidDenial { EntryId = d.EntryId, InstanceId = d.InstanceId, DecisionId = d.DecisionId ?? "", Reason = d.Reason, Code = d.Code, ErrorCode = d.ErrorCode });
        }
        return response;
    }

    public override async Task<MintJwtSvidResponse> MintJwtSvid(MintJwtSvidRequest request, ServerCallContext context)
    {
        var caller = NotQuarantined(await AuthenticateAsync(context).ConfigureAwait(false), context);
        var limits = server.Options.Ledger;
        if (request.CalculateSize() is var size && size > limits.MaxRequestBytes)
        {
            throw new Writ.Protocol.Errors.WritException(IssuanceErrors.TooLarge, Writ.Protocol.Errors.WritErrorKind.InvalidArgument, TooLarge("the JWT-SVID request", size, limits.MaxRequestBytes));
        }
        var entry = await AuthorizedEntryAsync(caller, request.EntryId, context.CancellationToken).ConfigureAwait(false);
        var audience = CheckAudience(request.Audience, limits.MaxAudiences);
        var evidence = ToRequest(entry.Id, ByteString.Empty, request.Evidence);
        if (evidence.EvidenceError is { } bad)
        {
            throw new Writ.Protocol.Errors.WritException(IssuanceErrors.BadEvidence, Writ.Protocol.Errors.WritErrorKind.InvalidArgument, bad);
        }
        if (request.BoundCertSha256.Length is not (0 or 32))
        {
            throw new WritException(AgentApiErrors.BadRequest, WritErrorKind.InvalidArgument, "bound_cert_sha256 must be the 32-byte SHA-256 of the instance's X.509-SVID leaf DER, or empty");
        }
        var bound = request.Bearer || request.BoundCertSha256.Length == 0 ? null : request.BoundCertSha256.ToByteArray();
        var outcome = await Pipeline.MintJwtAsync(caller.Node, entry, evidence.Evidence, audience, request.TtlSeconds, bound, context.CancellationToken).ConfigureAwait(false);
        if (outcome.Token is null)
        {
            throw new Writ.Protocol.Errors.WritException(IssuanceErrors.Denied, Writ.Protocol.Errors.WritErrorKind.PermissionDenied, outcome.Decision.DeniedDetail);
        }
        return new MintJwtSvidResponse
        {
            SpiffeId = entry.SpiffeId,
            Token = outcome.Token,
            ExpiresAtUnix = outcome.ExpiresAt.ToUnixTimeSeconds(),
            DecisionId = outcome.Decision.Id,
            Jti = outcome.Jti ?? "",
        };
    }

    /// <summary>Issue #16 item 5: pooled X.509-SVIDs for the agent's outage pool of one entry (IssuancePipeline.SignPooledX509Async).</summary>
    public override async Task<SignPooledX509SvidsResponse> SignPooledX509Svids(SignPooledX509SvidsRequest request, ServerCallContext context)
    {
        var caller = NotQuarantined(await AuthenticateAsync(context).ConfigureAwait(false), context);
        if (request.CalculateSize() is var size && size > server.Options.Ledger.MaxRequestBytes)
        {
            throw new WritException(IssuanceErrors.TooLarge, WritErrorKind.InvalidArgument, TooLarge("the pooled SVID request", size, server.Options.Ledger.MaxRequestBytes));
        }
        var issued = await Pipeline.SignPooledX509Async(caller.Node, request.EntryId, [.. request.Csrs.Select(c => c.Memory)], context.CancellationToken).ConfigureAwait(false);
        var response = new SignPooledX509SvidsResponse();
        foreach (var i in issued)
        {
            var svid = new X509Svid { EntryId = i.Entry.Id, SpiffeId = i.Entry.SpiffeId, ExpiresAtUnix = i.Leaf.NotAfter.ToUnixTimeSeconds(), DecisionId = i.DecisionId };
            svid.CertChain.Add(ByteString.CopyFrom(i.Leaf.Der));
            svid.CertChain.AddRange(i.ChainAboveLeaf.Select(ByteString.CopyFrom));
            response.Svids.Add(svid);
        }
        return response;
    }

    /// <summary>Issue #16 item 5: the agent handed pooled SVIDs to instances during an outage (idempotent by serial).</summary>
    public override async Task<ReportPooledSvidUsedResponse> ReportPooledSvidUsed(ReportPooledSvidUsedRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        if (request.Uses.Count is 0 or > MaxCsrsPerCall || request.Uses.Any(u => u.InstanceId.Length > 256 || u.SelectorsSha256.Length > 64 || u.SerialHex.Length > 128))
        {
            throw new WritException(AgentApiErrors.BadRequest, WritErrorKind.InvalidArgument, $"send between 1 and {MaxCsrsPerCall} pooled SVID uses per call, each with a short serial, instance id and selectors digest");
        }
        var uses = request.Uses.Select(u => new PooledUse(u.SerialHex, u.EntryId, u.InstanceId, u.Pid, u.Uid, u.SelectorsSha256,
            u.UsedAtUnix > 0 ? DateTimeOffset.FromUnixTimeSeconds(Math.Min(u.UsedAtUnix, server.Time.GetUtcNow().ToUnixTimeSeconds())) : server.Time.GetUtcNow())).ToList();
        var acked = await Pipeline.RecordPooledUsesAsync(caller.Node, uses, context.CancellationToken).ConfigureAwait(false);
        var response = new ReportPooledSvidUsedResponse();
        response.AcknowledgedSerials.AddRange(acked);
        return response;
    }

    private IssuancePipeline Pipeline => _pipeline ??= new IssuancePipeline(server, log);

    private IssuancePipeline? _pipeline;

    /// <summary>The wire request as the pipeline's input; evidence that breaks the rules is carried as an error.</summary>
    private static X509SvidRequest ToRequest(string entryId, ByteString csr, AttestedWorkload? evidence)
    {
        if (evidence is null)
        {
            return new X509SvidRequest(entryId, csr.Memory, null);
        }
        return Writ.Protocol.Evidence.EvidenceProto.TryFromProto(evidence, out var ev, out var error)
            ? new X509SvidRequest(entryId, csr.Memory, ev)
            : new X509SvidRequest(entryId, csr.Memory, null, error, EchoableId(evidence.InstanceId));
    }

    /// <summary>An instance id as sent, for echoing in a denial: short and printable, else nothing.</summary>
    private static string? EchoableId(string id) => id.Length is > 0 and <= 64 && id.All(c => c is >= '!' and <= '~') ? id : null;

    /// <summary>Audiences must be present, non-empty and printable, and at most <paramref name="maxAudiences"/> (issuance.max_audiences) distinct ones.</summary>
    public static IReadOnlyList<string> CheckAudience(IReadOnlyCollection<string> audience, int maxAudiences = int.MaxValue)
    {
        if (audience.Count == 0 || audience.Any(a => a.Length == 0 || a.Length > 512 || a.Any(char.IsControl)))
        {
            throw new ValidationException("a JWT-SVID needs at least one audience, each 1-512 printable characters, e.g. --audience https://api.example.org");
        }
        IReadOnlyList<string> distinct = [.. audience.Distinct(StringComparer.Ordinal)];
        if (distinct.Count > maxAudiences)
        {
            throw new ValidationException($"a JWT-SVID may name at most {maxAudiences} audiences (issuance.max_audiences), got {distinct.Count}: ask for one token per relying party");
        }
        return distinct;
    }

    private static string TooLarge(string what, int size, int max) =>
        $"{what} is {size} bytes, more than issuance.max_request_bytes ({max}): send fewer or shorter audiences and evidence";

    private async Task<RegistrationEntry> AuthorizedEntryAsync(AgentCaller caller, string entryId, CancellationToken ct)
    {
        var entry = string.IsNullOrEmpty(entryId) ? null : await server.Store.Entries.GetAsync(entryId, ct).ConfigureAwait(false);
        // Unknown and foreign entries get the same answer: an agent learns nothing about entries it may not serve.
        if (entry is null || !caller.ParentIds.Contains(entry.ParentId, StringComparer.Ordinal))
        {
            ServerLog.AgentRefused(log, "sign", $"{caller.Id} asked for entry '{entryId}' it is not authorized for");
            throw new Writ.Protocol.Errors.WritException(IssuanceErrors.EntryUnauthorized, Writ.Protocol.Errors.WritErrorKind.PermissionDenied, $"entry '{entryId}' is not authorized for agent {caller.Id}");
        }
        if (entry.ExpiresAt is { } exp && exp <= server.Time.GetUtcNow())
        {
            throw new Writ.Protocol.Errors.WritException(IssuanceErrors.Denied, Writ.Protocol.Errors.WritErrorKind.PermissionDenied, $"entry '{entryId}' expired at {exp:u}");
        }
        return entry;
    }

    private sealed record AgentCaller(SpiffeId Id, AttestedNode Node)
    {
        public IReadOnlyList<string> ParentIds { get; } = [Id.ToString(), .. Node.Aliases];
    }

    /// <param name="nodeLookup">How to read the agent's node record (the shared sync feed's snapshot); null: from the store.</param>
    private async Task<AgentCaller> AuthenticateAsync(ServerCallContext context, Func<string, CancellationToken, Task<AttestedNode?>>? nodeLookup = null,
        StreamCertificateCheck? streamCheck = null)
    {
        var http = context.GetHttpContext();
        var cert = http.Connection.ClientCertificate;
        if (cert is null)
        {
            throw Refuse(context, AgentApiErrors.NoCertificate, WritErrorKind.Unauthenticated, "this call needs the agent's SVID as TLS client certificate: attest with a join token first");
        }
        var now = server.Time.GetUtcNow();
        // Read once: the verification and its cache key are of the same bundle and intermediates.
        var bundle = server.Ca.Bundle;
        var intermediates = server.Ca.Intermediates;
        SpiffeId id;
        if (streamCheck?.StillValid(bundle, intermediates, now) is { } checkedId)
        {
            id = checkedId;   // the same certificate, verified against these very authorities less than a minute ago
        }
        else
        {
            var validation = X509SvidValidator.Validate([cert, .. intermediates], bundle, now);
            if (!validation.IsValid || validation.Id is null)
            {
                throw Refuse(context, AgentApiErrors.CertificateRefused, WritErrorKind.Unauthenticated, $"the agent certificate was refused: {validation.Error}");
            }
            id = validation.Id;
            streamCheck?.Validated(id, bundle, intermediates, now, cert.NotAfter.ToUniversalTime());
        }
        if (!id.Path.StartsWith(AgentPathPrefix, StringComparison.Ordinal))
        {
            var refusal = Refuse(context, AgentApiErrors.NotAnAgent, WritErrorKind.PermissionDenied, $"{id} is not an agent identity");
            // A CI job's SVID used as an agent's is a misuse worth a ledger record (docs/ci.md).
            if (await server.Store.CiSessions.GetBySerialAsync(cert.SerialNumber, context.CancellationToken).ConfigureAwait(false) is not null)
                await server.CiRefusals.CallRefusedAsync(context.Method, id.ToString(), cert.SerialNumber, context.Peer, refusal).ConfigureAwait(false);
            throw refusal;
        }
        var node = await (nodeLookup is null ? server.Store.Nodes.GetAsync(id.ToString(), context.CancellationToken) : nodeLookup(id.ToString(), context.CancellationToken)).ConfigureAwait(false);
        if (nodeLookup is not null && (node is null || node.Banned || !string.Equals(node.SerialNumber, cert.SerialNumber, StringComparison.OrdinalIgnoreCase)))
        {
            // The shared read may predate this agent's enrolment or renewal: a refusal is only ever made on the store's word.
            node = await server.Store.Nodes.GetAsync(id.ToString(), context.CancellationToken).ConfigureAwait(false);
        }
        if (streamCheck is not null && server.SyncFeed.Head is var head and >= 0)
        {
            // Revocations up to what the stream is about to send (a ban's revocation may be in it): loaded before the check.
            await server.Revocations.EnsureCurrentAsync(head, context.CancellationToken).ConfigureAwait(false);
        }
        if (node is null)
        {
            throw Refuse(context, AgentApiErrors.NotAttested, WritErrorKind.Unauthenticated, $"agent {id} is not attested (evicted or unknown): re-attest with a new join token");
        }
        if (node.Banned)
        {
            throw Refuse(context, NodeAttestationCodes.AgentBanned, WritErrorKind.PermissionDenied, $"agent {id} is banned: an admin must evict it ('writ agent evict') before it may attest again");
        }
        if (!string.Equals(node.SerialNumber, cert.SerialNumber, StringComparison.OrdinalIgnoreCase))
        {
            throw Refuse(context, NodeAttestationCodes.AgentSuperseded, WritErrorKind.Unauthenticated, $"agent {id} presented a superseded SVID (serial {cert.SerialNumber}): use the latest SVID or re-attest");
        }
        if (server.Revocations.IsSerialRevoked(cert.SerialNumber))
        {
            throw Refuse(context, AgentApiErrors.Revoked, WritErrorKind.Unauthenticated, $"agent {id} presented a revoked SVID (serial {cert.SerialNumber}): attest again with a new join token");
        }
        return new AgentCaller(id, node);
    }

    /// <summary>A drifted node gets no new SVIDs (quarantine); its Sync stream and recheck answers stay open.</summary>
    private AgentCaller NotQuarantined(AgentCaller caller, ServerCallContext context)
    {
        if (caller.Node.Status != NodeStatus.Drifted)
            return caller;
        var refusal = NodeAttestationService.Quarantined(caller.Node);
        ServerLog.AgentRefused(log, context.Method, refusal.Message);
        throw refusal;
    }

    private WritException Refuse(ServerCallContext context, string code, WritErrorKind kind, string reason)
    {
        ServerLog.AgentRefused(log, context.Method, reason);
        return new WritException(code, kind, reason);
    }

    private AttestResponse AttestResponseFor(SpiffeId id, IReadOnlyList<X509Certificate2> chain, string decisionId)
    {
        var r = new AttestResponse { SpiffeId = id.ToString(), Bundle = BundleProto(), DecisionId = decisionId };
        r.SvidChain.AddRange(chain.Select(c => ByteString.CopyFrom(c.RawData)));
        return r;
    }

    private Bundle BundleProto(Revocation.CrlSnapshot? crl = null)
    {
        crl ??= server.Revocations.CachedCrl;
        var bundle = new Bundle
        {
            TrustDomain = server.Options.TrustDomain.Name,
            SpiffeBundleJson = ByteString.CopyFromUtf8(server.Ca.Bundle.ToSpiffeJson()),
            Sequence = server.Ca.BundleSequence,
            CrlDer = ByteString.CopyFrom(crl?.Der ?? []),
        };
        bundle.RetiredCrlDer.AddRange(crl?.Retired.Select(r => ByteString.CopyFrom(r.Der)) ?? []);
        bundle.OtherServerCrlDer.AddRange(crl?.OtherServers.Select(ByteString.CopyFrom) ?? []);
        return bundle;
    }

    /// <summary>Join tokens are stored only as SHA-256 hashes; the secret itself is never written.</summary>
    public static byte[] HashToken(string token) => JoinTokenNodeAttestor.HashToken(token);
}

/// <summary>
/// One Sync stream's last verification of its agent's certificate chain: reused while the trust bundle and intermediates are the same, the
/// certificate is unexpired and less than <see cref="MaxAge"/> has passed, so a change fanned out to many streams does
/// not verify every stream's chain again (issue #16).
/// </summary>
internal sealed class StreamCertificateCheck
{
    public static readonly TimeSpan MaxAge = TimeSpan.FromMinutes(1);

    private SpiffeId? _id;
    private object? _bundle;
    private object? _intermediates;
    private DateTimeOffset _until;

    /// <summary>The verified id, while the bundle and the intermediates are the very objects it was verified against (the CA replaces them whole on any change).</summary>
    public SpiffeId? StillValid(object bundle, object intermediates, DateTimeOffset now) =>
        _id is not null && ReferenceEquals(bundle, _bundle) && ReferenceEquals(intermediates, _intermediates) && now < _until ? _id : null;

    public void Validated(SpiffeId id, object bundle, object intermediates, DateTimeOffset now, DateTime notAfterUtc)
    {
        _id = id;
        _bundle = bundle;
        _intermediates = intermediates;
        var notAfter = new DateTimeOffset(notAfterUtc, TimeSpan.Zero);
        _until = now + MaxAge < notAfter ? now + MaxAge : notAfter;
    }
}
