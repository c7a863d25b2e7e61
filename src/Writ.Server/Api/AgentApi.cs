using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Agent;
using Writ.Server.Hosting;
using Writ.Server.Registration;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;
using Selector = Writ.Server.Storage.Selector;
using X509Svid = Writ.Protocol.Agent.X509Svid;

namespace Writ.Server.Api;

/// <summary>
/// The agent API. <c>AttestJoinToken</c> needs only server-authenticated TLS; every other call is authenticated by the
/// agent's X.509-SVID presented as TLS client certificate, checked on every call against the bundle and the node
/// record (banned → PermissionDenied, evicted or superseded → Unauthenticated).
/// </summary>
public sealed partial class AgentApi(ServerContext server, ILogger<AgentApi> log) : AgentService.AgentServiceBase
{
    public const int MaxCsrsPerCall = 500;
    public const int SyncPageBytes = 1 << 20;
    public const int SyncPageEntries = 1000;

    private static readonly string AgentPathPrefix = "/writ/agent/";

    public override async Task<AttestResponse> AttestJoinToken(AttestJoinTokenRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (string.IsNullOrWhiteSpace(request.Token))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "the join token is empty: pass the token printed by 'writ token generate'"));
        }
        var now = server.Time.GetUtcNow();
        // Check the CSR before the token is consumed, so a malformed request does not burn a valid token.
        if (!Csr.TryVerify(request.Csr.Span, out var key, out var csrError))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"the agent CSR was refused: {csrError}"));
        }
        var result = await server.Store.JoinTokens.ConsumeAsync(HashToken(request.Token), now, ct).ConfigureAwait(false);
        if (result.Outcome != JoinTokenOutcome.Consumed || result.Token is null)
        {
            var reason = result.Outcome switch
            {
                JoinTokenOutcome.AlreadyUsed => "join token was already used (tokens are single-use): generate a new one with 'writ token generate'",
                JoinTokenOutcome.Expired => "join token has expired: generate a new one with 'writ token generate'",
                _ => "join token is not known to this server: check the token, or generate one with 'writ token generate'",
            };
            ServerLog.AttestationRefused(log, context.Peer, reason);
            throw new RpcException(new Status(StatusCode.PermissionDenied, reason));
        }
        var token = result.Token;
        var agentId = SpiffeId.FromSegments(server.Options.TrustDomain, "writ", "agent", "join_token", token.Id);
        if (await server.Store.Nodes.GetAsync(agentId.ToString(), ct).ConfigureAwait(false) is { } existing)
        {
            var why = existing.Banned ? "is banned" : "is already attested";
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"agent {agentId} {why}; evict it first ('writ agent evict')"));
        }
        var chain = server.Ca.SignX509Svid(agentId, key, server.Options.AgentTtl);
        var leaf = chain[0];
        var node = new AttestedNode
        {
            SpiffeId = agentId.ToString(),
            AttestationType = "join_token",
            SerialNumber = leaf.SerialNumber,
            ExpiresAt = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()),
            Selectors = [new Selector("join_token", token.Id)],
            Aliases = token.Alias is { Length: > 0 } alias ? [alias] : [],
            CreatedAt = now,
            UpdatedAt = now,
        };
        await server.Store.Nodes.CreateAsync(node, ct).ConfigureAwait(false);
        ServerLog.AgentAttested(log, agentId.ToString(), leaf.SerialNumber);
        return AttestResponseFor(agentId, chain);
    }

    public override async Task<AttestResponse> RenewAgent(RenewAgentRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var key = Issuance.Issuer.VerifyCsr(request.Csr.Span, caller.Id);
        var chain = server.Ca.SignX509Svid(caller.Id, key, server.Options.AgentTtl);
        var leaf = chain[0];
        await server.Store.Nodes.UpdateAsync(caller.Node with
        {
            SerialNumber = leaf.SerialNumber,
            ExpiresAt = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()),
            UpdatedAt = server.Time.GetUtcNow(),
        }, context.CancellationToken).ConfigureAwait(false);
        ServerLog.AgentRenewed(log, caller.Id.ToString(), leaf.SerialNumber);
        return AttestResponseFor(caller.Id, chain);
    }

    public override async Task Sync(SyncRequest request, IServerStreamWriter<SyncUpdate> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var parents = caller.ParentIds;
        var since = request.SinceRevision;
        if (since < 0 || since > await server.Store.Entries.CurrentRevisionAsync(ct).ConfigureAwait(false))
        {
            since = 0;   // the agent is ahead of this store (restored or replaced database): start over with a full state
        }
        long bundleSent = -1;
        System.Numerics.BigInteger crlSent = -1;
        var revocationCursor = since;
        var full = since == 0;   // the first batch is the full state (reset) unless the agent resumes from a revision
        var first = true;
        while (!ct.IsCancellationRequested)
        {
            var generation = server.Changes.Generation;
            var changes = await server.Store.Entries.ChangesSinceAsync(since, parents, ct).ConfigureAwait(false);
            var (revocations, cursor) = await RevocationsForSyncAsync(full || changes.Full, revocationCursor, changes.Revision, ct).ConfigureAwait(false);
            var crl = await server.Revocations.CrlAsync(cursor, ct).ConfigureAwait(false);
            var bundleSeq = server.Ca.BundleSequence;
            var bundleChanged = bundleSeq != bundleSent || crl.Number != crlSent;
            if (first || changes.Upserts.Count > 0 || changes.DeletedIds.Count > 0 || bundleChanged || revocations.Count > 0)
            {
                // The store answers with the whole state when the agent's revision predates pruned deletions:
                // then the agent must drop what it holds (reset), or it would keep entries deleted meanwhile.
                await SendPagesAsync(responseStream, changes, full || changes.Full, bundleChanged ? crl : null, revocations, ct).ConfigureAwait(false);
                bundleSent = bundleSeq;
                crlSent = crl.Number;
            }
            revocationCursor = cursor;
            since = changes.Revision;
            full = false;
            first = false;

            using var wake = CancellationTokenSource.CreateLinkedTokenSource(ct);
            await Task.WhenAny(
                server.Store.Entries.WaitForChangeAsync(changes.Revision, wake.Token),
                server.Changes.WaitAsync(generation, wake.Token),
                CrlRefreshDueAsync(crl, wake.Token)).ConfigureAwait(false);
            await wake.CancelAsync().ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
            caller = await AuthenticateAsync(context).ConfigureAwait(false);   // banned or evicted meanwhile: the stream ends
            parents = caller.ParentIds;
        }
    }

    private async Task SendPagesAsync(IServerStreamWriter<SyncUpdate> stream, EntryChanges changes, bool full, Revocation.CrlSnapshot? withBundle,
        IReadOnlyList<RevocationRecord> revocations, CancellationToken ct)
    {
        var page = NewPage(changes.Revision, full);
        if (withBundle is not null)
        {
            page.Bundle = BundleProto(withBundle);
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
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        if (request.Csrs.Count == 0 || request.Csrs.Count > MaxCsrsPerCall)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"send between 1 and {MaxCsrsPerCall} CSRs per call, got {request.Csrs.Count}"));
        }
        var response = new SignX509SvidsResponse();
        foreach (var csr in request.Csrs)
        {
            var entry = await AuthorizedEntryAsync(caller, csr.EntryId, context.CancellationToken).ConfigureAwait(false);
            var id = SpiffeId.Parse(entry.SpiffeId);
            var (leaf, above) = server.Issuer.SignX509Der(id, csr.Csr.Span, server.Issuer.X509Ttl(entry, server.Time.GetUtcNow()), entry.DnsNames);
            var svid = new X509Svid { EntryId = entry.Id, SpiffeId = entry.SpiffeId, ExpiresAtUnix = leaf.NotAfter.ToUnixTimeSeconds() };
            svid.CertChain.Add(ByteString.CopyFrom(leaf.Der));
            svid.CertChain.AddRange(above.Select(ByteString.CopyFrom));
            response.Svids.Add(svid);
            ServerLog.X509Issued(log, entry.SpiffeId, caller.Id.ToString(), leaf.SerialNumber, leaf.NotAfter);
        }
        return response;
    }

    public override async Task<MintJwtSvidResponse> MintJwtSvid(MintJwtSvidRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var entry = await AuthorizedEntryAsync(caller, request.EntryId, context.CancellationToken).ConfigureAwait(false);
        var audience = CheckAudience(request.Audience);
        var id = SpiffeId.Parse(entry.SpiffeId);
        var (token, exp) = server.Ca.MintJwtSvid(id, audience, server.Issuer.JwtTtl(entry, request.TtlSeconds, server.Time.GetUtcNow()));
        ServerLog.JwtIssued(log, entry.SpiffeId, caller.Id.ToString(), string.Join(",", audience), exp);
        return new MintJwtSvidResponse { SpiffeId = entry.SpiffeId, Token = token, ExpiresAtUnix = exp.ToUnixTimeSeconds() };
    }

    /// <summary>Audiences must be present, non-empty and printable; the wire gives no other guarantee.</summary>
    public static IReadOnlyList<string> CheckAudience(IReadOnlyCollection<string> audience)
    {
        if (audience.Count == 0 || audience.Any(a => a.Length == 0 || a.Length > 512 || a.Any(char.IsControl)))
        {
            throw new ValidationException("a JWT-SVID needs at least one audience, each 1-512 printable characters, e.g. --audience https://api.example.org");
        }
        return [.. audience.Distinct(StringComparer.Ordinal)];
    }

    private async Task<RegistrationEntry> AuthorizedEntryAsync(AgentCaller caller, string entryId, CancellationToken ct)
    {
        var entry = string.IsNullOrEmpty(entryId) ? null : await server.Store.Entries.GetAsync(entryId, ct).ConfigureAwait(false);
        // Unknown and foreign entries get the same answer: an agent learns nothing about entries it may not serve.
        if (entry is null || !caller.ParentIds.Contains(entry.ParentId, StringComparer.Ordinal))
        {
            ServerLog.AgentRefused(log, "sign", $"{caller.Id} asked for entry '{entryId}' it is not authorized for");
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"entry '{entryId}' is not authorized for agent {caller.Id}"));
        }
        if (entry.ExpiresAt is { } exp && exp <= server.Time.GetUtcNow())
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"entry '{entryId}' expired at {exp:u}"));
        }
        return entry;
    }

    private sealed record AgentCaller(SpiffeId Id, AttestedNode Node)
    {
        public IReadOnlyList<string> ParentIds { get; } = [Id.ToString(), .. Node.Aliases];
    }

    private async Task<AgentCaller> AuthenticateAsync(ServerCallContext context)
    {
        var http = context.GetHttpContext();
        var cert = http.Connection.ClientCertificate;
        if (cert is null)
        {
            throw Refuse(context, StatusCode.Unauthenticated, "this call needs the agent's SVID as TLS client certificate: attest with a join token first");
        }
        var validation = X509SvidValidator.Validate([cert, .. server.Ca.Intermediates], server.Ca.Bundle, server.Time.GetUtcNow());
        if (!validation.IsValid || validation.Id is null)
        {
            throw Refuse(context, StatusCode.Unauthenticated, $"the agent certificate was refused: {validation.Error}");
        }
        var id = validation.Id;
        if (!id.Path.StartsWith(AgentPathPrefix, StringComparison.Ordinal))
        {
            throw Refuse(context, StatusCode.PermissionDenied, $"{id} is not an agent identity");
        }
        var node = await server.Store.Nodes.GetAsync(id.ToString(), context.CancellationToken).ConfigureAwait(false);
        if (node is null)
        {
            throw Refuse(context, StatusCode.Unauthenticated, $"agent {id} is not attested (evicted or unknown): re-attest with a new join token");
        }
        if (node.Banned)
        {
            throw Refuse(context, StatusCode.PermissionDenied, $"agent {id} is banned: an admin must evict it ('writ agent evict') before it may attest again");
        }
        if (!string.Equals(node.SerialNumber, cert.SerialNumber, StringComparison.OrdinalIgnoreCase))
        {
            throw Refuse(context, StatusCode.Unauthenticated, $"agent {id} presented a superseded SVID (serial {cert.SerialNumber}): use the latest SVID or re-attest");
        }
        if (server.Revocations.IsSerialRevoked(cert.SerialNumber))
        {
            throw Refuse(context, StatusCode.Unauthenticated, $"agent {id} presented a revoked SVID (serial {cert.SerialNumber}): attest again with a new join token");
        }
        return new AgentCaller(id, node);
    }

    private RpcException Refuse(ServerCallContext context, StatusCode code, string reason)
    {
        ServerLog.AgentRefused(log, context.Method, reason);
        return new RpcException(new Status(code, reason));
    }

    private AttestResponse AttestResponseFor(SpiffeId id, IReadOnlyList<X509Certificate2> chain)
    {
        var r = new AttestResponse { SpiffeId = id.ToString(), Bundle = BundleProto() };
        r.SvidChain.AddRange(chain.Select(c => ByteString.CopyFrom(c.RawData)));
        return r;
    }

    private Bundle BundleProto(Revocation.CrlSnapshot? crl = null) => new()
    {
        TrustDomain = server.Options.TrustDomain.Name,
        SpiffeBundleJson = ByteString.CopyFromUtf8(server.Ca.Bundle.ToSpiffeJson()),
        Sequence = server.Ca.BundleSequence,
        CrlDer = ByteString.CopyFrom((crl ?? server.Revocations.CachedCrl)?.Der ?? []),
    };

    /// <summary>Join tokens are stored only as SHA-256 hashes; the secret itself is never written.</summary>
    public static byte[] HashToken(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token.Trim()));
}
