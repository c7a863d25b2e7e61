using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;

namespace Writ.Server.Api;

/// <summary>
/// The one place where the server's exceptions become gRPC statuses, one instance per API (the agent API and the admin
/// API each register it for their own service). A <see cref="WritException"/> (validation and store errors are ones)
/// keeps its one-line message and travels with its stable code (<see cref="WritStatus"/>: detail <c>WRIT-…: message</c>
/// and the <c>writ-error-code</c> trailer); anything else is logged with its stack trace on the server and reaches the
/// client as <c>WRIT-INTERNAL</c> with an error id to look up in that log.
/// </summary>
public sealed class ErrorTranslationInterceptor(ILogger<ErrorTranslationInterceptor> log) : Interceptor
{
    /// <summary>The call was cancelled before it finished (the client left, or its deadline passed).</summary>
    public const string CancelledCode = "WRIT-CANCELLED";

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw Translate(e, context);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException)
        {
            if (e is OperationCanceledException && context.CancellationToken.IsCancellationRequested)
            {
                return;
            }
            throw Translate(e, context);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw Translate(e, context);
        }
    }

    private RpcException Translate(Exception e, ServerCallContext context)
    {
        switch (e)
        {
            case WritException w:
                if (w.Kind == WritErrorKind.Unavailable)
                {
                    ServerLog.StoreUnavailable(log, context.Method, w.Message);
                }
                return WritStatus.ToRpcException(w);
            case ArgumentException:   // the store's checks of malformed ids and fields
                return WritStatus.Create(StatusCode.InvalidArgument, WritStatus.InvalidArgumentCode, e.Message);
            case OperationCanceledException:
                return WritStatus.Create(StatusCode.Cancelled, CancelledCode, "the call was cancelled");
            default:
                var errorId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
                ServerLog.UnhandledError(log, e, context.Method, errorId);
                return WritStatus.Create(StatusCode.Internal, WritStatus.InternalCode, $"internal error {errorId}: the server log has the details");
        }
    }
}
