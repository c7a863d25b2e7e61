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

    public AgentState(TrustBundle bootstrap) => _current = new AgentSnapshot(new Dictionary<string, Entry>(), bootstrap, 0);

    public ChangeSignal Changed { get; } = new();

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
            _current = new AgentSnapshot(_pending, _pendingBundle ?? _current.Bundle, update.Revision) { Crls = _pendingCrls ?? _current.Crls };
            _pending = null;
            _pendingBundle = null;
            _pendingCrls = null;
            if (update.Reset)
            {
                Synced = true;
            }
        }
        Changed.Raise();
        return _current;
    }

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
