using System.Text;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Workload;

/// <summary>Options of <see cref="BundleSource"/>.</summary>
public sealed class BundleSourceOptions : WorkloadApiOptions
{
    /// <summary>Watch the X.509 bundles (FetchX509Bundles). Default true.</summary>
    public bool X509 { get; set; } = true;

    /// <summary>Watch the JWT bundles (FetchJWTBundles). Default true.</summary>
    public bool Jwt { get; set; } = true;
}

/// <summary>
/// The trust bundles of every trust domain this workload may trust, X.509 and JWT, kept current over the Workload
/// API's FetchX509Bundles and FetchJWTBundles streams (go-spiffe's <c>workloadapi.BundleSource</c>), for relying
/// parties that validate SVIDs without needing one. <see cref="GetBundle"/> gives both kinds of authorities of a
/// trust domain; reconnects with backoff like <see cref="X509Source"/>.
/// </summary>
public sealed class BundleSource : IWatchedBundleSource, IAsyncDisposable, IDisposable
{
    private readonly WorkloadApiClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private readonly Lock _lock = new();
    private IReadOnlyDictionary<TrustDomain, TrustBundle> _x509 = new Dictionary<TrustDomain, TrustBundle>();
    private IReadOnlyDictionary<TrustDomain, TrustBundle> _jwt = new Dictionary<TrustDomain, TrustBundle>();
    private BundleSet _merged = new();
    private int _disposed;

    private BundleSource(WorkloadApiClient client) => _client = client;

    /// <summary>
    /// Connects and waits for the first update of each watched stream. Throws <see cref="WorkloadApiException"/>
    /// (WRIT-SDK-ADDRESS, WRIT-SDK-DENIED, WRIT-SDK-UNSUPPORTED, WRIT-SDK-TIMEOUT).
    /// </summary>
    public static async Task<BundleSource> CreateAsync(BundleSourceOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new BundleSourceOptions();
        if (!options.X509 && !options.Jwt)
        {
            throw new ArgumentException("watch X.509 or JWT bundles (or both)", nameof(options));
        }
        var client = WorkloadApiClient.Create(options);
        var source = new BundleSource(client);
        try
        {
            var waits = new List<Task>();
            if (options.X509)
            {
                var w = new StreamWatcher<X509BundlesResponse>("FetchX509Bundles", client,
                    call => client.Workload.FetchX509Bundles(new X509BundlesRequest(), call), source.ApplyX509);
                source._loops.Add(w.RunAsync(source._stop.Token));
                waits.Add(w.WaitFirstAsync(cancellationToken));
            }
            if (options.Jwt)
            {
                var w = new StreamWatcher<JWTBundlesResponse>("FetchJWTBundles", client,
                    call => client.Workload.FetchJWTBundles(new JWTBundlesRequest(), call), source.ApplyJwt);
                source._loops.Add(w.RunAsync(source._stop.Token));
                waits.Add(w.WaitFirstAsync(cancellationToken));
            }
            foreach (var wait in waits)
            {
                await wait.ConfigureAwait(false);
            }
            return source;
        }
        catch
        {
            await source.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Raised after any bundle changed.</summary>
    public event EventHandler? Changed;

    /// <summary>The bundle of <paramref name="td"/> with its X.509 and JWT authorities, or null when unknown.</summary>
    public TrustBundle? GetBundle(TrustDomain td) => Merged().GetBundle(td);

    /// <summary>The JWT authorities of <paramref name="td"/>, or null when unknown.</summary>
    public TrustBundle? GetJwtBundle(TrustDomain td)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return Volatile.Read(ref _jwt).GetValueOrDefault(td);
    }

    /// <summary>The trust domains with a bundle now.</summary>
    public IReadOnlyList<TrustDomain> TrustDomains => Merged().TrustDomains;

    private BundleSet Merged()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return Volatile.Read(ref _merged);
    }

    private string? ApplyX509(X509BundlesResponse response)
    {
        var map = new Dictionary<TrustDomain, TrustBundle>();
        foreach (var (key, der) in response.Bundles)
        {
            if (!TrustDomain.TryParse(key, out var td, out var error) || !TrustBundle.TryParseX509Der(td, der.Span, out var bundle, out error))
            {
                return $"X.509 bundle '{WorkloadApiClient.OneLine(key)}' cannot be read ({error})";
            }
            map[td] = bundle;
        }
        lock (_lock)
        {
            _x509 = map;
            Publish();
        }
        ChangedEvent.Raise(Changed, this, _client.Logger, nameof(BundleSource));
        return null;
    }

    private string? ApplyJwt(JWTBundlesResponse response)
    {
        var set = new BundleSet();
        if (ReadJwtBundles(response, set) is { } error)
        {
            return error;
        }
        lock (_lock)
        {
            _jwt = set.Bundles.ToDictionary(b => b.TrustDomain);
            Publish();
        }
        ChangedEvent.Raise(Changed, this, _client.Logger, nameof(BundleSource));
        return null;
    }

    internal static string? ReadJwtBundles(JWTBundlesResponse response, BundleSet into)
    {
        foreach (var (key, jwks) in response.Bundles)
        {
            if (!TrustDomain.TryParse(key, out var td, out var error) || !TrustBundle.TryParseJwks(td, Encoding.UTF8.GetString(jwks.Span), out var bundle, out error))
            {
                return $"JWT bundle '{WorkloadApiClient.OneLine(key)}' cannot be read ({error})";
            }
            into.Set(bundle);
        }
        return null;
    }

    private void Publish()
    {
        var merged = new BundleSet();
        foreach (var td in _x509.Keys.Union(_jwt.Keys))
        {
            var x = _x509.GetValueOrDefault(td);
            var j = _jwt.GetValueOrDefault(td);
            merged.Set(new TrustBundle(td, x?.X509Authorities ?? [], j?.JwtAuthorityList ?? (IReadOnlyList<JwtAuthority>)[]));
        }
        Volatile.Write(ref _merged, merged);
    }

    /// <summary>Ends the streams and closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_loops).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _client.Dispose();
        _stop.Dispose();
    }

    /// <summary>Ends the streams and closes the connection.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
