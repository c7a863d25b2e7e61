using Writ.Protocol;
using Writ.Server.Storage;

namespace Writ.Server.Federation;

/// <summary>
/// The foreign trust domains' bundles this server holds, as one immutable snapshot with a version that moves when the
/// set changes — what every agent sync stream sends (one store read per change per server, not per stream). Reloaded
/// after this server's own federation writes and whenever the store revision moves (federation writes bump it, so a
/// bundle stored by another server sharing the store arrives here through the same change notification).
/// </summary>
public sealed class FederatedBundleCache(IWritStore store, ChangeSignal changes)
{
    private readonly SemaphoreSlim _reload = new(1, 1);
    private volatile Snapshot _current = new(0, []);

    /// <summary>One version of the foreign bundle set, ordered by trust domain.</summary>
    public sealed record Snapshot(long Version, IReadOnlyList<StoredBundle> Bundles);

    public Snapshot Current => _current;

    /// <summary>Reads the set from the store; when it differs, publishes a new version and wakes the sync streams.</summary>
    public async Task ReloadAsync(CancellationToken ct)
    {
        await _reload.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var list = await store.Federations.ListAsync(ct).ConfigureAwait(false);
            var bundles = list.Where(f => f.Bundle is not null).Select(f => f.Bundle!).ToList();
            var old = _current;
            if (old.Bundles.Count == bundles.Count && old.Bundles.Zip(bundles).All(p =>
                    p.First.TrustDomain == p.Second.TrustDomain && p.First.Sequence == p.Second.Sequence && p.First.SpiffeBundleJson == p.Second.SpiffeBundleJson))
            {
                return;
            }
            _current = new Snapshot(old.Version + 1, bundles);
        }
        finally
        {
            _reload.Release();
        }
        changes.Raise();
    }

    /// <summary>Reloads whenever the store revision moves (and at least every <paramref name="poll"/>), until stopped.</summary>
    public async Task RunAsync(TimeSpan poll, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var revision = await store.Entries.CurrentRevisionAsync(stop).ConfigureAwait(false);
            await ReloadAsync(stop).ConfigureAwait(false);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(stop);
            wait.CancelAfter(poll);
            try
            {
                await store.Entries.WaitForChangeAsync(revision, wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!stop.IsCancellationRequested)
            {
                // The poll interval passed without a change: reload anyway (a safety net, like the store's own poll).
            }
        }
    }
}
