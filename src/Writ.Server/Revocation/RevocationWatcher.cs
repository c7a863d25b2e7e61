using Microsoft.Extensions.Logging;
using Writ.Protocol.Hosting;
using Writ.Server.Storage;

namespace Writ.Server.Revocation;

/// <summary>
/// Keeps the <see cref="RevocationService"/>'s in-memory deny list current (hosted; one per server): wakes on every store
/// revision — revocations made here at once, by other servers through the store's change watcher — and, every
/// <see cref="RevocationService.PruneMargin"/>, prunes the revocations of credentials long expired. A store error is
/// logged and retried after a second.
/// </summary>
public sealed class RevocationWatcher(RevocationService revocations, IWritStore store, TimeProvider time, Random jitter, ILogger<RevocationWatcher> log)
    : GuardedBackgroundService("revocation watch", LoopFailurePolicy.Restart, time, jitter, log)
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    private DateTimeOffset _lastPrune = time.GetUtcNow();   // the first sweep one margin after start (kept across restarts)

    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await revocations.EnsureCurrentAsync(-1, stoppingToken).ConfigureAwait(false);
                var now = Time.GetUtcNow();
                if (now - _lastPrune >= RevocationService.PruneMargin)
                {
                    _lastPrune = now;
                    await revocations.PruneAsync(now, stoppingToken).ConfigureAwait(false);
                }
                // The next store revision, or the next prune, whichever comes first.
                using var wake = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                var untilPrune = _lastPrune + RevocationService.PruneMargin - Time.GetUtcNow();
                var changed = store.Entries.WaitForChangeAsync(revocations.Revision, wake.Token);
                var first = await Task.WhenAny(changed, Task.Delay(untilPrune > TimeSpan.Zero ? untilPrune : TimeSpan.Zero, Time, wake.Token)).ConfigureAwait(false);
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
            catch (Exception e) when (e is StoreException or InvalidOperationException && !stoppingToken.IsCancellationRequested)
            {
                ServerLog.RevocationRefreshFailed(Log, e.Message);
                await Task.Delay(RetryDelay, Time, stoppingToken).ConfigureAwait(false);
            }
        }
    }
}
