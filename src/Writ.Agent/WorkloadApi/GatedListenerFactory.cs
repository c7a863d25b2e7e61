using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// Kestrel's socket transport for the Workload API's Unix socket with the <see cref="ConnectionGate"/> on its accept
/// loop: a connection the gate turns away is closed before the next one is accepted, so a flood costs the agent one
/// descriptor at a time (the rest wait in the kernel's backlog) instead of one per connection queued for the thread pool.
/// </summary>
public sealed class GatedListenerFactory(IConnectionListenerFactory inner, ConnectionGate gate) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    // The agent hands Kestrel its Workload API socket as a descriptor (FileHandleEndPoint, so the file is removed only
    // while still ours); tests bind by path.
    public bool CanBind(EndPoint endpoint) => endpoint is UnixDomainSocketEndPoint or FileHandleEndPoint;

    public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        new Listener(await inner.BindAsync(endpoint, cancellationToken).ConfigureAwait(false), gate);

    private sealed class Listener(IConnectionListener inner, ConnectionGate gate) : IConnectionListener
    {
        public EndPoint EndPoint => inner.EndPoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                var connection = await inner.AcceptAsync(cancellationToken).ConfigureAwait(false);
                if (connection is null || gate.OnAccept(connection, onAcceptLoop: true))
                {
                    return connection;
                }
                connection.Abort(new ConnectionAbortedException("Workload API connection refused at accept"));
                await connection.DisposeAsync().ConfigureAwait(false);
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default) => inner.UnbindAsync(cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}

/// <summary>Installs the <see cref="ConnectionGate"/> in front of a Workload API listener.</summary>
public static class ConnectionGateExtensions
{
    /// <summary>Registers <paramref name="gate"/> and the gated socket transport (which takes precedence for Unix sockets).</summary>
    public static IServiceCollection AddConnectionGate(this IServiceCollection services, Func<IServiceProvider, ConnectionGate> gate)
    {
        services.AddSingleton(gate);
        services.AddSingleton<IConnectionListenerFactory>(sp => new GatedListenerFactory(
            new SocketTransportFactory(Options.Create(new SocketTransportOptions()), sp.GetRequiredService<ILoggerFactory>()),
            sp.GetRequiredService<ConnectionGate>()));
        return services;
    }

    /// <summary>The gate's connection middleware on this listener: pins each admitted peer, answers refused ones.</summary>
    public static ListenOptions UseConnectionGate(this ListenOptions listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        listen.Use(next => listen.ApplicationServices.GetRequiredService<ConnectionGate>().Wrap(next));
        return listen;
    }
}
