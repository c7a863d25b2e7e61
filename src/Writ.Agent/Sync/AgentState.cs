using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Protocol;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Agent.Sync;

/// <summary>An immutable view of what the agent may serve: its entries (by id), the trust bundle, the server revision.</summary>
public sealed record AgentSnapshot(IReadOnlyDictionary<string, Entry> Entries, TrustBundle Bundle, long Revision)
{
    /// <summary>The CRLs pushed with the bundle (served in the Workload API's <c>crl</c> fields); empty before the first push.</summary>
    public CrlSet Crls { get; init; } = CrlSet.Empty;

    /// <summary>
    /// The foreign trust domains' bundles the server holds (issue #16, federation), by trust domain; empty before the
    /// first push. A workload is served only those its entries federate with (<see cref="FederatedFor"/>).
    /// </summary>
    public IReadOnlyDictionary<TrustDomain, TrustBundle> Federated { get; init; } = new Dictionary<TrustDomain, TrustBundle>();

    /// <summary>
    /// The federated bundles of the trust domains <paramref name="entries"/> federate with (their <c>federates_with</c>,
    /// united), ordered by trust domain name; a domain named by an entry whose bundle the agent does not hold (not
    /// fetched yet, or refused) is left out.
    /// </summary>
    public IReadOnlyList<TrustBundle> FederatedFor(IEnumerable<Entry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (Federated.Count == 0)
        {
            return [];
        }
        SortedDictionary<string, TrustBundle>? found = null;
        foreach (var e in entries)
        {
            foreach (var name in e.FederatesWith)
            {
                if (TrustDomain.TryParse(name, out var td, out _) && Federated.TryGetValue(td, out var bundle))
                {
                    (found ??= new(StringComparer.Ordinal))[td.Name] = bundle;
                }
            }
        }
        return found is null ? [] : [.. found.Values];
    }
}

/// <summary>
/// What the server pushed to this agent. Pages are applied to a pending copy and published together at
/// <c>page_end</c>, so a reader never sees half a batch. <see cref="Changed"/> is raised on every publish and by the
/// SVID cache, so Workload API streams wake on entry, bundle and SVID changes alike.
/// </summary>
public sealed class AgentState
{
    private readonly Lock _lock = new();
    private AgentSnapshot _current;
    private Dictionary<string, Entry>? _pending;
    private TrustBundle? _pendingBundle;
    private CrlSet? _pendingCrls;
    private Dictionary<TrustDomain, TrustBundle>? _pendingFederated;   // null: the batch leaves them as they are

    public AgentState(TrustBundle bootstrap) => _current = new AgentSnapshot(new Dictionary<string, Entry>(), bootstrap, 0);

    public ChangeSignal Changed { get; } = new();

    /// <summary>Where refused or changed federated bundles are logged (the host sets it once its logging is built).</summary>
    public ILogger Log { get; set; } = NullLogger.Instance;

    /// <summary>Revoked serials and JWT ids pushed by the server (issue #6); fed by the sync client.</summary>
    public RevocationSet Revocations { get; } = new();

    private Writ.Authz.CallPolicySet _callPolicy = Writ.Authz.CallPolicySet.None;

    /// <summary>
    /// The call policy request-time decisions use (ext_authz, the SDK's Authorize): the last good one the server pushed
    /// (<c>SyncUpdate.call_policy</c>), <see cref="Writ.Authz.CallPolicySet.None"/> before the first (every call denied).
    /// </summary>
    public Writ.Authz.CallPolicySet CallPolicy => Volatile.Read(ref _callPolicy);

    /// <summary>Takes a pushed call policy; a bad one changes nothing (the previous is kept) and says why.</summary>
    public bool TrySetCallPolicy(CallPolicy pushed, out string error)
    {
        if (!Writ.Authz.CallPolicySet.TryLoad(pushed, out var set, out error))
        {
            return false;
        }
        Volatile.Write(ref _callPolicy, set!);
        return true;
    }

    public AgentSnapshot Current
    {
        get
        {
            lock (_lock)
            {
                return _current;
            }
        }
    }

    /// <summary>True once a full state has been received from the server at least once.</summary>
    public bool Synced { get; private set; }

    /// <summary>Applies one sync page. Returns the published snapshot when the page ended a batch, otherwise null.</summary>
    public AgentSnapshot? Apply(SyncUpdate update, TrustDomain td)
    {
        lock (_lock)
        {
            if (update.Reset || _pending is null)
            {
                _pending = update.Reset ? new Dictionary<string, Entry>() : new Dictionary<string, Entry>(_current.Entries);
                _pendingBundle = null;
                _pendingCrls = null;
                // A full state without federated bundles means none: nothing stale from before the reset is kept.
                _pendingFederated = update.Reset ? [] : null;
            }
            if (update.FederatedBundlesSet)
            {
                _pendingFederated = ReadFederated(update.FederatedBundles, td, _current.Federated);
            }
            foreach (var e in update.Upserts)
            {
                _pending[e.Id] = e;
            }
            foreach (var id in update.DeletedEntryIds)
            {
                _pending.Remove(id);
            }
            if (update.Bundle is { SpiffeBundleJson.Length: > 0 } b
                && TrustBundle.TryParseSpiffeJson(td, b.SpiffeBundleJson.ToStringUtf8(), out var parsed, out _))
            {
                _pendingBundle = parsed;
            }
            if (update.Bundle is { } withCrls)
            {
                // Every pushed bundle carries the CRLs as they are now (none: nothing revoked is unexpired).
                _pendingCrls = CrlSet.From(withCrls);
            }
            if (!update.PageEnd)
            {
                return null;
            }
            var federated = _pendingFederated is null ? _current.Federated : Published(_pendingFederated, _current.Federated);
            _current = new AgentSnapshot(_pending, _pendingBundle ?? _current.Bundle, update.Revision)
            {
                Crls = _pendingCrls ?? _current.Crls,
                Federated = federated,
            };
            _pending = null;
            _pendingBundle = null;
            _pendingCrls = null;
            _pendingFederated = null;
            if (update.Reset)
            {
                Synced = true;
            }
        }
        Changed.Raise();
        return _current;
    }

    /// <summary>
    /// The pushed set of foreign bundles, each parsed as a SPIFFE bundle of its trust domain. One that names no valid
    /// trust domain, names ours (a foreign bundle never replaces our own trust), repeats a domain, or cannot be read is
    /// refused and logged; the one held before for that domain, if any, is kept.
    /// </summary>
    private Dictionary<TrustDomain, TrustBundle> ReadFederated(IEnumerable<Bundle> pushed, TrustDomain own, IReadOnlyDictionary<TrustDomain, TrustBundle> previous)
    {
        var set = new Dictionary<TrustDomain, TrustBundle>();
        var refused = new HashSet<TrustDomain>();
        foreach (var b in pushed)
        {
            if (!TrustDomain.TryParse(b.TrustDomain, out var td, out var error))
            {
                AgentLog.FederatedBundleRefused(Log, Printable(b.TrustDomain), $"the trust domain is invalid ({error})");
                continue;
            }
            string? why = null;
            if (td == own)
            {
                why = "it names this agent's own trust domain: a foreign bundle never replaces this domain's own";
            }
            else if (set.ContainsKey(td) || refused.Contains(td))
            {
                why = "the server sent it twice in one set; only the first is considered";
            }
            else if (!TrustBundle.TryParseSpiffeJson(td, b.SpiffeBundleJson.ToStringUtf8(), out var bundle, out var parseError))
            {
                why = $"its SPIFFE bundle cannot be read ({parseError})";
                refused.Add(td);
                if (previous.TryGetValue(td, out var kept))
                {
                    set[td] = kept;
                    why += "; the one held before is kept";
                }
            }
            else
            {
                set[td] = b.Sequence != 0 && bundle.Sequence is null ? bundle.WithSequence(b.Sequence) : bundle;
            }
            if (why is not null)
            {
                AgentLog.FederatedBundleRefused(Log, td.Name, why);
            }
        }
        return set;
    }

    /// <summary>The new set, logged against the previous one (which domains came, went, or changed).</summary>
    private IReadOnlyDictionary<TrustDomain, TrustBundle> Published(Dictionary<TrustDomain, TrustBundle> next, IReadOnlyDictionary<TrustDomain, TrustBundle> previous)
    {
        foreach (var (td, bundle) in next.ToList())
        {
            if (previous.TryGetValue(td, out var before) && (ReferenceEquals(before, bundle) || before.ToSpiffeJson() == bundle.ToSpiffeJson()))
            {
                next[td] = before;   // unchanged: the same object, so what was derived from it (DER, PEM) is reused
                continue;
            }
            AgentLog.FederatedBundleUpdated(Log, td.Name, bundle.X509Authorities.Count, bundle.JwtAuthorities.Count, bundle.Sequence ?? 0);
        }
        foreach (var td in previous.Keys)
        {
            if (!next.ContainsKey(td))
            {
                AgentLog.FederatedBundleRemoved(Log, td.Name);
            }
        }
        return next;
    }

    private static string Printable(string s) => s.Length > 80 ? s[..80] + "…" : s.ReplaceLineEndings(" ");

    /// <summary>A bundle learnt outside sync (attestation, renewal).</summary>
    public void SetBundle(TrustBundle bundle)
    {
        lock (_lock)
        {
            _current = _current with { Bundle = bundle };
        }
        Changed.Raise();
    }
}
