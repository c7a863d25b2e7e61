namespace Writ.Server.Ca.Rotation;

/// <summary>
/// The per-kind part of authority rotation: how a new authority of this kind is made (key and public material) and how
/// its transitions are logged. <see cref="AuthorityRotation{T}"/> holds everything else, once for every kind.
/// </summary>
internal interface IAuthorityKind<T> where T : IAuthorityRecord<T>
{
    /// <summary>Generates a key in the key manager and makes the authority's public material (certificate, public key).</summary>
    Task<T> CreateAsync(AuthorityStatus status, DateTimeOffset now, CancellationToken ct);

    /// <summary>False when a successor to <paramref name="active"/> would gain nothing yet (e.g. capped at the same upstream expiry).</summary>
    Task<bool> MayPrepareSuccessorAsync(T active, CancellationToken ct);

    void Created(T authority);

    void Prepared(T authority, DateTimeOffset activatesAt);

    void Activated(T authority);

    void Pruned(T authority);
}

/// <summary>
/// The authority-rotation state machine SPIRE uses, for any kind of authority (X.509 CA, JWT signing key). One pass over
/// the journal's authorities of one kind:
/// <list type="table">
/// <listheader><term>state at <c>now</c></term><description>transition</description></listheader>
/// <item><term>no unexpired active; an unexpired prepared</term><description>prepared → active (older actives → old)</description></item>
/// <item><term>no unexpired active, no prepared</term><description>a new authority is created active</description></item>
/// <item><term>active past <see cref="PrepareLead"/> before expiry, no prepared</term><description>a new authority is created prepared (published in this pass, signing from a later one)</description></item>
/// <item><term>active within <see cref="ActivateLead"/> of expiry, a prepared</term><description>active → old, prepared → active</description></item>
/// <item><term>not active, expired more than the prune margin ago</term><description>pruned (<see cref="Prune"/>)</description></item>
/// </list>
/// </summary>
internal sealed class AuthorityRotation<T>(IAuthorityKind<T> kind, TimeSpan pruneMargin) where T : class, IAuthorityRecord<T>
{
    /// <summary>How long before the active authority's expiry its successor is prepared and published: half its lifetime, at most 30 days (SPIRE).</summary>
    public static TimeSpan PrepareLead(TimeSpan lifetime) => lifetime / 2 < TimeSpan.FromDays(30) ? lifetime / 2 : TimeSpan.FromDays(30);

    /// <summary>How long before the active authority's expiry its successor starts signing: a sixth of its lifetime, at most 7 days (SPIRE).</summary>
    public static TimeSpan ActivateLead(TimeSpan lifetime) => lifetime / 6 < TimeSpan.FromDays(7) ? lifetime / 6 : TimeSpan.FromDays(7);

    /// <summary>Applies the one transition due at <paramref name="now"/> to <paramref name="list"/>; true when it changed.</summary>
    public async Task<bool> AdvanceAsync(List<T> list, DateTimeOffset now, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(list);
        var active = list.FirstOrDefault(a => a.Status == AuthorityStatus.Active && a.NotAfter > now);
        if (active is null)
        {
            // Nothing usable signs: the prepared authority (already published) takes over, or a new one must sign at once.
            var prepared = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared && a.NotAfter > now);
            if (prepared is not null)
            {
                list[list.IndexOf(prepared)] = prepared.WithStatus(AuthorityStatus.Active);
                kind.Activated(prepared);
            }
            else
            {
                var created = await kind.CreateAsync(AuthorityStatus.Active, now, ct).ConfigureAwait(false);
                list.Add(created);
                kind.Created(created);
            }
            Demote(list);
            return true;
        }
        var lifetime = active.NotAfter - active.NotBefore;
        var next = list.FirstOrDefault(a => a.Status == AuthorityStatus.Prepared);
        if (next is null && now >= active.NotAfter - PrepareLead(lifetime))
        {
            if (!await kind.MayPrepareSuccessorAsync(active, ct).ConfigureAwait(false))
            {
                return false;
            }
            var created = await kind.CreateAsync(AuthorityStatus.Prepared, now, ct).ConfigureAwait(false);
            list.Add(created);
            var activatesAt = active.NotAfter - ActivateLead(lifetime);
            kind.Prepared(created, activatesAt > now ? activatesAt : now);
            // Published in this pass, signing from a later one: never sign with an authority nobody has had a chance to trust.
            return true;
        }
        if (next is not null && active.NotAfter - now <= ActivateLead(lifetime))
        {
            list[list.IndexOf(active)] = active.WithStatus(AuthorityStatus.Old);
            list[list.IndexOf(next)] = next.WithStatus(AuthorityStatus.Active);
            kind.Activated(next);
            return true;
        }
        return false;
    }

    /// <summary>
    /// Removes and returns the authorities that expired more than the prune margin ago. Never the one that signs:
    /// <see cref="AdvanceAsync"/> replaced it first. Call <see cref="Pruned"/> once the shorter journal is stored.
    /// </summary>
    public List<T> Prune(List<T> list, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(list);
        var pruned = list.Where(a => a.Status != AuthorityStatus.Active && a.NotAfter + pruneMargin < now).ToList();
        list.RemoveAll(pruned.Contains);
        return pruned;
    }

    /// <summary>Reports authorities pruned by a pass that took effect.</summary>
    public void Pruned(IEnumerable<T> pruned)
    {
        foreach (var a in pruned)
        {
            kind.Pruned(a);
        }
    }

    /// <summary>Keeps exactly one active authority: the newest active one; earlier actives become old.</summary>
    private static void Demote(List<T> list)
    {
        var actives = list.Select((a, i) => (a, i)).Where(x => x.a.Status == AuthorityStatus.Active).ToList();
        foreach (var (a, i) in actives.Take(actives.Count - 1))
        {
            list[i] = a.WithStatus(AuthorityStatus.Old);
        }
    }
}
