using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Writ.Server.Telemetry;

/// <summary>
/// One server activity per API call, continuing the caller's W3C trace context: the agent sends <c>traceparent</c>
/// (and <c>tracestate</c>) on its calls, so an issuance traced on the agent carries the same trace id here. When
/// ASP.NET Core already continued the trace (someone listens to its activities) that activity is the parent. Costs
/// nothing when no one listens to <see cref="WritServerMetrics.Activities"/>.
/// </summary>
public sealed class TraceContextInterceptor : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        using var activity = Start(context);
        return await continuation(request, context).ConfigureAwait(false);
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        using var activity = Start(context);
        await continuation(request, responseStream, context).ConfigureAwait(false);
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        using var activity = Start(context);
        await continuation(requestStream, responseStream, context).ConfigureAwait(false);
    }

    /// <summary>
    /// The activity of one call, named after its gRPC method; null when nobody listens. The caller's trace id is
    /// continued; its <c>tracestate</c> (free text of the caller's choosing) is not.
    /// </summary>
    internal static Activity? Start(ServerCallContext context)
    {
        var source = WritServerMetrics.Activities;
        if (!source.HasListeners())
        {
            return null;
        }
        if (Activity.Current is null
            && ActivityContext.TryParse(context.RequestHeaders.GetValue("traceparent"), null, isRemote: true, out var parent))
        {
            return source.StartActivity(context.Method, ActivityKind.Server, parent);
        }
        return source.StartActivity(context.Method, ActivityKind.Server);
    }
}
