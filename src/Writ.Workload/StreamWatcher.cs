using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Writ.Workload;

/// <summary>
/// Keeps one server stream of the Workload API open: applies each message, reconnects with backoff when the stream
/// fails or ends, and reports the first good update (or a refusal that waiting cannot fix) to <c>CreateAsync</c>.
/// </summary>
internal sealed class StreamWatcher<T>(string name, WorkloadApiClient client, Func<CallOptions, AsyncServerStreamingCall<T>> open, Func<T, string?> apply)
{
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile string? _lastError;

    public Task RunAsync(CancellationToken ct) => Task.Run(() => LoopAsync(ct), CancellationToken.None);

    private async Task LoopAsync(CancellationToken ct)
    {
        var o = client.Options;
        var backoff = new Backoff(o.InitialBackoff, o.MaxBackoff, o.Jitter);
        while (!ct.IsCancellationRequested)
        {
            string status;
            string detail;
            try
            {
                using var call = open(WorkloadApiClient.Call(ct));
                while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
                {
                    var error = apply(call.ResponseStream.Current);
                    if (error is null)
                    {
                        SdkLog.StreamUpdate(client.Logger, name);
                        backoff.Reset();
                        _first.TrySetResult();
                    }
                    else
                    {
                        _lastError = error;
                        SdkLog.UpdateIgnored(client.Logger, name, error);
                    }
                }
                status = "Ended";
                detail = "the Workload API closed the stream";
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException e) when (ct.IsCancellationRequested && e.StatusCode == StatusCode.Cancelled)
            {
                return;
            }
            catch (RpcException e)
            {
                status = e.StatusCode.ToString();
                detail = WorkloadApiClient.OneLine(e.Status.Detail);
                if (!_first.Task.IsCompleted && e.StatusCode is StatusCode.PermissionDenied or StatusCode.Unimplemented)
                {
                    // Waiting cannot fix these: CreateAsync says so now rather than at its deadline.
                    _first.TrySetException(client.Map(e, name));
                }
            }
            _lastError = $"{status}: {detail}";
            var delay = backoff.Next();
            SdkLog.StreamFailed(client.Logger, name, status, detail, (long)delay.TotalMilliseconds);
            try
            {
                await Task.Delay(delay, o.TimeProvider, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Waits for the first good update; WRIT-SDK-TIMEOUT (with the last error) when the deadline passes first.</summary>
    public async Task WaitFirstAsync(CancellationToken ct)
    {
        var o = client.Options;
        try
        {
            await _first.Task.WaitAsync(o.InitialTimeout, o.TimeProvider, ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new WorkloadApiException(WorkloadErrors.Timeout,
                $"no {name} update from the Workload API at {client.SocketPath} within {o.InitialTimeout.TotalSeconds:0.###} s (last error: {_lastError ?? "none"}): is the agent running?");
        }
    }
}
