using Grpc.Core;

namespace Writ.Agent.WorkloadApi;

/// <summary>How delivering one report to the server ended.</summary>
/// <param name="Delivered">the server accepted it</param>
/// <param name="Failure">why it was not delivered (refused for good, or given up after the last attempt); null when it
/// was delivered or the agent is stopping</param>
public readonly record struct ReportOutcome(bool Delivered, string? Failure);

/// <summary>
/// The one retry rule of the agent's background reports to the server (JWT replays, refused workloads): a refusal that
/// another attempt cannot change (InvalidArgument, PermissionDenied, Unimplemented) ends it; an unreachable server or an
/// agent not attested yet is retried with a doubling delay (at most 30 s) up to <c>maxAttempts</c>; the agent stopping
/// ends it quietly.
/// Each attempt goes through the agent's <see cref="Sync.ServerPool"/>: to whichever server is current, and once more to
/// the next when that one fails, so a report reaches any server that is reachable.
/// </summary>
public static class ServerReportDelivery
{
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(30);

    /// <param name="send">one attempt, with the cancellation token of the agent's stop</param>
    /// <param name="retrying">told before each retry: the reason, the attempt that failed and the delay before the next</param>
    public static async Task<ReportOutcome> SendAsync(Func<CancellationToken, Task> send, int maxAttempts, TimeSpan firstDelay, TimeProvider time,
        Action<string, int, TimeSpan>? retrying, CancellationToken stopping)
    {
        ArgumentNullException.ThrowIfNull(send);
        ArgumentNullException.ThrowIfNull(time);
        var delay = firstDelay;
        for (var attempt = 1; ; attempt++)
        {
            string reason;
            try
            {
                await send(stopping).ConfigureAwait(false);
                return new ReportOutcome(true, null);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.InvalidArgument or StatusCode.PermissionDenied or StatusCode.Unimplemented)
            {
                return new ReportOutcome(false, $"{e.StatusCode}: {e.Status.Detail}");
            }
            catch (RpcException e) when (!stopping.IsCancellationRequested)
            {
                reason = $"{e.StatusCode}: {e.Status.Detail}";
            }
            catch (InvalidOperationException e)
            {
                reason = e.Message;   // not attested yet
            }
            catch (OperationCanceledException)
            {
                return default;
            }
            catch (RpcException)
            {
                return default;   // the agent is stopping
            }
            if (attempt >= maxAttempts)
            {
                return new ReportOutcome(false, reason);
            }
            retrying?.Invoke(reason, attempt, delay);
            try
            {
                await Task.Delay(delay, time, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return default;
            }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxDelay.Ticks));
        }
    }
}
