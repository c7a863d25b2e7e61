using System.Diagnostics;
using System.Text.Json.Nodes;
using Writ.Protocol.Errors;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Server.Issuance;

/// <summary>A pooled X.509-SVID (issue #16 item 5) as signed for the agent's outage pool.</summary>
public sealed record PooledIssued(RegistrationEntry Entry, Writ.Spiffe.X509.SignedX509Leaf Leaf, IReadOnlyList<byte[]> ChainAboveLeaf, string DecisionId);

/// <summary>One handout of a pooled SVID to a workload instance, as the agent reports it.</summary>
public sealed record PooledUse(string Serial, string EntryId, string InstanceId, int Pid, int Uid, string SelectorsSha256, DateTimeOffset UsedAt);

public sealed partial class IssuancePipeline
{
    /// <summary>
    /// Pooled X.509-SVIDs for the calling agent's outage pool of one entry (issue #16 item 5): the entry must be the
    /// agent's and opted in, Cedar must permit <c>IssuePooledX509Svid</c> (principal the node), and the agent may hold
    /// at most the entry's outage_pool unexpired, unreported ones (counted in the store, in the transaction that
    /// records them). Each SVID gets an <c>x509.issued</c> record with <c>pooled: true</c> and an issued-credential row
    /// (so <c>writ revoke</c> works on it) before it is handed out.
    /// </summary>
    public async Task<IReadOnlyList<PooledIssued>> SignPooledX509Async(AttestedNode caller, string entryId, IReadOnlyList<ReadOnlyMemory<byte>> csrs, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(csrs);
        var started = Stopwatch.GetTimestamp();
        using var activity = Telemetry.WritServerMetrics.Activities.StartActivity("writ.issue IssuePooledX509Svid");
        const string action = "IssuePooledX509Svid";
        IReadOnlyList<string> parents = [caller.SpiffeId, .. caller.Aliases];
        var entry = entryId.Length == 0 ? null : await server.Store.Entries.GetAsync(entryId, ct).ConfigureAwait(false);
        if (entry is null || !parents.Contains(entry.ParentId, StringComparer.Ordinal))
        {
            server.Metrics.Denied(action, Telemetry.DenialReason.EntryNotAuthorized);
            throw Refused(caller, entryId, IssuanceErrors.EntryUnauthorized, WritErrorKind.PermissionDenied, $"entry '{entryId}' is not authorized for agent {caller.SpiffeId}");
        }
        if (entry.OutagePool <= 0)
        {
            server.Metrics.Denied(action, Telemetry.DenialReason.BadRequest);
            throw Refused(caller, entry.Id, OutagePoolRules.NotEnabledCode, WritErrorKind.FailedPrecondition,
                $"entry {entry.Id} has no outage pool: an operator opts it in with 'writ entry update --id {entry.Id} --outage-pool N'");
        }
        if (csrs.Count == 0 || csrs.Count > entry.OutagePool)
        {
            server.Metrics.Denied(action, Telemetry.DenialReason.BadRequest);
            throw Refused(caller, entry.Id, OutagePoolRules.FullCode, WritErrorKind.ResourceExhausted,
                $"asked for {csrs.Count} pooled SVIDs of entry {entry.Id}, whose outage pool is {entry.OutagePool}: ask for 1..{entry.OutagePool}");
        }
        var now = server.Time.GetUtcNow();
        if (entry.ExpiresAt is { } exp && exp <= now)
            throw Refused(caller, entry.Id, IssuanceErrors.Denied, WritErrorKind.PermissionDenied, $"entry '{entry.Id}' expired at {exp:u}");
        var policy = await server.Policy.CurrentAsync(ct).ConfigureAwait(false);
        var requested = server.Issuer.X509Ttl(entry, now);
        var nodeEntity = WritCedar.Node(NodeFacts.Of(caller));
        var query = WritCedar.Query(nodeEntity, WritCedar.IssuePooledX509Svid, WritCedar.Identity(IdentityFacts.Of(entry)),
            WritCedar.Context([], (long)requested.TotalSeconds, now.ToUnixTimeSeconds(), bound: true));
        // One decision per SVID, as for per-instance issuance: each pooled SVID has its own decision id and record.
        var decisions = new List<IssuanceDecision>(csrs.Count);
        for (var n = 0; n < csrs.Count; n++)
        {
            var d = IssuanceDecider.Evaluate(policy, query);
            if (!d.Allowed)
            {
                ServerLog.IssuanceDenied(log, d.Id, d.Action, entry.SpiffeId, caller.SpiffeId, d.Reason);
                server.Metrics.Denied(action, Telemetry.DenialReason.Policy);
                if (RecordDenial(caller.SpiffeId, entry.Id, new JsonObject { ["pooled"] = true, ["requested_ttl_seconds"] = (long)requested.TotalSeconds }) is { } extra)
                    await RecordAsync([Event("issuance.denied", caller.SpiffeId, entry.SpiffeId, d, IssuanceDecider.RecordData(d, "x509", caller.SpiffeId, entry.SpiffeId, entry.Id, null, extra), now)], [], ct).ConfigureAwait(false);
                throw Refused(caller, entry.Id, IssuanceErrors.Denied, WritErrorKind.PermissionDenied, d.DeniedDetail);
            }
            decisions.Add(d);
        }
        // The issuance budgets (issue #12) apply to pooled SVIDs as to any other: one token each, taken before signing.
        for (var n = 0; n < csrs.Count; n++)
        {
            if (server.Limits.TryIssueX509(caller.SpiffeId, entry.Id) is { } spent)
            {
                server.Metrics.Denied(action, Telemetry.DenialReason.RateLimited);
                throw Refused(caller, entry.Id, IssuanceErrors.RateLimited, WritErrorKind.ResourceExhausted,
                    IssuanceLimits.RateLimitedReason(spent, caller.SpiffeId, entry.SpiffeId));
            }
        }
        var id = SpiffeId.Parse(entry.SpiffeId);
        var keys = new List<System.Security.Cryptography.X509Certificates.PublicKey>(csrs.Count);
        foreach (var csr in csrs)
        {
            try
            {
                keys.Add(Issuer.VerifyCsr(csr.Span, id));
            }
            catch (Registration.ValidationException e)
            {
                throw Refused(caller, entry.Id, IssuanceErrors.BadCsr, WritErrorKind.InvalidArgument, e.Message);
            }
        }
        var ttl = IssuanceDecider.Ttl(requested, decisions[0].MaxTtl);
        var issued = keys.Select((k, n) =>
        {
            var (leaf, above) = server.Ca.SignX509SvidDer(id, k, ttl, entry.DnsNames);
            return new PooledIssued(entry, leaf, above, decisions[n].Id);
        }).ToList();
        // The bound, from the store and in one transaction: a compromised agent cannot mint an unbounded pool by racing calls.
        if (await server.Store.PooledSvids.TryAddAsync([.. issued.Select(i => new PooledSvid(i.Leaf.SerialNumber, entry.Id, caller.SpiffeId, now, i.Leaf.NotAfter))], now, ct)
            .ConfigureAwait(false) is { } full)
        {
            server.Metrics.Denied(action, Telemetry.DenialReason.RateLimited);
            throw Refused(caller, entry.Id, OutagePoolRules.FullCode, WritErrorKind.ResourceExhausted,
                $"agent {caller.SpiffeId} already holds {full.Held} unreported pooled SVIDs of entry {entry.Id} (outage pool {full.Pool}): report handed-out ones or wait for them to expire");
        }
        await RecordAsync(
            [.. issued.Select((i, n) => Event("x509.issued", caller.SpiffeId, entry.SpiffeId, decisions[n], IssuanceDecider.RecordData(decisions[n], "x509", caller.SpiffeId, entry.SpiffeId, entry.Id, null, new JsonObject
            {
                ["expires_at"] = i.Leaf.NotAfter.ToUnixTimeSeconds(),
                ["pooled"] = true,
                ["requested_ttl_seconds"] = (long)requested.TotalSeconds,
                ["serial"] = i.Leaf.SerialNumber,
                ["ttl_seconds"] = (long)ttl.TotalSeconds,
            }), now))],
            [.. issued.Select(i => new IssuedCredential
            {
                Kind = "x509",
                Id = i.Leaf.SerialNumber,
                SpiffeId = entry.SpiffeId,
                EntryId = entry.Id,
                AgentId = caller.SpiffeId,
                DecisionId = i.DecisionId,
                IssuedAt = now,
                ExpiresAt = i.Leaf.NotAfter,
            })], ct).ConfigureAwait(false);
        server.Metrics.Issued(action, issued.Count);
        server.Metrics.IssuanceTook(action, started);
        ServerLog.PooledSigned(log, issued.Count, entry.SpiffeId, entry.Id, caller.SpiffeId);
        return issued;
    }

    /// <summary>Clock difference tolerated between the agent's handout time and the server's view of the SVID's life.</summary>
    private static readonly TimeSpan ReportSkew = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Records handouts of pooled SVIDs (issue #16 item 5): every serial must be a pooled SVID of the calling agent and
    /// the named entry, else the whole call is refused and nothing is written. Each first report writes one
    /// <c>svid.pooled_used</c> record and marks the SVID used (in one transaction); a repeated report writes nothing.
    /// Returns the serials acknowledged.
    /// </summary>
    public async Task<IReadOnlyList<string>> RecordPooledUsesAsync(AttestedNode caller, IReadOnlyList<PooledUse> uses, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(uses);
        var known = new List<(PooledUse Use, PooledSvid Svid)>(uses.Count);
        foreach (var u in uses)
        {
            var svid = u.Serial.Length == 0 ? null : await server.Store.PooledSvids.GetAsync(u.Serial, ct).ConfigureAwait(false);
            if (svid is null || svid.AgentId != caller.SpiffeId || svid.EntryId != u.EntryId)
            {
                ServerLog.PooledUnknownReported(log, caller.SpiffeId, u.Serial);
                throw new WritException(OutagePoolRules.UnknownSerialCode, WritErrorKind.PermissionDenied,
                    $"serial '{u.Serial}' is not a pooled SVID of agent {caller.SpiffeId} and entry '{u.EntryId}': nothing of this report was recorded");
            }
            // A handout happens while the SVID is valid and not in the future: a made-up time (to free a slot at will)
            // is refused with the whole report.
            var latest = svid.ExpiresAt < server.Time.GetUtcNow() ? svid.ExpiresAt : server.Time.GetUtcNow();
            if (u.UsedAt < svid.IssuedAt - ReportSkew || u.UsedAt > latest + ReportSkew)
            {
                ServerLog.PooledUnknownReported(log, caller.SpiffeId, u.Serial);
                throw new WritException(OutagePoolRules.BadReportCode, WritErrorKind.InvalidArgument,
                    $"pooled SVID '{u.Serial}' was reported handed out at {u.UsedAt:u}, outside its life ({svid.IssuedAt:u} to {latest:u}): nothing of this report was recorded");
            }
            known.Add((u, svid));
        }
        var acked = new List<string>(known.Count);
        foreach (var (u, svid) in known)
        {
            var entry = await server.Store.Entries.GetAsync(svid.EntryId, ct).ConfigureAwait(false);
            var data = new JsonObject
            {
                ["agent"] = caller.SpiffeId,
                ["entry_id"] = svid.EntryId,
                ["instance_id"] = u.InstanceId,
                ["pid"] = u.Pid,
                ["selectors_sha256"] = u.SelectorsSha256,
                ["serial"] = svid.Serial,
                ["uid"] = u.Uid,
                ["used_at"] = u.UsedAt.ToUnixTimeSeconds(),
            };
            var record = new LedgerEvent
            {
                At = server.Time.GetUtcNow(),
                Kind = "svid.pooled_used",
                Actor = caller.SpiffeId,
                Subject = entry?.SpiffeId ?? svid.EntryId,
                DataJson = WritCedar.Canonical(data),
            };
            var outcome = await server.Store.PooledSvids.MarkUsedAsync(svid.Serial, caller.SpiffeId, u.InstanceId, u.UsedAt, [record], ct).ConfigureAwait(false);
            if (outcome == PooledUseOutcome.Marked)
                ServerLog.PooledUsed(log, svid.Serial, svid.EntryId, u.InstanceId, caller.SpiffeId);
            if (outcome != PooledUseOutcome.Unknown)
                acked.Add(svid.Serial);
        }
        return acked;
    }

    private WritException Refused(AttestedNode caller, string entryId, string code, WritErrorKind kind, string reason)
    {
        ServerLog.PooledRefused(log, caller.SpiffeId, entryId, code, reason);
        return new WritException(code, kind, reason);
    }
}
