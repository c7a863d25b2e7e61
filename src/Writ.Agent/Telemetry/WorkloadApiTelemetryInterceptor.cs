using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Writ.Agent.Telemetry;

/// <summary>
/// Counts every Workload API call by method and final status code and runs it inside an agent activity, so the calls it
/// makes to the server carry its trace context (<see cref="TraceContextHandler"/>).
/// </summary>
public sealed class WorkloadApiTelemetryInterceptor(WritAgentMetrics metrics) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(continuation);
        using var activity = WritAgentMetrics.Activities.StartActivity(context.Method, ActivityKind.Server);
        var code = StatusCode.Unknown;
        try
        {
            var response = await continuation(request, context).ConfigureAwait(false);
            code = StatusCode.OK;
            return response;
        }
        catch (RpcException e)
        {
            code = e.StatusCode;
            throw;
        }
        finally
        {
            Finish(context, code, activity);
        }
    }

    /// <summary>
    /// A stream is counted once: OK when its first response is written (a watch stream then lives until the client
    /// leaves, which says nothing about how it was served), else with the status it ended with before answering.
    /// </summary>
    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(continuation);
        using var activity = WritAgentMetrics.Activities.StartActivity(context.Method, ActivityKind.Server);
        var writer = new FirstWriteCounter<TResponse>(responseStream, () => Finish(context, StatusCode.OK, activity));
        var code = StatusCode.Unknown;
        try
        {
            await continuation(request, writer, context).ConfigureAwait(false);
            code = context.CancellationToken.IsCancellationRequested ? StatusCode.Cancelled : StatusCode.OK;
        }
        catch (RpcException e)
        {
            code = e.StatusCode;
            throw;
        }
        catch (OperationCanceledException)
        {
            code = StatusCode.Cancelled;
            throw;
        }
        finally
        {
            if (!writer.Counted)
            {
                Finish(context, code, activity);
            }
        }
    }

    private sealed class FirstWriteCounter<T>(IServerStreamWriter<T> inner, Action first) : IServerStreamWriter<T>
    {
        public bool Counted { get; private set; }

        public WriteOptions? WriteOptions
        {
            get => inner.WriteOptions;
            set => inner.WriteOptions = value;
        }

        public Task WriteAsync(T message) => WriteAsync(message, CancellationToken.None);

        public async Task WriteAsync(T message, CancellationToken cancellationToken)
        {
            await inner.WriteAsync(message, cancellationToken).ConfigureAwait(false);
            if (!Counted)
            {
                Counted = true;
                first();
            }
        }
    }

    private void Finish(ServerCallContext context, StatusCode code, Activity? activity)
    {
        var name = CodeName(code);
        metrics.CallFinished(MethodName(context.Method), name);
        activity?.SetTag("rpc.grpc.status_code", (int)code);
    }

    /// <summary>"/SpiffeWorkloadAPI/FetchX509SVID" → "FetchX509SVID" (the service's methods: a fixed set).</summary>
    internal static string MethodName(string method)
    {
        var slash = method.LastIndexOf('/');
        return slash < 0 ? method : method[(slash + 1)..];
    }

    /// <summary>The gRPC names (OK, PERMISSION_DENIED, …): a fixed set of 17.</summary>
    internal static string CodeName(StatusCode code) => code switch
    {
        StatusCode.OK => "OK",
        StatusCode.Cancelled => "CANCELLED",
        StatusCode.InvalidArgument => "INVALID_ARGUMENT",
        StatusCode.DeadlineExceeded => "DEADLINE_EXCEEDED",
        StatusCode.NotFound => "NOT_FOUND",
        StatusCode.AlreadyExists => "ALREADY_EXISTS",
        StatusCode.PermissionDenied => "PERMISSION_DENIED",
        StatusCode.ResourceExhausted => "RESOURCE_EXHAUSTED",
        StatusCode.FailedPrecondition => "FAILED_PRECONDITION",
        StatusCode.Aborted => "ABORTED",
        StatusCode.OutOfRange => "OUT_OF_RANGE",
        StatusCode.Unimplemented => "UNIMPLEMENTED",
        StatusCode.Internal => "INTERNAL",
        StatusCode.Unavailable => "UNAVAILABLE",
        StatusCode.DataLoss => "DATA_LOSS",
        StatusCode.Unauthenticated => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    };
}
