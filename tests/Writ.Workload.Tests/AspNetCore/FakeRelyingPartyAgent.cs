using System.Collections.Concurrent;
using Grpc.Core;
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

    internal sealed class Service : RelyingParty.RelyingPartyBase
    {
        /// <summary>Decides each request; default: allow with a fresh decision id.</summary>
        public Func<AuthorizeRequest, AuthorizeResponse> Decide { get; set; } = _ => new AuthorizeResponse { Allowed = true, DecisionId = "c-00000000000000000001" };

        public ConcurrentQueue<(AuthorizeRequest Request, string? SecurityHeader)> Asked { get; } = new();

        public override Task<AuthorizeResponse> Authorize(AuthorizeRequest request, ServerCallContext context)
        {
            Asked.Enqueue((request, context.RequestHeaders.GetValue("workload.spiffe.io")));
            return Task.FromResult(Decide(request));
        }
    }
}
