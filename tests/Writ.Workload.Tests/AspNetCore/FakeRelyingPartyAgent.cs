using System.Collections.Concurrent;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Protocol.RelyingParty;

namespace Writ.Workload.Tests.AspNetCore;

/// <summary>
/// A stand-in for the agent's relying-party API: a real gRPC server (ASP.NET Core gRPC, HTTP/2) on a real Unix socket,
/// serving <c>writ.relyingparty.v1.RelyingParty/Authorize</c> with answers the test chooses, and recording what it was asked.
/// (The SDK compiles only the client side of relyingparty.proto, so the method is bound here by hand.)
/// </summary>
internal sealed class FakeRelyingPartyAgent : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeRelyingPartyAgent(WebApplication app, string socketPath)
    {
        _app = app;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    public string Endpoint => "unix://" + SocketPath;

    public Service Agent => _app.Services.GetRequiredService<Service>();

    public static async Task<FakeRelyingPartyAgent> StartAsync(string socketPath)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(socketPath, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton<Service>();
        var app = builder.Build();
        app.MapGrpcService<Service>();
        await app.StartAsync();
        return new FakeRelyingPartyAgent(app, socketPath);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [BindServiceMethod(typeof(Service), nameof(BindService))]
    internal class Service
    {
        private static readonly Marshaller<AuthorizeRequest> RequestMarshaller = Marshallers.Create(m => m.ToByteArray(), AuthorizeRequest.Parser.ParseFrom);
        private static readonly Marshaller<AuthorizeResponse> ResponseMarshaller = Marshallers.Create(m => m.ToByteArray(), AuthorizeResponse.Parser.ParseFrom);

        private static readonly Method<AuthorizeRequest, AuthorizeResponse> AuthorizeMethod =
            new(MethodType.Unary, "writ.relyingparty.v1.RelyingParty", "Authorize", RequestMarshaller, ResponseMarshaller);

        /// <summary>Decides each request; default: allow with a fresh decision id.</summary>
        public Func<AuthorizeRequest, AuthorizeResponse> Decide { get; set; } = _ => new AuthorizeResponse { Allowed = true, DecisionId = "c-00000000000000000001" };

        public ConcurrentQueue<(AuthorizeRequest Request, string? SecurityHeader)> Asked { get; } = new();

        public static void BindService(ServiceBinderBase binder, Service? service) =>
            binder.AddMethod(AuthorizeMethod, service is null ? null : service.Authorize);

        // Virtual: ASP.NET Core gRPC binds only methods whose base definition is on the bound type (as generated bases are).
        public virtual Task<AuthorizeResponse> Authorize(AuthorizeRequest request, ServerCallContext context)
        {
            Asked.Enqueue((request, context.RequestHeaders.GetValue("workload.spiffe.io")));
            return Task.FromResult(Decide(request));
        }
    }
}
