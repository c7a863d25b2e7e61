using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Writ.Agent.NodeAttestation;
using Writ.Protocol.Errors;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// The one place where the Workload API's failures become gRPC statuses with a stable code (<see cref="WritStatus"/>:
/// detail <c>WRIT-…: message</c> and the <c>writ-error-code</c> trailer). The status codes SPIFFE mandates are kept as the
/// service chose them (no identity → PermissionDenied, missing header or bad JWT → InvalidArgument, …); a refusal that
/// carries no code yet gets the Workload API's code for its status. A fatal condition met during a call (the agent was
/// banned or evicted) stops the agent and answers Unavailable; anything unexpected is logged with its stack trace and
/// answered <c>WRIT-INTERNAL</c> with an error id, never the trace.
/// </summary>
public sealed class WorkloadApiErrorInterceptor(ILogger<WorkloadApiErrorInterceptor> log) : Interceptor
{
    public const string DeniedCode = "WRIT-WORKLOAD-DENIED";
    public const string InvalidRequestCode = "WRIT-WORKLOAD-INVALID-REQUEST";
    public const string UnattestedCode = "WRIT-WORKLOAD-UNATTESTED";
    public const string UnavailableCode = "WRIT-WORKLOAD-UNAVAILABLE";
    public const string LimitedCode = "WRIT-WORKLOAD-LIMITED";
    public const string RefusedCode = "WRIT-WORKLOAD-REFUSED";
    public const string StoppingCode = "WRIT-AGENT-STOPPING";

    /// <summary>Called with the reason when a call meets a fatal condition (set by the agent host: it stops the agent).</summary>
    public Action<string>? OnFatal { get; set; }

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw Translate(e, context);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            throw Translate(e, context);
        }
    }

    /// <summary>Bidirectional streams (Envoy SDS's StreamSecrets on the same socket) get the same translation.</summary>
    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            throw Translate(e, context);
        }
    }

    /// <summary>The Workload API's code for a refusal that carries none, by its status.</summary>
    public static string CodeFor(StatusCode status) => status switch
    {
        StatusCode.PermissionDenied => DeniedCode,
        StatusCode.InvalidArgument => InvalidRequestCode,
        StatusCode.Unauthenticated => UnattestedCode,
        StatusCode.Unavailable or StatusCode.DeadlineExceeded => UnavailableCode,
        StatusCode.ResourceExhausted => LimitedCode,
        StatusCode.Internal => WritStatus.InternalCode,
        _ => RefusedCode,
    };

    private RpcException Translate(Exception e, ServerCallContext context)
    {
        switch (e)
        {
            case RpcException { StatusCode: StatusCode.Cancelled } cancelled:
                return cancelled;
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return new RpcException(new Status(StatusCode.Cancelled, "the call was cancelled"));
            case RpcException r:
                return WritStatus.WithCode(r, CodeFor(r.StatusCode));
            case WritException w:
                if (w.Kind != WritErrorKind.ResourceExhausted)   // limits are logged by the gate, at most once per uid per 10 s
                {
                    AgentLog.WorkloadRefused(log, context.Method, $"{w.Code}: {w.Message}");
                }
                return WritStatus.ToRpcException(w);
            case AgentFatalException fatal:
                AgentLog.Fatal(log, fatal.Message);
                OnFatal?.Invoke(fatal.Message);
                return WritStatus.Create(StatusCode.Unavailable, StoppingCode, "the agent is stopping; retry against a working agent");
            default:
                var errorId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
                AgentLog.Unexpected(log, e, $"{context.Method} (error {errorId})");
                return WritStatus.Create(StatusCode.Internal, WritStatus.InternalCode, $"internal agent error {errorId}: the agent log has the details");
        }
    }
}
