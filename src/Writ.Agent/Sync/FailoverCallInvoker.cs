using Grpc.Core;

namespace Writ.Agent.Sync;

/// <summary>
/// Sends each call to the <see cref="ServerPool"/>'s current server. A unary call that fails with a server failure is
/// retried once on the next server (every agent→server call is safe to retry); streams report their failure to the pool
/// and leave reconnecting to their owner (the Sync loop, node attestation).
/// </summary>
internal sealed class FailoverCallInvoker(ServerPool pool) : CallInvoker
{
    public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        var (endpoint, invoker) = pool.Pick();
        try
        {
            var r = invoker.BlockingUnaryCall(method, host, options, request);
            pool.Succeeded(endpoint);
            return r;
        }
        catch (Exception e) when (ServerPool.IsServerFailure(e) && !options.CancellationToken.IsCancellationRequested)
        {
            pool.Failed(endpoint, ServerPool.Describe(e));
            var (next, again) = pool.Pick();
            if (next == endpoint)
            {
                throw;
            }
            var r = again.BlockingUnaryCall(method, host, options, request);
            pool.Succeeded(next);
            return r;
        }
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        AsyncUnaryCall<TResponse>? last = null;
        var response = RunAsync();
        return new AsyncUnaryCall<TResponse>(
            response,
            HeadersAsync(),
            () => last?.GetStatus() ?? throw new InvalidOperationException("the call has not started"),
            () => last?.GetTrailers() ?? throw new InvalidOperationException("the call has not started"),
            () => last?.Dispose());

        async Task<TResponse> RunAsync()
        {
            var (endpoint, invoker) = pool.Pick();
            last = invoker.AsyncUnaryCall(method, host, options, request);
            try
            {
                var r = await last.ResponseAsync.ConfigureAwait(false);
                pool.Succeeded(endpoint);
                return r;
            }
            catch (Exception e) when (ServerPool.IsServerFailure(e) && !options.CancellationToken.IsCancellationRequested)
            {
                pool.Failed(endpoint, ServerPool.Describe(e));
                var (next, again) = pool.Pick();
                if (next == endpoint)
                {
                    throw;
                }
                last.Dispose();
                last = again.AsyncUnaryCall(method, host, options, request);
                try
                {
                    var r = await last.ResponseAsync.ConfigureAwait(false);
                    pool.Succeeded(next);
                    return r;
                }
                catch (Exception e2) when (ServerPool.IsServerFailure(e2) && !options.CancellationToken.IsCancellationRequested)
                {
                    pool.Failed(next, ServerPool.Describe(e2));
                    throw;
                }
            }
        }

        async Task<Metadata> HeadersAsync()
        {
            try
            {
                await response.ConfigureAwait(false);
            }
            catch (Exception) when (last is not null)
            {
                // the headers of the attempt that ended the call (it may have failed after sending them)
            }
            return await last!.ResponseHeadersAsync.ConfigureAwait(false);
        }
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host,
        CallOptions options, TRequest request)
    {
        var (endpoint, invoker) = pool.Pick();
        var call = invoker.AsyncServerStreamingCall(method, host, options, request);
        return new AsyncServerStreamingCall<TResponse>(new ReportingReader<TResponse>(call.ResponseStream, pool, endpoint), call.ResponseHeadersAsync,
            call.GetStatus, call.GetTrailers, call.Dispose);
    }

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method,
        string? host, CallOptions options)
    {
        var (endpoint, invoker) = pool.Pick();
        var call = invoker.AsyncClientStreamingCall(method, host, options);
        return new AsyncClientStreamingCall<TRequest, TResponse>(new ReportingWriter<TRequest>(call.RequestStream, pool, endpoint), ReportAsync(call.ResponseAsync), call.ResponseHeadersAsync,
            call.GetStatus, call.GetTrailers, call.Dispose);

        async Task<TResponse> ReportAsync(Task<TResponse> response)
        {
            try
            {
                var r = await response.ConfigureAwait(false);
                pool.Succeeded(endpoint);
                return r;
            }
            catch (Exception e) when (ServerPool.IsServerFailure(e) && !options.CancellationToken.IsCancellationRequested)
            {
                pool.Failed(endpoint, ServerPool.Describe(e));
                throw;
            }
        }
    }

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method,
        string? host, CallOptions options)
    {
        var (endpoint, invoker) = pool.Pick();
        var call = invoker.AsyncDuplexStreamingCall(method, host, options);
        return new AsyncDuplexStreamingCall<TRequest, TResponse>(new ReportingWriter<TRequest>(call.RequestStream, pool, endpoint),
            new ReportingReader<TResponse>(call.ResponseStream, pool, endpoint),
            call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    /// <summary>A request stream that tells the pool when writing failed because of the server (e.g. the connection was refused).</summary>
    private sealed class ReportingWriter<T>(IClientStreamWriter<T> inner, ServerPool pool, string endpoint) : IClientStreamWriter<T>
    {
        public WriteOptions? WriteOptions
        {
            get => inner.WriteOptions;
            set => inner.WriteOptions = value;
        }

        public Task WriteAsync(T message) => Report(inner.WriteAsync(message));

        public Task WriteAsync(T message, CancellationToken cancellationToken) => Report(inner.WriteAsync(message, cancellationToken));

        public Task CompleteAsync() => Report(inner.CompleteAsync());

        private async Task Report(Task write)
        {
            try
            {
                await write.ConfigureAwait(false);
            }
            catch (Exception e) when (ServerPool.IsServerFailure(e))
            {
                pool.Failed(endpoint, ServerPool.Describe(e));
                throw;
            }
        }
    }

    /// <summary>A response stream that tells the pool how its server did: a first message is a success, a server failure a failure.</summary>
    private sealed class ReportingReader<T>(IAsyncStreamReader<T> inner, ServerPool pool, string endpoint) : IAsyncStreamReader<T>
    {
        private bool _succeeded;

        public T Current => inner.Current;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            try
            {
                var more = await inner.MoveNext(cancellationToken).ConfigureAwait(false);
                if (more && !_succeeded)
                {
                    _succeeded = true;
                    pool.Succeeded(endpoint);
                }
                return more;
            }
            catch (Exception e) when (ServerPool.IsServerFailure(e) && !cancellationToken.IsCancellationRequested)
            {
                pool.Failed(endpoint, ServerPool.Describe(e));
                throw;
            }
        }
    }
}
