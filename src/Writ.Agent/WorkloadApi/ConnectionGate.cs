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

    /// <param name="fileDescriptorLimit">The agent's file-descriptor limit now (<see cref="FileDescriptorLimit.Current"/>): read at
    /// every accept, so a limit lowered while the agent runs (prlimit) lowers the connection limits with it.</param>
    public ConnectionGate(AgentOptions options, IProcFs proc, TimeProvider time, ILogger<ConnectionGate> log, Func<long?> fileDescriptorLimit)
    {
        ArgumentNullException.ThrowIfNull(options);
        _proc = proc;
        _time = time;
        _log = log;
        _fdLimit = fileDescriptorLimit;
        _maxConnections = options.MaxConnections;
        _maxPerUid = options.MaxConnectionsPerUid;
        RatePerUid = options.RateLimitPerUid;
    }

    private readonly Func<long?> _fdLimit;
    private readonly int _maxConnections;
    private readonly int _maxPerUid;

    /// <summary>Connections open at once, all uids: the configured value or less, as the descriptor limit allows now.</summary>
    public int MaxConnections => Math.Min(_maxConnections, FileDescriptorLimit.Budget(_fdLimit()));

    /// <summary>Connections one uid may hold: the configured value, never more than half of <see cref="MaxConnections"/>
    /// (another uid can always connect).</summary>
    public int MaxConnectionsPerUid => PerUid(MaxConnections);

    private int PerUid(int max) => Math.Max(1, Math.Min(_maxPerUid, max / 2));

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

    /// <summary>Connections decided on Kestrel's accept loop (<see cref="GatedListenerFactory"/> installed), for tests.</summary>
    internal long DecidedOnAcceptLoop => Interlocked.Read(ref _decidedOnAcceptLoop);

    private long _decidedOnAcceptLoop;

    /// <summary>The Kestrel connection middleware (<c>ListenOptions.Use(gate.Wrap)</c>).</summary>
    public ConnectionDelegate Wrap(ConnectionDelegate next) => connection => HandleAsync(connection, next);

    /// <summary>What <see cref="OnAccept"/> decided, left in the connection's items for the middleware.</summary>
    private sealed record Accepted(int Uid, string? Refusal);

    /// <summary>
    /// Decides on a connection the moment it is accepted — on Kestrel's accept loop when <see cref="GatedListenerFactory"/>
    /// is installed, so a flood is turned away at the rate it is accepted, before its connections queue up for the
    /// thread pool holding a descriptor each: true to serve it (admitted, or refused but to be told why), false to close
    /// it at once.
    /// </summary>
    internal bool OnAccept(ConnectionContext connection, bool onAcceptLoop)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (onAcceptLoop)
        {
            Interlocked.Increment(ref _decidedOnAcceptLoop);
        }
        var socket = connection.Features.Get<IConnectionSocketFeature>()?.Socket;
        string? error = "the connection has no socket";
        if (socket is null || !PeerCredentialReader.TryRead(socket, out var peer, out error))
        {
            AgentLog.ConnectionDropped(_log, error ?? "no peer credentials");
            return false;   // nothing identifies the caller
        }
        var refusal = Admit(peer.Uid);
        if (refusal is not null && Interlocked.Increment(ref _refusedHeld) > MaxRefusedHeld)
        {
            Interlocked.Decrement(ref _refusedHeld);
            return false;   // too many refused callers waiting for their answer already: close at once
        }
        connection.Items[typeof(Accepted)] = new Accepted(peer.Uid, refusal);
        return true;
    }

    private async Task HandleAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        if (!connection.Items.TryGetValue(typeof(Accepted), out var decided) || decided is not Accepted accepted)
        {
            if (!OnAccept(connection, onAcceptLoop: false))
            {
                return;   // no gated listener in front: decided here, and closed
            }
            accepted = (Accepted)connection.Items[typeof(Accepted)]!;
        }
        if (accepted.Refusal is { } refusal)
        {
            await RefuseAsync(connection, next, refusal).ConfigureAwait(false);
            return;
        }
        try
        {
            var socket = connection.Features.Get<IConnectionSocketFeature>()!.Socket;
            var status = AcceptedPeer.TryPin(socket, _proc, out var peer, out var error);
            if (status == AcceptPinStatus.Pinned)
            {
                Interlocked.Increment(ref _pinned);
            }
            connection.Items[typeof(ConnectionAdmission)] = status switch
            {
                AcceptPinStatus.Pinned => new ConnectionAdmission(peer, Grpc.Core.StatusCode.OK, null),
                AcceptPinStatus.Exhausted => Exhausted(accepted.Uid, error),
                _ => new ConnectionAdmission(null, Grpc.Core.StatusCode.Unauthenticated, $"the caller could not be pinned when it connected: {error}"),
            };
            await next(connection).ConfigureAwait(false);
        }
        finally
        {
            Release(accepted.Uid);
        }
    }

    private ConnectionAdmission Exhausted(int uid, string? error)
    {
        Interlocked.Increment(ref _refused);
        AgentLog.ConnectionRefused(_log, uid, CodeExhausted, error ?? "out of resources");
        return new ConnectionAdmission(null, Grpc.Core.StatusCode.ResourceExhausted,
            $"{CodeExhausted}: the agent is out of file descriptors or memory for new callers; retry with backoff");
    }

    /// <summary>A refused connection (counted in <see cref="_refusedHeld"/> by <see cref="OnAccept"/>): its first call is told why, then it closes.</summary>
    private async Task RefuseAsync(ConnectionContext connection, ConnectionDelegate next, string refusal)
    {
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
        var max = MaxConnections;
        var perUid = PerUid(max);
        lock (_lock)
        {
            var state = StateOf(uid);
            if (_open >= max)
            {
                refusal = string.Create(CultureInfo.InvariantCulture,
                    $"{CodeTotal}: the agent serves {max} Workload API connections at once (workload_api.max_connections, bounded by its file-descriptor limit) and all are open; retry with backoff");
            }
            else if (state.Open >= perUid)
            {
                refusal = string.Create(CultureInfo.InvariantCulture,
                    $"{CodePerUid}: uid {uid} already has {perUid} Workload API connections open (workload_api.max_connections_per_uid); close idle ones or share one connection per process");
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
