using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Admin;
using Writ.Server.Hosting;
using Writ.Server.Issuance;
using Writ.Server.Ledger;
using Writ.Server.Registration;
using Writ.Server.Storage;
using Writ.Spiffe;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using Writ.Protocol.Evidence;

namespace Writ.Server.Api;

/// <summary>
/// The admin API, served only on the owner-only admin Unix socket (peer uid checked by the kernel's SO_PEERCRED).
/// Every write is validated in full before the store is touched; batch creation is all or nothing.
/// </summary>
public sealed partial class AdminApi(ServerContext server, ILogger<AdminApi> log) : AdminService.AdminServiceBase
{
    public const int MaxJoinTokenTtlSeconds = 30 * 24 * 3600;
    public const int MaxBatch = 10_000;

    public override async Task<CreateJoinTokenResponse> CreateJoinToken(CreateJoinTokenRequest request, ServerCallContext context)
    {
        if (request.TtlSeconds < 0 || request.TtlSeconds > MaxJoinTokenTtlSeconds)
        {
            throw new ValidationException($"join token TTL must be between 1s and 30d, got {request.TtlSeconds}s");
        }
        string? alias = null;
        if (request.Alias.Length > 0)
        {
            var id = ParseId(request.Alias, "alias");
            if (EntryValidator.IsReserved(id))
            {
                throw new ValidationException($"alias '{id}' is in the reserved /writ/ namespace: choose another path, e.g. spiffe://{server.Options.TrustDomain.Name}/node/group-a");
            }
            alias = id.ToString();
        }
        var now = server.Time.GetUtcNow();
        var ttl = request.TtlSeconds > 0 ? TimeSpan.FromSeconds(request.TtlSeconds) : server.Options.JoinTokenTtl;
        var secret = Base64Url(RandomNumberGenerator.GetBytes(32));
        var tokenId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var token = new JoinToken(tokenId, AgentApi.HashToken(secret), now + ttl, alias, now);
        var agentId = SpiffeId.FromSegments(server.Options.TrustDomain, "writ", "agent", "join_token", tokenId).ToString();
        await server.Store.JoinTokens.CreateAsync(token, context.CancellationToken, [LedgerEvents.JoinToken(AdminCaller.Of(context), token, agentId)]).ConfigureAwait(false);
        ServerLog.JoinTokenCreated(log, tokenId, token.ExpiresAt, alias ?? "-");
        return new CreateJoinTokenResponse
        {
            Token = secret,
            TokenId = tokenId,
            AgentSpiffeId = agentId,
            ExpiresAtUnix = token.ExpiresAt.ToUnixTimeSeconds(),
        };
    }

    public override async Task<CreateEntriesResponse> CreateEntries(CreateEntriesRequest request, ServerCallContext context)
    {
        if (request.Entries.Count > MaxBatch)
        {
            throw new ValidationException($"{request.Entries.Count} entries in one call is more than {MaxBatch}: split the file");
        }
        // Ids are drawn here so each entry.created record can name its entry; the store writes both in one transaction.
        var entries = request.Entries.Select(e => EntryMapping.FromProto(e) with { Id = Guid.CreateVersion7().ToString(), Revision = 0 }).ToList();
        server.Validator.CheckAll(entries, request.AllowUnknownSelectorType);
        OutagePoolRules.Check(entries);
        await CheckFederatesWithAsync(entries, context.CancellationToken).ConfigureAwait(false);
        var actor = AdminCaller.Of(context);
        var created = await server.Store.Entries.CreateAsync(entries, context.CancellationToken,
            [.. entries.Select(e => LedgerEvents.Entry(LedgerEvents.EntryCreated, actor, e))]).ConfigureAwait(false);
        ServerLog.EntriesCreated(log, created.Count, created[0].Id, created[0].SpiffeId);
        var response = new CreateEntriesResponse();
        response.Entries.AddRange(created.Select(EntryMapping.ToProto));
        return response;
    }

    public override async Task<ProtoEntry> GetEntry(GetEntryRequest request, ServerCallContext context)
    {
        var entry = await server.Store.Entries.GetAsync(request.Id, context.CancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException($"entry '{request.Id}' does not exist; list entries with 'writ entry list'");
        return EntryMapping.ToProto(entry);
    }

    public override async Task<ListEntriesResponse> ListEntries(ListEntriesRequest request, ServerCallContext context)
    {
        Selector? selector = null;
        if (request.Selector.Length > 0 && !Selector.TryParse(request.Selector, out selector, out var err))
        {
            throw new ValidationException($"selector filter '{request.Selector}' is invalid ({err}); write type:value, e.g. unix:uid:1000");
        }
        var pageSize = request.PageSize is > 0 and <= 5000 ? request.PageSize : 500;
        var filter = new EntryFilter(NullIfEmpty(request.ParentId), NullIfEmpty(request.SpiffeId), selector);
        var page = await server.Store.Entries.ListAsync(filter, pageSize, NullIfEmpty(request.PageToken), context.CancellationToken).ConfigureAwait(false);
        var response = new ListEntriesResponse { NextPageToken = page.NextPageToken ?? "" };
        response.Entries.AddRange(page.Entries.Select(EntryMapping.ToProto));
        return response;
    }

    public override async Task<ProtoEntry> UpdateEntry(UpdateEntryRequest request, ServerCallContext context)
    {
        if (request.Entry is null || request.Entry.Id.Length == 0)
        {
            throw new ValidationException("an update needs the entry's id: writ entry update --id ID ...");
        }
        var entry = EntryMapping.FromProto(request.Entry);
        if (server.Validator.Check(entry, $"entry {entry.Id}", request.AllowUnknownSelectorType) is { } problem)
        {
            throw new ValidationException(problem);
        }
        OutagePoolRules.Check([entry]);
        await CheckFederatesWithAsync([entry], context.CancellationToken).ConfigureAwait(false);
        var before = await server.Store.Entries.GetAsync(entry.Id, context.CancellationToken).ConfigureAwait(false);
        var updated = await server.Store.Entries.UpdateAsync(entry, context.CancellationToken,
            [LedgerEvents.Entry(LedgerEvents.EntryUpdated, AdminCaller.Of(context), entry)]).ConfigureAwait(false);
        ServerLog.EntryUpdated(log, updated.Id, updated.SpiffeId);
        if (before is { OutagePool: > 0 } && (before.SpiffeId != updated.SpiffeId || before.ParentId != updated.ParentId
            || !before.DnsNames.SequenceEqual(updated.DnsNames) || !before.Selectors.SequenceEqual(updated.Selectors) || updated.OutagePool < before.OutagePool))
        {
            // Pooled SVIDs signed for what the entry was are not handed out for what it is now: revoked (the agents drop
            // them and refill under the new entry).
            await server.Revocations.RevokeUnusedPooledAsync(updated.Id, "entry changed", AdminCaller.Of(context), context.CancellationToken).ConfigureAwait(false);
        }
        return EntryMapping.ToProto(updated);
    }

    public override async Task<DeleteEntryResponse> DeleteEntry(DeleteEntryRequest request, ServerCallContext context)
    {
        var gone = await server.Store.Entries.GetAsync(request.Id, context.CancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException($"entry '{request.Id}' does not exist; list entries with 'writ entry list'");
        await server.Store.Entries.DeleteAsync(request.Id, context.CancellationToken,
            [LedgerEvents.Entry(LedgerEvents.EntryDeleted, AdminCaller.Of(context), gone)]).ConfigureAwait(false);
        ServerLog.EntryDeleted(log, request.Id);
        await AutoRevokeEntryAsync(request.Id, context).ConfigureAwait(false);
        return new DeleteEntryResponse();
    }

    public override async Task<ListAgentsResponse> ListAgents(ListAgentsRequest request, ServerCallContext context)
    {
        var nodes = await server.Store.Nodes.ListAsync(context.CancellationToken).ConfigureAwait(false);
        var response = new ListAgentsResponse();
        response.Agents.AddRange(nodes.Select(ToProto));
        return response;
    }

    public override async Task<Agent> GetAgent(AgentIdRequest request, ServerCallContext context) =>
        ToProto(await GetNodeAsync(request.SpiffeId, context.CancellationToken).ConfigureAwait(false));

    public override async Task<Agent> BanAgent(AgentIdRequest request, ServerCallContext context)
    {
        var node = await GetNodeAsync(request.SpiffeId, context.CancellationToken).ConfigureAwait(false);
        var banned = await server.Store.Nodes.UpdateAsync(node with { Banned = true, UpdatedAt = server.Time.GetUtcNow() }, context.CancellationToken,
            [LedgerEvents.Node(LedgerEvents.NodeBanned, AdminCaller.Of(context), node with { Banned = true })]).ConfigureAwait(false);
        ServerLog.AgentBanned(log, node.SpiffeId);
        try
        {
            await AutoRevokeAgentAsync(node, "agent banned", context).ConfigureAwait(false);
        }
        finally
        {
            server.Announce(Writ.Server.Sync.ChangeKinds.Nodes);   // open sync streams re-check their agent at once, even if the revocation failed
        }
        return ToProto(banned);
    }

    public override async Task<EvictAgentResponse> EvictAgent(AgentIdRequest request, ServerCallContext context)
    {
        var node = await GetNodeAsync(request.SpiffeId, context.CancellationToken).ConfigureAwait(false);
        await server.Store.Nodes.DeleteAsync(node.SpiffeId, context.CancellationToken,
            [LedgerEvents.Node(LedgerEvents.NodeEvicted, AdminCaller.Of(context), node)]).ConfigureAwait(false);
        ServerLog.AgentEvicted(log, node.SpiffeId);
        try
        {
            await AutoRevokeAgentAsync(node, "agent evicted", context).ConfigureAwait(false);
        }
        finally
        {
            server.Announce(Writ.Server.Sync.ChangeKinds.Nodes);
        }
        return new EvictAgentResponse();
    }

    public override async Task<Agent> ReadmitAgent(AgentIdRequest request, ServerCallContext context)
    {
        var node = await GetNodeAsync(request.SpiffeId, context.CancellationToken).ConfigureAwait(false);
        var actor = AdminCaller.Of(context);
        if (!await server.Store.Nodes.TryReadmitAsync(node.SpiffeId, context.CancellationToken, [LedgerEvents.NodeReadmit(actor, node)]).ConfigureAwait(false))
        {
            var now = await server.Store.Nodes.GetAsync(node.SpiffeId, context.CancellationToken).ConfigureAwait(false);
            var state = now is null ? "evicted" : now.Banned ? "banned (evict it instead)" : now.Status == NodeStatus.Active ? "active" : "drifted";
            throw new Writ.Protocol.Errors.WritException(NodeAttestation.NodePostureCodes.NotDrifted, Writ.Protocol.Errors.WritErrorKind.FailedPrecondition,
                $"agent {node.SpiffeId} is {state}, not drifted: only a drifted agent can be readmitted");
        }
        ServerLog.NodeReadmitted(log, node.SpiffeId, actor, node.StatusReason ?? "-");
        server.Posture.RecheckNow(node.SpiffeId);
        server.Announce(Writ.Server.Sync.ChangeKinds.Nodes);
        return ToProto(await GetNodeAsync(node.SpiffeId, context.CancellationToken).ConfigureAwait(false));
    }

    public override async Task<GetBundleResponse> GetBundle(GetBundleRequest request, ServerCallContext context)
    {
        var b = server.Ca.Bundle;
        var crl = await server.Revocations.CurrentCrlAsync(context.CancellationToken).ConfigureAwait(false);
        var response = new GetBundleResponse
        {
            TrustDomain = server.Options.TrustDomain.Name,
            Pem = b.ToPem(),
            SpiffeBundleJson = b.ToSpiffeJson(),
            Sequence = server.Ca.BundleSequence,
            CrlDer = ByteString.CopyFrom(crl.Der),
        };
        response.RetiredCrlDer.AddRange(crl.Retired.Select(r => ByteString.CopyFrom(r.Der)));
        response.OtherServerCrlDer.AddRange(crl.OtherServers.Select(ByteString.CopyFrom));
        return response;
    }

    public override async Task<HealthResponse> Health(HealthRequest request, ServerCallContext context)
    {
        var ready = true;
        try
        {
            await server.Store.Entries.CurrentRevisionAsync(context.CancellationToken).ConfigureAwait(false);
        }
        catch (StoreException)
        {
            ready = false;
        }
        return new HealthResponse
        {
            Live = true,
            Ready = ready && server.Ca.Halted is null,   // a duplicate server id stops issuance (issue #16)
            TrustDomain = server.Options.TrustDomain.Name,
            Store = server.Store.Kind,
            BundleSequence = server.Ca.BundleSequence,
            ServerId = server.Ca.ServerId ?? "",
        };
    }

    private TimeSpan Ttl(int seconds, TimeSpan fallback)
    {
        if (seconds < 0 || (seconds > 0 && seconds < EntryValidator.MinTtlSeconds))
        {
            throw new ValidationException($"TTL must be at least {EntryValidator.MinTtlSeconds}s, got {seconds}s");
        }
        if (seconds > server.Options.MaxTtl.TotalSeconds)
        {
            throw new ValidationException($"TTL {seconds}s is above the server's max_ttl of {(long)server.Options.MaxTtl.TotalSeconds}s");
        }
        return seconds == 0 ? fallback : TimeSpan.FromSeconds(seconds);
    }

    /// <summary>An ID an admin may mint for: in the trust domain, with a path, and never an agent or server identity.</summary>
    private SpiffeId WorkloadId(string text)
    {
        var id = ParseId(text, "spiffe_id");
        if (id.Path.Length == 0 || EntryValidator.IsReserved(id))
        {
            throw new ValidationException($"'{id}' cannot be minted: it is the trust domain itself or in the reserved /writ/ namespace (agents, servers)");
        }
        return id;
    }

    private SpiffeId ParseId(string text, string what)
    {
        if (!SpiffeId.TryParse(text, out var id, out var err))
        {
            throw new ValidationException($"{what} '{text}' is not a SPIFFE ID ({err}); use spiffe://{server.Options.TrustDomain.Name}/path");
        }
        if (!id.MemberOf(server.Options.TrustDomain))
        {
            throw new ValidationException($"{what} '{text}' is outside this server's trust domain '{server.Options.TrustDomain.Name}'");
        }
        return id;
    }

    private async Task<AttestedNode> GetNodeAsync(string spiffeId, CancellationToken ct) =>
        await server.Store.Nodes.GetAsync(spiffeId, ct).ConfigureAwait(false)
        ?? throw new StoreNotFoundException($"agent '{spiffeId}' is not attested; list agents with 'writ agent list'");

    private static Agent ToProto(AttestedNode n)
    {
        var a = new Agent
        {
            SpiffeId = n.SpiffeId,
            AttestationType = n.AttestationType,
            SerialNumber = n.SerialNumber,
            ExpiresAtUnix = n.ExpiresAt.ToUnixTimeSeconds(),
            Banned = n.Banned,
            CreatedAtUnix = n.CreatedAt.ToUnixTimeSeconds(),
            UpdatedAtUnix = n.UpdatedAt.ToUnixTimeSeconds(),
            Status = n.Status == NodeStatus.Drifted ? "drifted" : "active",
            StatusReason = n.StatusReason ?? "",
        };
        a.Selectors.AddRange(n.Selectors.Select(s => s.ToProto()));
        return a;
    }

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;

    private static string Base64Url(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
