using Microsoft.Extensions.Logging;
using Writ.Protocol;
using Writ.Protocol.Hosting;
using Writ.Server.Storage;

namespace Writ.Server.Revocation;

/// <summary>
/// Keeps the <see cref="RevocationService"/>'s in-memory deny list current (hosted; one per server): wakes on every store
/// revision — revocations made here at once, by other servers through the store's change watcher — and, every
/// <see cref="RevocationService.PruneMargin"/>, prunes the revocations of credentials long expired. With several servers
/// on the store (issue #16) it also signs this server's CRLs as soon as revocations change, publishes them in the store
/// (<paramref name="announce"/> tells the other servers) and reads the other servers' CRLs when one announces them
/// (<paramref name="otherServersCrls"/>) or every <see cref="OtherServersPoll"/> (a lost announcement), waking the sync
/// streams (<paramref name="streams"/>) to push them. A store error is logged and retried after a second.
/// </summary>
public sealed class RevocationWatcher(RevocationService revocations, IWritStore store, TimeProvider time, Random jitter, ILogger<RevocationWatcher> log,
    ChangeSignal? otherServersCrls = null, Action? announce = null, ChangeSignal? streams = null)
    : GuardedBackgroundService("revocation watch", LoopFailurePolicy.Restart, time, jitter, log)
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    /// <summary>How often the other servers' CRLs are read when no announcement came.</summary>
    public static readonly TimeSpan OtherServersPoll = TimeSpan.FromSeconds(5);

    private DateTimeOffset _lastPrune = time.GetUtcNow();   // the first sweep one margin after start (kept across restarts)
    private readonly ChangeSignal _otherServersCrls = otherServersCrls ?? new ChangeSignal();

    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var otherGeneration = _otherServersCrls.Generation;
                await revocations.EnsureCurrentAsync(-1, stoppingToken).ConfigureAwait(false);
                var refreshDue = RevocationService.CrlValidity / 2;
                if (!revocations.Stopped)
                {
                    // Signed now rather than when a sync stream first asks: the other servers' agents need it too.
                    var crl = await revocations.CrlAsync(revocations.Revision, stoppingToken).ConfigureAwait(false);
                    refreshDue = crl.ThisUpdate + (RevocationService.CrlValidity / 2) - Time.GetUtcNow();
                    if (await revocations.PublishCrlsAsync(stoppingToken).ConfigureAwait(false))
                    {
                        announce?.Invoke();
                    }
                    if (await revocations.RefreshOtherServersCrlsAsync(stoppingToken).ConfigureAwait(false))
                    {
                        streams?.Raise();
                    }
                }
                var now = Time.GetUtcNow();
                if (now - _lastPrune >= RevocationService.PruneMargin)
                {
                    _lastPrune = now;
                    await revocations.PruneAsync(now, stoppingToken).ConfigureAwait(false);
                }
                // The next store revision, another server's CRLs, the CRL's re-signing or the next prune, whichever comes first.
                using var wake = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                var untilPrune = _lastPrune + RevocationService.PruneMargin - Time.GetUtcNow();
                var delay = TimeSpan.FromTicks(Math.Min(Math.Min(untilPrune.Ticks, refreshDue.Ticks + TimeSpan.TicksPerSecond), OtherServersPoll.Ticks));
                var changed = store.Entries.WaitForChangeAsync(revocations.Revision, wake.Token);
                var first = await Task.WhenAny(changed, _otherServersCrls.WaitAsync(otherGeneration, wake.Token),
                    Task.Delay(delay > TimeSpan.Zero ? delay : TimeSpan.Zero, Time, wake.Token)).ConfigureAwait(false);
                await wake.CancelAsync().ConfigureAwait(false);
                if (first == changed)
                {
                    await changed.ConfigureAwait(false);   // a store error surfaces here
                }
            }
            catch (ObjectDisposedException)
            {
                return;   // the store is closed: the server is stopping
            }
            catch (OperationCanceledException) when (revocations.Stopped && !stoppingToken.IsCancellationRequested)
            {
                // The server is stopping: no more CRLs; the loop ends with the host.
                await Task.Delay(Timeout.InfiniteTimeSpan, Time, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is StoreException or InvalidOperationException && !stoppingToken.IsCancellationRequested)
            {
                ServerLog.RevocationRefreshFailed(Log, e.Message);
                await Task.Delay(RetryDelay, Time, stoppingToken).ConfigureAwait(false);
            }
        }
    }
}
