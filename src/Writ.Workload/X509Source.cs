using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Workload;

/// <summary>Options of <see cref="X509Source"/>.</summary>
public sealed class X509SourceOptions : WorkloadApiOptions
{
    /// <summary>Chooses the SVID to present when the workload has several (by ID or hint); default: the first.</summary>
    public Func<IReadOnlyList<X509Svid>, X509Svid>? Picker { get; set; }
}

/// <summary>
/// This workload's X.509-SVIDs and X.509 trust bundles, kept current over the Workload API's FetchX509SVID stream
/// (go-spiffe's <c>workloadapi.X509Source</c>): each update is swapped in atomically and raises <see cref="Changed"/>;
/// when the stream fails the source reconnects with exponential backoff and jitter and keeps serving the last SVID
/// until it expires. Also the CRLs of the response as revoked serials.
/// </summary>
public sealed class X509Source : IX509SvidSource, IWatchedBundleSource, IRevocationSource, IAsyncDisposable, IDisposable
{
    private sealed record State(IReadOnlyList<X509Svid> Svids, BundleSet Bundles, IReadOnlySet<string> RevokedSerials);

    private readonly WorkloadApiClient _client;
    private readonly Func<IReadOnlyList<X509Svid>, X509Svid> _picker;
    private readonly CancellationTokenSource _stop = new();
    private readonly StreamWatcher<X509SVIDResponse> _watcher;
    private Task _loop = Task.CompletedTask;
    private State? _state;
    private int _disposed;

    private X509Source(WorkloadApiClient client, X509SourceOptions options)
    {
        _client = client;
        _picker = options.Picker ?? (svids => svids[0]);
        _watcher = new StreamWatcher<X509SVIDResponse>("FetchX509SVID", client,
            call => client.Workload.FetchX509SVID(new X509SVIDRequest(), call), Apply);
    }

    /// <summary>
    /// Connects to the Workload API and waits for the first X.509-SVID. Throws <see cref="WorkloadApiException"/>:
    /// WRIT-SDK-ADDRESS (bad address), WRIT-SDK-DENIED (no identity issued to this process), WRIT-SDK-TIMEOUT (no
    /// update before <see cref="WorkloadApiOptions.InitialTimeout"/>).
    /// </summary>
    public static async Task<X509Source> CreateAsync(X509SourceOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new X509SourceOptions();
        var source = new X509Source(WorkloadApiClient.Create(options), options);
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

    /// <summary>Raised after an update changed the SVIDs, bundles or CRLs (on the stream's thread; keep handlers short).</summary>
    public event EventHandler? Changed;

    /// <summary>
    /// The SVID to present (the picker's choice). Throws <see cref="WorkloadApiException"/> WRIT-SDK-NO-SVID when the
    /// last SVID received has expired (the agent has been unreachable for longer than its lifetime).
    /// </summary>
    public X509Svid GetX509Svid()
    {
        var state = Current();
        var svid = _picker(state.Svids);
        if (_client.Options.TimeProvider.GetUtcNow() > svid.ExpiresAt)
        {
            throw new WorkloadApiException(WorkloadErrors.NoSvid,
                $"the X.509-SVID {svid.Id} expired at {svid.ExpiresAt:O} and no fresh one arrived: is the agent at {_client.SocketPath} running?");
        }
        return svid;
    }

    /// <summary>Every X.509-SVID of this workload from the last update (the agent's order).</summary>
    public IReadOnlyList<X509Svid> GetX509Svids() => Current().Svids;

    /// <summary>The X.509 bundles of the last update: this trust domain's and the federated ones.</summary>
    public BundleSet Bundles => Current().Bundles;

    /// <inheritdoc />
    public TrustBundle? GetBundle(TrustDomain td) => Current().Bundles.GetBundle(td);

    /// <summary>Always null: FetchX509SVID carries no JWT authorities (use <see cref="BundleSource"/> or <see cref="JwtSource"/>).</summary>
    public TrustBundle? GetJwtBundle(TrustDomain td) => null;

    /// <summary>The serials listed in the CRLs of the last update (canonical hex, see <see cref="SerialNumbers.Normalize"/>).</summary>
    public IReadOnlySet<string> RevokedSerials => Current().RevokedSerials;

    /// <summary>True when a CRL of the last update lists <paramref name="serialHex"/>.</summary>
    public bool IsSerialRevoked(string serialHex) => Current().RevokedSerials.Contains(SerialNumbers.Normalize(serialHex));

    /// <summary>Always false: CRLs list certificates only. Use <see cref="RevocationSource"/> for revoked JWT-SVIDs.</summary>
    bool IRevocationSource.IsJtiRevoked(string jti) => false;

    private State Current()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return Volatile.Read(ref _state) ?? throw new WorkloadApiException(WorkloadErrors.NoSvid, "no X.509-SVID received yet: wait for X509Source.CreateAsync");
    }

    private string? Apply(X509SVIDResponse response)
    {
        if (!TryRead(response, out var svids, out var bundles, out var revoked, out var error))
        {
            return error;
        }
        Volatile.Write(ref _state, new State(svids, bundles, revoked));
        var svid = _picker(svids);
        SdkLog.X509SvidUpdated(_client.Logger, svid.Id.ToString(), svid.ExpiresAt);
        ChangedEvent.Raise(Changed, this, _client.Logger, nameof(X509Source));
        return null;
    }

    /// <summary>Reads a FetchX509SVID message; every part must be well formed, or the whole update is ignored.</summary>
    internal static bool TryRead(X509SVIDResponse response, out IReadOnlyList<X509Svid> svids, out BundleSet bundles,
        out IReadOnlySet<string> revoked, out string? error)
    {
        svids = [];
        bundles = new BundleSet();
        revoked = new HashSet<string>();
        if (response.Svids.Count == 0)
        {
            error = "the X.509 update has no SVID";
            return false;
        }
        var list = new List<X509Svid>(response.Svids.Count);
        foreach (var s in response.Svids)
        {
            if (!SpiffeId.TryParse(s.SpiffeId, out var id, out error))
            {
                error = $"an SVID has an invalid SPIFFE ID ({error})";
                return false;
            }
            if (!X509Svid.TryParseDer(s.X509Svid.Span, s.X509SvidKey.Span, out var svid, out error) || svid is null)
            {
                error = $"the SVID of {id} cannot be read ({error})";
                return false;
            }
            if (svid.Id != id)
            {
                error = $"the SVID certificate names {svid.Id}, not the announced {id}";
                return false;
            }
            list.Add(svid with { Hint = s.Hint });
            if (!TrustBundle.TryParseX509Der(id.TrustDomain, s.Bundle.Span, out var bundle, out error))
            {
                error = $"the bundle of {id.TrustDomain} cannot be read ({error})";
                return false;
            }
            bundles.Set(bundle);
        }
        foreach (var (key, der) in response.FederatedBundles)
        {
            if (!TrustDomain.TryParse(key, out var td, out error))
            {
                error = $"a federated bundle has an invalid trust domain ({error})";
                return false;
            }
            if (!TrustBundle.TryParseX509Der(td, der.Span, out var bundle, out error))
            {
                error = $"the federated bundle of {td} cannot be read ({error})";
                return false;
            }
            if (bundles.GetBundle(td) is null)
            {
                bundles.Set(bundle);
            }
        }
        var serials = new HashSet<string>(StringComparer.Ordinal);
        foreach (var crl in response.Crl)
        {
            if (!SerialNumbers.TryReadCrl(crl.Memory, serials, out error))
            {
                return false;
            }
        }
        svids = list;
        revoked = serials;
        error = null;
        return true;
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
