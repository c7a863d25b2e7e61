using System.Globalization;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using Writ.Agent.PeerTracking;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// What the <see cref="ConnectionGate"/> decided for one connection, kept in the connection's items for its calls:
/// either the peer pinned at accept, or why every call on it is refused.
/// </summary>
public sealed record ConnectionAdmission(AcceptedPeer? Peer, Grpc.Core.StatusCode RefusalCode, string? Refusal);

/// <summary>
/// Admits Workload API connections as Kestrel accepts them (a connection middleware, before HTTP/2): reads the peer's
/// credentials from the kernel, counts the connections open per uid and in total against
/// <c>workload_api.max_connections_per_uid</c> and <c>workload_api.max_connections</c> (the latter also bounded by the
/// file-descriptor limit), charges the uid's rate (<c>workload_api.rate_limit_per_uid</c>: new connections and calls per
/// second) and pins the peer's process and executable (<see cref="AcceptedPeer"/>) before any call is read. A refused
/// connection is still spoken to, so its first call learns why (ResourceExhausted and a stable code) and it is then
/// closed (GOAWAY); at most <see cref="MaxRefusedHeld"/> refused connections are held so at once, each for at most
/// <see cref="RefusedGrace"/> — beyond, they are closed without a word. Running out of descriptors or memory while
/// pinning refuses the new caller; it never stops the agent.
/// </summary>
public sealed class ConnectionGate
{
    public const string CodePerUid = "WRIT-AGENT-CONN-UID";
    public const string CodeTotal = "WRIT-AGENT-CONN-TOTAL";
    public const string CodeRate = "WRIT-AGENT-RATE-UID";
    public const string CodeExhausted = "WRIT-AGENT-FD";
    public const string CodeExecChanged = "WRIT-AGENT-EXEC-CHANGED";

    /// <summary>Refused connections answered with a status at once; beyond, a refused connection is closed at accept.</summary>
    public const int MaxRefusedHeld = 64;

    /// <summary>How long a refused connection is kept for its first call.</summary>
    public static readonly TimeSpan RefusedGrace = TimeSpan.FromSeconds(2);

    private readonly Lock _lock = new();
    private readonly Dictionary<int, UidState> _uids = [];
    private readonly IProcFs _proc;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private int _open;
    private int _refusedHeld;

    public ConnectionGate(AgentOptions options, IProcFs proc, TimeProvider time, ILogger<ConnectionGate> log, long? fileDescriptorLimit)
    {
        ArgumentNullException.ThrowIfNull(options);
        _proc = proc;
        _time = time;
        _log = log;
        var budget = FileDescriptorLimit.Budget(fileDescriptorLimit);
        MaxConnections = Math.Min(options.MaxConnections, budget);
        // One uid never takes more than half of what the agent can hold: another uid can always connect.
        MaxConnectionsPerUid = Math.Max(1, Math.Min(options.MaxConnectionsPerUid, MaxConnections / 2));
        RatePerUid = options.RateLimitPerUid;
    }

    /// <summary>Connections open at once, all uids (the configured value or less, as the descriptor limit allows).</summary>
    public int MaxConnections { get; }

    public int MaxConnectionsPerUid { get; }

    /// <summary>New connections plus calls per second per uid; 0: unlimited.</summary>
    public int RatePerUid { get; }

    /// <summary>Admitted connections open now.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Connections refused since start (for tests and diagnostics).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    private long _refused;

    /// <summary>Connections whose peer was pinned at accept since start (for tests and diagnostics).</summary>
    public long Pinned => Interlocked.Read(ref _pinned);

    private long _pinned;

    /// <summary>The Kestrel connection middleware (<c>ListenOptions.Use(gate.Wrap)</c>).</summary>
    public ConnectionDelegate Wrap(ConnectionDelegate next) => connection => HandleAsync(connection, next);

    private async Task HandleAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var socket = connection.Features.Get<IConnectionSocketFeature>()?.Socket;
        string? error = "the connection has no socket";
        if (socket is null || !PeerCredentialReader.TryRead(socket, out var peer, out error))
        {
            AgentLog.ConnectionDropped(_log, error ?? "no peer credentials");
            return;   // closes it: nothing identifies the caller
        }
        if (Admit(peer.Uid) is { } refusal)
        {
            await RefuseAsync(connection, next, refusal).ConfigureAwait(false);
            return;
        }
        try
        {
            var status = AcceptedPeer.TryPin(socket, _proc, out var accepted, out error);
            if (status == AcceptPinStatus.Pinned)
            {
                Interlocked.Increment(ref _pinned);
            }
            connection.Items[typeof(ConnectionAdmission)] = status switch
            {
                AcceptPinStatus.Pinned => new ConnectionAdmission(accepted, Grpc.Core.StatusCode.OK, null),
                AcceptPinStatus.Exhausted => Exhausted(peer.Uid, error),
                _ => new ConnectionAdmission(null, Grpc.Core.StatusCode.Unauthenticated, $"the caller could not be pinned when it connected: {error}"),
            };
            await next(connection).ConfigureAwait(false);
        }
        finally
        {
            Release(peer.Uid);
        }
    }

    private ConnectionAdmission Exhausted(int uid, string? error)
    {
        Interlocked.Increment(ref _refused);
        AgentLog.ConnectionRefused(_log, uid, CodeExhausted, error ?? "out of resources");
        return new ConnectionAdmission(null, Grpc.Core.StatusCode.ResourceExhausted,
            $"{CodeExhausted}: the agent is out of file descriptors or memory for new callers; retry with backoff");
    }

    private async Task RefuseAsync(ConnectionContext connection, ConnectionDelegate next, string refusal)
    {
        if (Interlocked.Increment(ref _refusedHeld) > MaxRefusedHeld)
        {
            Interlocked.Decrement(ref _refusedHeld);
            return;   // too many refused callers waiting for their answer already: close at once
        }
        try
        {
            connection.Items[typeof(ConnectionAdmission)] = new ConnectionAdmission(null, Grpc.Core.StatusCode.ResourceExhausted, refusal);
            using var grace = new CancellationTokenSource(RefusedGrace, _time);
            using var abort = grace.Token.Register(static c => ((ConnectionContext)c!).Abort(new ConnectionAbortedException("refused Workload API connection")), connection);
            await next(connection).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _refusedHeld);
        }
    }

    /// <summary>Counts a new connection of <paramref name="uid"/> in, or says why not (one line with a stable code).</summary>
    private string? Admit(int uid)
    {
        string? refusal = null;
        bool warn;
        lock (_lock)
        {
            var state = StateOf(uid);
            if (_open >= MaxConnections)
            {
                refusal = string.Create(CultureInfo.InvariantCulture,
                    $"{CodeTotal}: the agent serves {MaxConnections} Workload API connections at once (workload_api.max_connections, bounded by its file-descriptor limit) and all are open; retry with backoff");
            }
            else if (state.Open >= MaxConnectionsPerUid)
            {
                refusal = string.Create(CultureInfo.InvariantCulture,
                    $"{CodePerUid}: uid {uid} already has {MaxConnectionsPerUid} Workload API connections open (workload_api.max_connections_per_uid); close idle ones or share one connection per process");
            }
            else if (!TakeLocked(state))
            {
                refusal = RateRefusal(uid);
            }
            if (refusal is null)
            {
                state.Open++;
                _open++;
                return null;
            }
            var now = _time.GetTimestamp();
            warn = state.LastWarning == 0 || _time.GetElapsedTime(state.LastWarning, now) >= TimeSpan.FromSeconds(10);
            if (warn)
            {
                state.LastWarning = now;
            }
        }
        Interlocked.Increment(ref _refused);
        if (warn)
        {
            AgentLog.ConnectionRefused(_log, uid, refusal[..refusal.IndexOf(':', StringComparison.Ordinal)], refusal);   // at most one line per uid per 10 s
        }
        return refusal;
    }

    private void Release(int uid)
    {
        lock (_lock)
        {
            _open--;
            if (_uids.TryGetValue(uid, out var state) && --state.Open == 0 && Full(state))
            {
                _uids.Remove(uid);
            }
        }
    }

    /// <summary>See <see cref="AcceptedPeer.SameProgram"/>: the process attested for a call is the one pinned at accept, running the same file.</summary>
    public bool SameProgram(AcceptedPeer accepted, ProcessPin attested, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(accepted);
        return accepted.SameProgram(attested, _proc, out reason);
    }

    /// <summary>Charges one call of <paramref name="uid"/> to its rate; the refusal (one line with a stable code) when over.</summary>
    public string? TakeCall(int uid)
    {
        if (RatePerUid <= 0)
        {
            return null;
        }
        lock (_lock)
        {
            return TakeLocked(StateOf(uid)) ? null : RateRefusal(uid);
        }
    }

    private string RateRefusal(int uid) => string.Create(CultureInfo.InvariantCulture,
        $"{CodeRate}: uid {uid} made more than {RatePerUid} Workload API connections and calls per second (workload_api.rate_limit_per_uid); retry with backoff");

    private UidState StateOf(int uid)
    {
        if (!_uids.TryGetValue(uid, out var state))
        {
            state = new UidState { Tokens = RatePerUid, Refilled = _time.GetTimestamp() };
            _uids[uid] = state;
        }
        return state;
    }

    /// <summary>Token bucket: <see cref="RatePerUid"/> tokens a second, at most one second's worth saved up.</summary>
    private bool TakeLocked(UidState state)
    {
        if (RatePerUid <= 0)
        {
            return true;
        }
        var now = _time.GetTimestamp();
        state.Tokens = Math.Min(RatePerUid, state.Tokens + (_time.GetElapsedTime(state.Refilled, now).TotalSeconds * RatePerUid));
        state.Refilled = now;
        if (state.Tokens < 1)
        {
            return false;
        }
        state.Tokens--;
        return true;
    }

    private bool Full(UidState state) =>
        RatePerUid <= 0 || state.Tokens + (_time.GetElapsedTime(state.Refilled).TotalSeconds * RatePerUid) >= RatePerUid;

    private sealed class UidState
    {
        public int Open;
        public double Tokens;
        public long Refilled;
        public long LastWarning;
    }
}
