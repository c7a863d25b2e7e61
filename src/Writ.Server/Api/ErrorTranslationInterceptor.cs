using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Writ.Server.Registration;
using Writ.Server.Storage;

namespace Writ.Server.Api;

/// <summary>
/// The one place where exceptions become gRPC statuses. Expected failures keep their one-line message; anything else
/// is logged with its stack trace on the server and reaches the client as "internal error" with an event id to look up.
/// </summary>
public sealed class ErrorTranslationInterceptor(ILogger<ErrorTranslationInterceptor> log) : Interceptor
{
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
        var (code, message) = e switch
        {
            // Minimal until the errors lane's interceptor: the kind names the status, the detail starts with the code.
            Writ.Protocol.Errors.WritException w when w.Kind != Writ.Protocol.Errors.WritErrorKind.Internal =>
                (Enum.Parse<StatusCode>(w.Kind.ToString()), $"{w.Code}: {w.Message}"),
            Writ.Protocol.Errors.WritException w => (StatusCode.Internal, $"{w.Code}: {w.Message}"),
            ValidationException => (StatusCode.InvalidArgument, e.Message),
            ArgumentException => (StatusCode.InvalidArgument, e.Message),   // the store's checks of malformed ids and fields
            Issuance.IssuanceRateLimitedException => (StatusCode.ResourceExhausted, e.Message),
            StoreNotFoundException => (StatusCode.NotFound, e.Message),
            StoreConflictException => (StatusCode.AlreadyExists, e.Message),
            StoreUnavailableException => (StatusCode.Unavailable, e.Message),
            StoreException => (StatusCode.FailedPrecondition, e.Message),
            OperationCanceledException => (StatusCode.Cancelled, "the call was cancelled"),
            _ => (StatusCode.Internal, ""),
        };
        if (code == StatusCode.Internal && e is not Writ.Protocol.Errors.WritException)
        {
            var errorId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
            ServerLog.UnhandledError(log, e, context.Method, errorId);
            message = $"internal error {errorId}: the server log has the details";
        }
        else if (code == StatusCode.Unavailable)
        {
            ServerLog.StoreUnavailable(log, context.Method, e.Message);
        }
        return new RpcException(new Status(code, message));
    }
}
