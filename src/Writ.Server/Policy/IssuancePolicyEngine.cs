using Microsoft.Extensions.Logging;
using Writ.Protocol;
using Writ.Server.Storage;

namespace Writ.Server.Policy;

/// <summary>The policy set issuance decisions are made with, and its version (0 = the built-in default, nothing pushed yet).</summary>
public sealed record ActivePolicy(long Version, CompiledPolicySet Compiled);

/// <summary>
/// Holds the active policy set for the issuance pipeline. Loads the store's active version at start (none: the built-in
/// default set as version 0), reloads at once when the server's PolicyChanged signal is raised (a push on this
/// server), and checks the store's active version every poll interval (other servers may push). A stored version
/// that does not compile (a database edited by hand) is not applied: the previous set stays active and an error is logged.
/// </summary>
public sealed class IssuancePolicyEngine : IAsyncDisposable
{
    public static readonly TimeSpan DefaultPollInterval = TimeSpan.FromSeconds(1);

    private readonly IPolicyStore _store;
    private readonly ChangeSignal _changed;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly TimeSpan _poll;
    private readonly SemaphoreSlim _reload = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private volatile ActivePolicy _current;
    private long _seenGeneration;
    private long _refusedVersion = -1;
    private Task? _loop;

    public IssuancePolicyEngine(IPolicyStore store, ChangeSignal changed, TimeProvider time, ILogger log, TimeSpan? pollInterval = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _changed = changed ?? throw new ArgumentNullException(nameof(changed));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _log = log ?? throw new ArgumentNullException(nameof(log));
        _poll = pollInterval ?? DefaultPollInterval;
        _current = new ActivePolicy(0, Default.Value);
        _seenGeneration = changed.Generation;
    }

    private static readonly Lazy<CompiledPolicySet> Default = new(() =>
        WritPolicyCompiler.TryCompile(WritPolicyCompiler.DefaultFiles, out var c, out var errors)
            ? c!
            : throw new InvalidOperationException("the built-in default policy set does not compile: " + string.Join("; ", errors)));

    /// <summary>The built-in default set (SPIRE's behaviour), compiled.</summary>
    public static CompiledPolicySet DefaultSet => Default.Value;

    /// <summary>The active set as last loaded (no store access).</summary>
    public ActivePolicy Current => _current;

    /// <summary>
    /// Raised after a new version became active here (a push or rollback on this server, or another server's seen by the
    /// poll): the agents' Sync streams wake on it and push the new call policy.
    /// </summary>
    public ChangeSignal Activated { get; } = new();

    /// <summary>
    /// Loads the active version, then keeps it current in the background until disposed (standalone use; the server
    /// loads it with <see cref="RefreshAsync"/> and runs <see cref="RunAsync"/> as a hosted service).
    /// </summary>
    public async Task StartAsync(CancellationToken ct)
    {
        await RefreshAsync(ct).ConfigureAwait(false);
        _loop = RunAsync(_stop.Token);
    }

    /// <summary>
    /// The set to decide with: the loaded one, or — when this server raised a policy change since the last load — the
    /// new one, loaded now, so a decision right after a push on this server already uses it.
    /// </summary>
    public async ValueTask<ActivePolicy> CurrentAsync(CancellationToken ct)
    {
        if (_changed.Generation != Interlocked.Read(ref _seenGeneration))
        {
            await RefreshAsync(ct).ConfigureAwait(false);
        }
        return _current;
    }

    /// <summary>Reads the store's active version and applies it if it is new and compiles. Returns the active set.</summary>
    public async Task<ActivePolicy> RefreshAsync(CancellationToken ct)
    {
        await _reload.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var generation = _changed.Generation;
            var stored = await _store.ActiveAsync(ct).ConfigureAwait(false);
            Interlocked.Exchange(ref _seenGeneration, generation);
            if (stored is null || stored.Version == _current.Version || stored.Version == _refusedVersion)
            {
                return _current;
            }
            if (!WritPolicyCompiler.TryCompile(stored.Files, out var compiled, out var errors))
            {
                _refusedVersion = stored.Version;
                ServerLog.PolicyVersionRefused(_log, stored.Version, _current.Version, errors.Count > 0 ? errors[0] : "no error text");
                return _current;
            }
            var previous = _current.Version;
            _current = new ActivePolicy(stored.Version, compiled!);
            ServerLog.PolicyActivated(_log, stored.Version, previous, compiled!.Set.All.Count, compiled.Sha256);
            Activated.Raise();
            return _current;
        }
        finally
        {
            _reload.Release();
        }
    }

    /// <summary>Keeps the active set current until stopped: reloads on a policy change raised here, and polls the store for other servers' pushes.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var generation = Interlocked.Read(ref _seenGeneration);
                using var wake = CancellationTokenSource.CreateLinkedTokenSource(ct);
                await Task.WhenAny(_changed.WaitAsync(generation, wake.Token), Task.Delay(_poll, _time, wake.Token)).ConfigureAwait(false);
                await wake.CancelAsync().ConfigureAwait(false);
                ct.ThrowIfCancellationRequested();
                await RefreshAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                ServerLog.PolicyReloadFailed(_log, e.Message);
                try
                {
                    await Task.Delay(_poll, _time, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }
        _stop.Dispose();
        _reload.Dispose();
    }
}
