using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Writ.Server.Hosting;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;
using Writ.Protocol.Evidence;

namespace Writ.Server.Issuance;

/// <summary>One workload X.509-SVID request of a batch: the entry, the CSR and the evidence (or why the evidence was refused).</summary>
public sealed record X509SvidRequest(string EntryId, ReadOnlyMemory<byte> Csr, WorkloadEvidence? Evidence, string? EvidenceError = null, string? RawInstanceId = null,
    string EvidenceErrorCode = IssuanceErrors.BadEvidence)
{
    /// <summary>
    /// The instance the request is for; when its evidence was refused, the id as the agent sent it, so the agent applies
    /// the refusal to that one instance and not to every instance of the entry in the batch.
    /// </summary>
    public string InstanceId => Evidence?.InstanceId ?? RawInstanceId ?? "";

    /// <summary>The SVID must not outlive this (a CI job token's exp): the requested TTL is clipped to it.</summary>
    public DateTimeOffset? NotAfter { get; init; }
}

/// <summary>A signed X.509-SVID: the DER leaf and chain, and the decision that allowed it.</summary>
public sealed record X509Issued(RegistrationEntry Entry, SignedX509Leaf Leaf, IReadOnlyList<byte[]> ChainAboveLeaf, string DecisionId, string InstanceId);

/// <summary>
/// A refused request. <see cref="DecisionId"/> is null when no decision was made (unknown entry, bad CSR);
/// <see cref="Code"/> is the gRPC status code, <see cref="ErrorCode"/> the stable one (<see cref="IssuanceErrors"/>).
/// </summary>
public sealed record IssuanceDenial(string EntryId, string InstanceId, string? DecisionId, string Reason, int Code, string ErrorCode);

public sealed record X509Batch(IReadOnlyList<X509Issued> Issued, IReadOnlyList<IssuanceDenial> Denials);

/// <summary>A JWT-SVID or the decision that refused it.</summary>
public sealed record JwtOutcome(IssuanceDecision Decision, string? Token, DateTimeOffset ExpiresAt, string? Jti);

/// <summary>An agent SVID chain or the decision that refused it.</summary>
public sealed record NodeOutcome(IssuanceDecision Decision, IReadOnlyList<X509Certificate2>? Chain);

/// <summary>
/// The one decision path of every issuance: registration-entry match (on the server too) → Cedar request → policy →
/// TTL = min(entry/default TTL, CA cap, smallest @max_ttl of the deciding permits) → sign → ledger. Nothing is handed
/// out before its ledger record is durable: if the ledger write fails, the caller gets <see cref="StoreUnavailableException"/>
/// (gRPC Unavailable) and no credential.
/// </summary>
public sealed partial class IssuancePipeline(ServerContext server, ILogger log)
{
    public async Task<X509Batch> SignX509Async(AttestedNode caller, IReadOnlyList<X509SvidRequest> requests, CancellationToken ct)
    {
        var policy = await server.Policy.CurrentAsync(ct).ConfigureAwait(false);
        var now = server.Time.GetUtcNow();
        var node = NodeFacts.Of(caller);
        var nodeEntity = WritCedar.Node(node);
        IReadOnlyList<string> parents = [caller.SpiffeId, .. caller.Aliases];
        var issued = new List<X509Issued>();
        var denials = new List<IssuanceDenial>();
        var events = new List<LedgerEvent>();
        var credentials = new List<IssuedCredential>();
        var started = Stopwatch.GetTimestamp();
        using var activity = Telemetry.WritServerMetrics.Activities.StartActivity("writ.issue IssueX509Svid");
        var metrics = server.Metrics;
        foreach (var r in requests)
        {
            var entry = r.EntryId.Length == 0 ? null : await server.Store.Entries.GetAsync(r.EntryId, ct).ConfigureAwait(false);
            // Unknown and foreign entries get the same answer: an agent learns nothing about entries it may not serve.
            if (entry is null || !parents.Contains(entry.ParentId, StringComparer.Ordinal))
            {
                ServerLog.AgentRefused(log, "sign", $"{caller.SpiffeId} asked for entry '{r.EntryId}' it is not authorized for");
                metrics.Denied("IssueX509Svid", Telemetry.DenialReason.EntryNotAuthorized);
                denials.Add(new IssuanceDenial(r.EntryId, r.InstanceId, null, $"entry '{r.EntryId}' is not authorized for agent {caller.SpiffeId}", 7, IssuanceErrors.EntryUnauthorized));
                continue;
            }
            if (r.EvidenceError is not null)
            {
                metrics.Denied("IssueX509Svid", Telemetry.DenialReason.BadRequest);
                denials.Add(new IssuanceDenial(r.EntryId, r.InstanceId, null, r.EvidenceError, 3, r.EvidenceErrorCode));
                continue;
            }
            if (server.Limits.TryIssueX509(caller.SpiffeId, entry.Id) is { } spent)
            {
                var reason = IssuanceLimits.RateLimitedReason(spent, caller.SpiffeId, entry.SpiffeId);
                metrics.Denied("IssueX509Svid", Telemetry.DenialReason.RateLimited);
                denials.Add(new IssuanceDenial(entry.Id, r.InstanceId, null, reason, 8, IssuanceErrors.RateLimited));
                if (RateLimitedEvent(caller.SpiffeId, entry, "x509", spent, now) is { } limited)
                    events.Add(limited);
                continue;
            }
            var id = SpiffeId.Parse(entry.SpiffeId);
            System.Security.Cryptography.X509Certificates.PublicKey key;
            try
            {
                key = Issuer.VerifyCsr(r.Csr.Span, id);
            }
            catch (Registration.ValidationException e)
            {
                metrics.Denied("IssueX509Svid", Telemetry.DenialReason.BadRequest);
                denials.Add(new IssuanceDenial(r.EntryId, r.InstanceId, null, e.Message, 3, IssuanceErrors.BadCsr));
                continue;
            }
            var requested = server.Issuer.X509Ttl(entry, now);
            if (r.NotAfter is { } notAfter && notAfter - now < requested)
                requested = TimeSpan.FromSeconds(Math.Max(0, Math.Floor((notAfter - now).TotalSeconds)));
            var d = DecideWorkload(policy, WritCedar.IssueX509Svid, nodeEntity, caller.SpiffeId, entry, r.Evidence, [], requested, now, bound: true);
            if (!d.Allowed)
            {
                ServerLog.IssuanceDenied(log, d.Id, d.Action, entry.SpiffeId, caller.SpiffeId, d.Reason);
                metrics.Denied("IssueX509Svid", Telemetry.DenialReason.Policy);
                denials.Add(new IssuanceDenial(entry.Id, r.InstanceId, d.Id, d.Reason, 7, IssuanceErrors.Denied));
                if (RecordDenial(caller.SpiffeId, entry.Id, new JsonObject { ["requested_ttl_seconds"] = (long)requested.TotalSeconds }) is { } extra)
                    events.Add(Event("issuance.denied", caller.SpiffeId, entry.SpiffeId, d, IssuanceDecider.RecordData(d, "x509", caller.SpiffeId, entry.SpiffeId, entry.Id, r.Evidence, extra), now));
                continue;
            }
            var ttl = IssuanceDecider.Ttl(requested, d.MaxTtl);
            var (leaf, above) = server.Ca.SignX509SvidDer(id, key, ttl, entry.DnsNames);
            issued.Add(new X509Issued(entry, leaf, above, d.Id, r.InstanceId));
            events.Add(Event("x509.issued", caller.SpiffeId, entry.SpiffeId, d, IssuanceDecider.RecordData(d, "x509", caller.SpiffeId, entry.SpiffeId, entry.Id, r.Evidence, new JsonObject
            {
                ["expires_at"] = leaf.NotAfter.ToUnixTimeSeconds(),
                ["requested_ttl_seconds"] = (long)requested.TotalSeconds,
                ["serial"] = leaf.SerialNumber,
                ["ttl_seconds"] = (long)ttl.TotalSeconds,
            }), now));
            credentials.Add(new IssuedCredential
            {
                Kind = "x509",
                Id = leaf.SerialNumber,
                SpiffeId = entry.SpiffeId,
                EntryId = entry.Id,
                AgentId = caller.SpiffeId,
                InstanceId = NullIfEmpty(r.InstanceId),
                DecisionId = d.Id,
                IssuedAt = now,
                ExpiresAt = leaf.NotAfter,
            });
        }
        await RecordAsync(events, credentials, ct).ConfigureAwait(false);
        metrics.Issued("IssueX509Svid", issued.Count);
        metrics.IssuanceTook("IssueX509Svid", started);
        activity?.SetTag("writ.issued", issued.Count).SetTag("writ.denied", denials.Count);
        foreach (var i in issued)
        {
            ServerLog.X509Issued(log, i.Entry.SpiffeId, caller.SpiffeId, i.Leaf.SerialNumber, i.Leaf.NotAfter);
        }
        return new X509Batch(issued, denials);
    }

    public async Task<JwtOutcome> MintJwtAsync(AttestedNode caller, RegistrationEntry entry, WorkloadEvidence? evidence, IReadOnlyList<string> audience,
        int requestedSeconds, byte[]? boundCertSha256, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        using var activity = Telemetry.WritServerMetrics.Activities.StartActivity("writ.issue IssueJwtSvid");
        var policy = await server.Policy.CurrentAsync(ct).ConfigureAwait(false);
        var now = server.Time.GetUtcNow();
        if (server.Limits.TryIssueJwt(caller.SpiffeId, entry.Id) is { } spent)
        {
            server.Metrics.Denied("IssueJwtSvid", Telemetry.DenialReason.RateLimited);
            if (RateLimitedEvent(caller.SpiffeId, entry, "jwt", spent, now) is { } limited)
                await RecordAsync([limited], [], ct).ConfigureAwait(false);
            throw new IssuanceRateLimitedException(IssuanceLimits.RateLimitedReason(spent, caller.SpiffeId, entry.SpiffeId));
        }
        var requested = server.Issuer.JwtTtl(entry, requestedSeconds, now);
        var bound = boundCertSha256 is { Length: 32 };
        var d = DecideWorkload(policy, WritCedar.IssueJwtSvid, WritCedar.Node(NodeFacts.Of(caller)), caller.SpiffeId, entry, evidence, audience, requested, now, bound);
        var audienceJson = new JsonArray([.. audience.Select(a => (JsonNode)a)]);
        if (!d.Allowed)
        {
            ServerLog.IssuanceDenied(log, d.Id, d.Action, entry.SpiffeId, caller.SpiffeId, d.Reason);
            server.Metrics.Denied("IssueJwtSvid", Telemetry.DenialReason.Policy);
            if (RecordDenial(caller.SpiffeId, entry.Id, new JsonObject { ["audience"] = audienceJson, ["bound"] = bound, ["requested_ttl_seconds"] = (long)requested.TotalSeconds }) is { } extra)
                await RecordAsync([Event("issuance.denied", caller.SpiffeId, entry.SpiffeId, d, IssuanceDecider.RecordData(d, "jwt", caller.SpiffeId, entry.SpiffeId, entry.Id, evidence, extra), now)], [], ct).ConfigureAwait(false);
            return new JwtOutcome(d, null, default, null);
        }
        var ttl = IssuanceDecider.Ttl(requested, d.MaxTtl);
        var (token, exp, jti) = server.Ca.MintJwtSvidWithId(SpiffeId.Parse(entry.SpiffeId), audience, ttl, bound ? boundCertSha256 : null);
        await RecordAsync([Event("jwt.issued", caller.SpiffeId, entry.SpiffeId, d, IssuanceDecider.RecordData(d, "jwt", caller.SpiffeId, entry.SpiffeId, entry.Id, evidence, new JsonObject
        {
            ["audience"] = audienceJson,
            ["bound"] = bound,
            ["expires_at"] = exp.ToUnixTimeSeconds(),
            ["jti"] = jti,
            ["requested_ttl_seconds"] = (long)requested.TotalSeconds,
            ["ttl_seconds"] = (long)(exp - now).TotalSeconds,
        }), now)],
        [new IssuedCredential
        {
            Kind = "jwt",
            Id = jti,
            SpiffeId = entry.SpiffeId,
            EntryId = entry.Id,
            AgentId = caller.SpiffeId,
            InstanceId = NullIfEmpty(evidence?.InstanceId ?? ""),
            DecisionId = d.Id,
            IssuedAt = now,
            ExpiresAt = exp,
        }], ct).ConfigureAwait(false);
        ServerLog.JwtIssued(log, entry.SpiffeId, caller.SpiffeId, string.Join(",", audience), exp);
        server.Metrics.Issued("IssueJwtSvid");
        server.Metrics.IssuanceTook("IssueJwtSvid", started);
        return new JwtOutcome(d, token, exp, jti);
    }

    /// <summary>The entry a node attestation's denials are counted under in the denial budget and its summaries.</summary>
    public const string NodeAttestationEntry = "(node attestation)";

    /// <summary>
    /// AttestNode for join-token attestation (<paramref name="renewal"/> false) and agent SVID renewal: principal the
    /// node, resource the agent's identity. Records node.attested / node.renewed with the SVID, or node.attest_denied.
    /// </summary>
    public async Task<NodeOutcome> AttestNodeAsync(NodeFacts node, System.Security.Cryptography.X509Certificates.PublicKey key, bool renewal, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        using var activity = Telemetry.WritServerMetrics.Activities.StartActivity("writ.issue AttestNode");
        var policy = await server.Policy.CurrentAsync(ct).ConfigureAwait(false);
        var now = server.Time.GetUtcNow();
        var id = SpiffeId.Parse(node.SpiffeId);
        var requested = server.Issuer.Cap(server.Options.AgentTtl);
        var nodeEntity = WritCedar.Node(node);
        var query = WritCedar.Query(nodeEntity, WritCedar.AttestNode, WritCedar.Identity(IdentityFacts.OfAgent(id)),
            WritCedar.Context([], (long)requested.TotalSeconds, now.ToUnixTimeSeconds(), bound: true));
        var d = IssuanceDecider.Evaluate(policy, query);
        if (!d.Allowed)
        {
            ServerLog.IssuanceDenied(log, d.Id, d.Action, node.SpiffeId, node.SpiffeId, d.Reason);
            server.Metrics.Denied("AttestNode", Telemetry.DenialReason.Policy);
            // A denial does not burn single-use evidence, so its holder may retry at will: its records share the per-agent
            // denial budget (keyed by the would-be agent's ID), the rest are counted in a denials.suppressed summary.
            if (RecordDenial(node.SpiffeId, NodeAttestationEntry, new JsonObject { ["renewal"] = renewal }) is { } extra)
            {
                await RecordAsync([Event("node.attest_denied", node.SpiffeId, node.SpiffeId, d, IssuanceDecider.RecordData(d, "node", node.SpiffeId, node.SpiffeId, null, null,
                    extra), now)], [], ct).ConfigureAwait(false);
            }
            return new NodeOutcome(d, null);
        }
        var ttl = IssuanceDecider.Ttl(requested, d.MaxTtl);
        var chain = server.Ca.SignX509Svid(id, key, ttl);
        var leaf = chain[0];
        var exp = new DateTimeOffset(leaf.NotAfter.ToUniversalTime());
        await RecordAsync([Event(renewal ? "node.renewed" : "node.attested", node.SpiffeId, node.SpiffeId, d, IssuanceDecider.RecordData(d, "node", node.SpiffeId, node.SpiffeId, null, null, new JsonObject
        {
            ["expires_at"] = exp.ToUnixTimeSeconds(),
            ["renewal"] = renewal,
            ["serial"] = leaf.SerialNumber,
            ["ttl_seconds"] = (long)ttl.TotalSeconds,
        }), now)],
        [new IssuedCredential
        {
            Kind = "x509",
            Id = leaf.SerialNumber,
            SpiffeId = node.SpiffeId,
            AgentId = node.SpiffeId,
            DecisionId = d.Id,
            IssuedAt = now,
            ExpiresAt = exp,
        }], ct).ConfigureAwait(false);
        server.Metrics.Issued("AttestNode");
        server.Metrics.IssuanceTook("AttestNode", started);
        return new NodeOutcome(d, chain);
    }

    /// <summary>Entry match (expiry, selectors ⊆ evidence), then Cedar.</summary>
    internal static IssuanceDecision DecideWorkload(ActivePolicy policy, Writ.Policy.Ast.EntityUid action, Writ.Policy.Evaluation.Entity nodeEntity, string agentId,
        RegistrationEntry entry, WorkloadEvidence? evidence, IReadOnlyList<string> audience, TimeSpan requested, DateTimeOffset now, bool bound)
    {
        if (evidence is null)
        {
            return IssuanceDecider.MatchDenied(policy, "the agent sent no workload evidence with the request; upgrade the agent", null);
        }
        var query = WritCedar.Query(WritCedar.Workload(agentId, evidence), action, WritCedar.Identity(IdentityFacts.Of(entry)),
            WritCedar.Context(audience, (long)requested.TotalSeconds, now.ToUnixTimeSeconds(), bound), nodeEntity);
        if (entry.ExpiresAt is { } exp && exp <= now)
        {
            return IssuanceDecider.MatchDenied(policy, $"entry {entry.Id} expired at {exp:u}", query);
        }
        if (IssuanceDecider.MissingSelector(entry, evidence) is { } missing)
        {
            return IssuanceDecider.MatchDenied(policy, $"selector {missing} of entry {entry.Id} is not in the workload's evidence", query);
        }
        return IssuanceDecider.Evaluate(policy, query);
    }

    /// <summary>
    /// The data to record with a refusal of this workload, with <c>suppressed_denials</c> when earlier ones were left
    /// out; null when the refusal is over the recording budget (it is counted instead).
    /// </summary>
    private JsonObject? RecordDenial(string agentId, string entryId, JsonObject extra)
    {
        if (!server.Limits.TryRecordDenial(agentId, entryId, out var suppressed))
        {
            if (suppressed == 1 || suppressed % 1000 == 0)
                ServerLog.DenialRecordsSuppressed(log, $"{agentId} entry {entryId}", suppressed);
            return null;
        }
        if (suppressed > 0)
            extra["suppressed_denials"] = suppressed;
        return extra;
    }

    /// <summary>The record of an issuance refused by a rate limit (no decision was made), or null when over the recording budget.</summary>
    private LedgerEvent? RateLimitedEvent(string agentId, RegistrationEntry entry, string kind, string scope, DateTimeOffset now)
    {
        if (RecordDenial(agentId, entry.Id, new JsonObject { ["agent"] = agentId, ["entry_id"] = entry.Id, ["kind"] = kind, ["limit"] = scope, ["spiffe_id"] = entry.SpiffeId }) is not { } data)
            return null;
        ServerLog.IssuanceRateLimited(log, scope, scope == "agent" ? agentId : $"{entry.SpiffeId} via {agentId}", kind);
        return new LedgerEvent { At = now, Kind = "issuance.rate_limited", Actor = agentId, Subject = entry.SpiffeId, DataJson = WritCedar.Canonical(data) };
    }

    /// <summary>The record of refusals left out of the ledger for one agent: how many, per entry, first and last.</summary>
    private LedgerEvent SuppressedEvent(SuppressedSummary s)
    {
        var entries = new JsonObject();
        foreach (var (entry, n) in s.ByEntry)
            entries[entry] = n;
        ServerLog.DenialSummaryRecorded(log, s.AgentId, s.Count);
        return new LedgerEvent
        {
            At = server.Time.GetUtcNow(),
            Kind = "denials.suppressed",
            Actor = "server",
            Subject = s.AgentId,
            DataJson = WritCedar.Canonical(new JsonObject
            {
                ["agent"] = s.AgentId,
                ["count"] = s.Count,
                ["entries"] = entries,
                ["first_at"] = s.First.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
                ["last_at"] = s.Last.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
            }),
        };
    }

    private static LedgerEvent Event(string kind, string actor, string subject, IssuanceDecision d, string data, DateTimeOffset at) => new()
    {
        At = at,
        Kind = kind,
        Actor = actor,
        Subject = subject,
        DecisionId = d.Id,
        DataJson = data,
    };

    /// <summary>
    /// Writes the <c>denials.suppressed</c> summaries whose window has closed (all of them when <paramref name="all"/>,
    /// e.g. at shutdown). Issuance writes do this on their way; this is for when no issuance comes.
    /// </summary>
    public Task FlushSuppressedDenialsAsync(bool all, CancellationToken ct) => RecordAsync([], [], ct, all);

    /// <summary>
    /// One ledger append (with the due <c>denials.suppressed</c> summaries in front); a failure means nothing is handed
    /// out, and the summaries are kept for the next write.
    /// </summary>
    private async Task RecordAsync(IReadOnlyList<LedgerEvent> events, IReadOnlyList<IssuedCredential> credentials, CancellationToken ct, bool allSummaries = false)
    {
        var summaries = server.Limits.TakeSuppressedSummaries(allSummaries);
        if (summaries.Count > 0)
            events = [.. summaries.Select(SuppressedEvent), .. events];
        if (events.Count == 0)
            return;
        var t0 = Stopwatch.GetTimestamp();
        try
        {
            await server.LedgerWriter.AppendAsync(events, credentials).WaitAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            server.Limits.ReturnSuppressedSummaries(summaries);
            if (e is OperationCanceledException)
                throw;
            ServerLog.LedgerWriteFailed(log, events.Count, e.Message);
            throw new StoreUnavailableException("the issuance could not be recorded in the ledger, so no credential was handed out: check the server's store, then retry", e);
        }
        server.Metrics.LedgerAppendTook(t0);
    }

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;
}
