using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Writ.Agent.Telemetry;

namespace Writ.Agent.Sync;

/// <summary>
/// The one home of "which server now". The agent's <c>server</c> key names one or more servers; a DNS name with several
/// addresses counts as several. The pool keeps a channel per endpoint, starts at a random one (so a fleet of agents
/// spreads over the servers), moves to the next after a server failure (connection refused or reset, TLS refusal,
/// Unavailable — which includes the server's <c>WRIT-SERVER-STOPPING</c>) and says when a whole round failed, so callers
/// back off only then; names are resolved again after a whole round failed.
/// <para>
/// Every agent→server call goes through <see cref="Invoker"/>: unary calls that fail with a server failure are retried
/// once on the next server (all of the agent's calls are safe to retry: a retried sign gets a new serial); streams
/// report their failure and the caller reconnects. Servers are authenticated by their SVID on every endpoint
/// (<see cref="ServerChannel"/>): a listed endpoint that cannot prove it is the server is a failed endpoint, never a
/// fallback.
/// </para>
/// </summary>
public sealed class ServerPool : IDisposable
{
    private readonly IReadOnlyList<ServerAddress> _configured;
    private readonly Func<string, GrpcChannel> _channelFactory;
    private readonly Func<string, IReadOnlyList<IPAddress>> _resolve;
    private readonly Random _random;
    private readonly ILogger _log;
    private readonly Lock _lock = new();
    private IReadOnlyList<string> _endpoints = [];
    private Dictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);
    private int _current;
    private int _failedInRow;
    private bool _announced;
    private bool _resolving;
    private bool _disposed;
    private long _failovers;

    /// <param name="servers">the parsed <c>server</c> key (<see cref="ServerAddress.TryParseList"/>)</param>
    /// <param name="channelFactory">makes the authenticated channel to one endpoint (HOST:PORT)</param>
    /// <param name="resolve">a name's addresses (throws <see cref="SocketException"/> when it has none); default: DNS</param>
    /// <param name="random">where the starting server comes from (tests pin it)</param>
    public ServerPool(IReadOnlyList<ServerAddress> servers, Func<string, GrpcChannel> channelFactory, ILogger log,
        Random? random = null, Func<string, IReadOnlyList<IPAddress>>? resolve = null)
    {
        ArgumentNullException.ThrowIfNull(servers);
        if (servers.Count == 0)
        {
            throw new ArgumentException("at least one server is needed", nameof(servers));
        }
        _configured = servers;
        _channelFactory = channelFactory;
        _log = log;
        _random = random ?? Random.Shared;
        _resolve = resolve ?? (host => Dns.GetHostAddresses(host));
        _endpoints = Resolve();
        _current = _random.Next(_endpoints.Count);
        Invoker = new FailoverCallInvoker(this);
    }

    /// <summary>Calls through the pool (give it to a generated client: <c>new AgentService.AgentServiceClient(pool.Invoker)</c>).</summary>
    public CallInvoker Invoker { get; }

    /// <summary>Where failovers are counted (set by the host; null outside one).</summary>
    public WritAgentMetrics? Metrics { get; set; }

    /// <summary>Every endpoint (HOST:PORT) the agent may use now, resolved names expanded, in the configured order.</summary>
    public IReadOnlyList<string> Endpoints
    {
        get
        {
            lock (_lock)
            {
                return _endpoints;
            }
        }
    }

    /// <summary>The endpoint calls go to now.</summary>
    public string Current
    {
        get
        {
            lock (_lock)
            {
                return _endpoints[_current];
            }
        }
    }

    /// <summary>How many times the agent moved to another server.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    /// <summary>
    /// True when every endpoint failed since the last success: the caller should back off (with jitter) before its next
    /// attempt. While false, the next attempt goes to the next server at once.
    /// </summary>
    public bool RoundFailed
    {
        get
        {
            lock (_lock)
            {
                return _failedInRow >= _endpoints.Count;
            }
        }
    }

    /// <summary>The current endpoint and its channel's invoker (the channel is made on first use after a reset).</summary>
    internal (string Endpoint, CallInvoker Invoker) Pick()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var endpoint = _endpoints[_current];
            if (!_channels.TryGetValue(endpoint, out var channel))
            {
                channel = _channelFactory(endpoint);
                _channels[endpoint] = channel;
            }
            return (endpoint, channel.CreateCallInvoker());
        }
    }

    /// <summary>
    /// A call to <paramref name="endpoint"/> failed with a server failure: when it is still the current one, the pool
    /// moves to the next (a failure another call reported already moves nothing twice).
    /// </summary>
    public void Failed(string endpoint, string reason)
    {
        string? next = null;
        var roundFailed = false;
        var resolveAgain = false;
        int count;
        lock (_lock)
        {
            count = _endpoints.Count;
            if (_disposed || !string.Equals(_endpoints[_current], endpoint, StringComparison.Ordinal))
            {
                return;
            }
            _failedInRow++;
            _announced = false;
            if (count > 1)
            {
                _current = (_current + 1) % count;
                next = _endpoints[_current];
                Interlocked.Increment(ref _failovers);
            }
            if (_failedInRow % count == 0)
            {
                roundFailed = true;
                if (!_resolving && _configured.Any(s => !s.IsIp))
                {
                    _resolving = true;
                    resolveAgain = true;
                }
            }
        }
        if (next is not null)
        {
            Metrics?.ServerFailover();
            AgentLog.ServerSwitched(_log, endpoint, reason, next);
        }
        if (roundFailed && count > 1)
        {
            AgentLog.ServerRoundFailed(_log, count, reason);   // one server: the caller's own log says it
        }
        if (resolveAgain)
        {
            _ = Task.Run(ResolveAgain);
        }
    }

    /// <summary>A call to <paramref name="endpoint"/> succeeded: the round of failures is over.</summary>
    public void Succeeded(string endpoint)
    {
        lock (_lock)
        {
            if (_announced || _disposed || !string.Equals(_endpoints[_current], endpoint, StringComparison.Ordinal))
            {
                return;
            }
            _announced = true;
            _failedInRow = 0;
        }
        AgentLog.ServerConnected(_log, endpoint);
    }

    /// <summary>
    /// The agent's SVID changed: a TLS connection keeps the client certificate it was made with, so every endpoint gets a
    /// new channel on its next call (calls in flight on the old ones end).
    /// </summary>
    public void Reset()
    {
        Dictionary<string, GrpcChannel> old;
        lock (_lock)
        {
            old = _channels;
            _channels = new(StringComparer.Ordinal);
        }
        foreach (var c in old.Values)
        {
            c.Dispose();
        }
    }

    /// <summary>
    /// Whether a call's failure says the server (or the way to it) failed, so another server may do better: Unavailable
    /// (connection refused or reset, TLS refusal, the server stopping), or a transport error the client did not map.
    /// A connection that could not be made within the connect timeout (a black-holed host) is one too, although the
    /// client reports it as Cancelled. A refusal of the agent (PermissionDenied, Unauthenticated, …) and a call the
    /// agent cancelled are not.
    /// </summary>
    public static bool IsServerFailure(Exception e) => e switch
    {
        RpcException { StatusCode: StatusCode.Unavailable } => true,
        RpcException { StatusCode: StatusCode.Internal or StatusCode.Unknown } r => IsTransport(r.Status.DebugException),
        RpcException { StatusCode: StatusCode.Cancelled } r => TimedOut(r.Status.DebugException),
        RpcException => false,
        _ => IsTransport(e),
    };

    private static bool TimedOut(Exception? e)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            if (x is TimeoutException)
            {
                return true;
            }
        }
        return false;
    }

    private static bool IsTransport(Exception? e)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            if (x is IOException or HttpRequestException or SocketException or AuthenticationException or TimeoutException)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>A failure in the operator's terms, one line (no .NET exception chain).</summary>
    public static string Describe(Exception e)
    {
        var inner = e is RpcException r ? r.Status.DebugException : e;
        for (var x = inner; x is not null; x = x.InnerException)
        {
            switch (x)
            {
                case AuthenticationException:
                    return "TLS refused: the endpoint did not prove it is the Writ server of this trust domain";
                case SocketException se:
                    return $"connection failed ({se.SocketErrorCode})";
                case TimeoutException:
                    return "connection timed out";
            }
        }
        if (e is RpcException rpc)
        {
            var code = Writ.Protocol.Errors.WritStatus.Read(rpc).Code;
            return code is { Length: > 0 } ? $"{rpc.StatusCode}: {code}" : rpc.StatusCode.ToString();
        }
        return e.GetType().Name;
    }

    private IReadOnlyList<string> Resolve()
    {
        var endpoints = new List<string>();
        foreach (var server in _configured)
        {
            if (server.IsIp)
            {
                endpoints.Add(server.ToString());
                continue;
            }
            try
            {
                var addresses = _resolve(server.Host)
                    .Select(a => a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a)
                    .Select(a => ServerAddress.Of(a, server.Port).ToString())
                    .Distinct(StringComparer.Ordinal)
                    .ToList();
                if (addresses.Count == 0)
                {
                    throw new SocketException((int)SocketError.HostNotFound);
                }
                if (addresses.Count > 1)
                {
                    AgentLog.ServerNameResolved(_log, server.ToString(), addresses.Count, string.Join(", ", addresses));
                }
                endpoints.AddRange(addresses);
            }
            catch (SocketException e)
            {
                // Kept as a name: the connection resolves it again (and fails as an unreachable server until it resolves).
                AgentLog.ServerNameUnresolved(_log, server.ToString(), e.SocketErrorCode.ToString());
                endpoints.Add(server.ToString());
            }
        }
        return endpoints.Distinct(StringComparer.Ordinal).ToList();
    }

    private void ResolveAgain()
    {
        try
        {
            var fresh = Resolve();
            List<GrpcChannel> gone = [];
            lock (_lock)
            {
                if (_disposed)
                {
                    return;
                }
                var current = _endpoints[_current];
                if (!fresh.SequenceEqual(_endpoints, StringComparer.Ordinal))
                {
                    _endpoints = fresh;
                    var at = fresh.ToList().IndexOf(current);
                    _current = at >= 0 ? at : _random.Next(fresh.Count);
                    _failedInRow = Math.Min(_failedInRow, fresh.Count);
                    foreach (var (endpoint, channel) in _channels.Where(c => !fresh.Contains(c.Key)).ToList())
                    {
                        _channels.Remove(endpoint);
                        gone.Add(channel);
                    }
                }
            }
            foreach (var c in gone)
            {
                c.Dispose();
            }
        }
        finally
        {
            lock (_lock)
            {
                _resolving = false;
            }
        }
    }

    public void Dispose()
    {
        Dictionary<string, GrpcChannel> old;
        lock (_lock)
        {
            _disposed = true;
            old = _channels;
            _channels = new(StringComparer.Ordinal);
        }
        foreach (var c in old.Values)
        {
            c.Dispose();
        }
    }
}
