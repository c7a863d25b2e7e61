using Writ.Protocol.RelyingParty;

namespace Writ.Workload;

/// <summary>
/// The revoked X.509 serials and JWT ids the local Writ agent knows of, kept current over its relying-party API
/// (<c>writ.relyingparty.v1.RelyingParty/WatchRevocations</c>, on the Workload API socket): the agent sends the whole
/// set on every change, so a relying party refuses a revoked credential as soon as the agent learns of it.
/// Reconnects with backoff and keeps the last set meanwhile.
/// </summary>
public sealed class RevocationSource : IRevocationSource, IAsyncDisposable, IDisposable
{
    private sealed record State(IReadOnlySet<string> Serials, IReadOnlySet<string> Jtis, long Revision);

    private readonly WorkloadApiClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly StreamWatcher<RevocationSet> _watcher;
    private Task _loop = Task.CompletedTask;
    private State _state = new(new HashSet<string>(), new HashSet<string>(), -1);
    private int _disposed;

    private RevocationSource(WorkloadApiClient client)
    {
        _client = client;
        _watcher = new StreamWatcher<RevocationSet>("WatchRevocations", client,
            call => client.RelyingParty.WatchRevocations(new WatchRevocationsRequest(), call), Apply);
    }

    /// <summary>
    /// Connects and waits for the first set. Throws <see cref="WorkloadApiException"/> (WRIT-SDK-ADDRESS,
    /// WRIT-SDK-DENIED, WRIT-SDK-UNSUPPORTED when the agent has no relying-party API, WRIT-SDK-TIMEOUT).
    /// </summary>
    public static async Task<RevocationSource> CreateAsync(WorkloadApiOptions? options = null, CancellationToken cancellationToken = default)
    {
        var source = new RevocationSource(WorkloadApiClient.Create(options));
        try
        {
            source._loop = source._watcher.RunAsync(source._stop.Token);
            await source._watcher.WaitFirstAsync(cancellationToken).ConfigureAwait(false);
            return source;
        }
        catch
        {
            await source.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Raised after the set changed.</summary>
    public event EventHandler? Changed;

    /// <summary>The agent's revision of the set last received (grows with every change).</summary>
    public long Revision => Current().Revision;

    /// <summary>The revoked serials (canonical hex).</summary>
    public IReadOnlySet<string> RevokedSerials => Current().Serials;

    /// <inheritdoc />
    public bool IsSerialRevoked(string serialHex) => Current().Serials.Contains(SerialNumbers.Normalize(serialHex));

    /// <inheritdoc />
    public bool IsJtiRevoked(string jti)
    {
        ArgumentNullException.ThrowIfNull(jti);
        return Current().Jtis.Contains(jti);
    }

    private State Current()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return Volatile.Read(ref _state);
    }

    private string? Apply(RevocationSet set)
    {
        // The whole set every time; a lower revision (an agent restarted) is still the agent's whole truth now.
        var serials = set.SerialHex.Where(s => s.Length > 0).Select(SerialNumbers.Normalize).ToHashSet(StringComparer.Ordinal);
        var jtis = set.Jti.Where(j => j.Length > 0).ToHashSet(StringComparer.Ordinal);
        Volatile.Write(ref _state, new State(serials, jtis, set.Revision));
        ChangedEvent.Raise(Changed, this, _client.Logger, nameof(RevocationSource));
        return null;
    }

    /// <summary>Ends the stream and closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _client.Dispose();
        _stop.Dispose();
    }

    /// <summary>Ends the stream and closes the connection.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
