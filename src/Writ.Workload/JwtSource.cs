using System.Collections.Concurrent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Workload;

/// <summary>
/// JWT-SVIDs of this workload for an audience, fetched from the Workload API (FetchJWTSVID) and cached per (audience
/// set, subject) until half their lifetime has passed; and the JWT bundles (FetchJWTBundles stream) to validate others'
/// tokens, locally (<see cref="Validate"/>) or by the agent (<see cref="ValidateAsync"/>).
/// </summary>
public sealed class JwtSource : IJwtSvidSource, IWatchedBundleSource, IAsyncDisposable, IDisposable
{
    private readonly WorkloadApiClient _client;
    private readonly BundleSource _bundles;
    private readonly ConcurrentDictionary<string, JwtSvid> _cache = new(StringComparer.Ordinal);
    private int _disposed;

    private JwtSource(WorkloadApiClient client, BundleSource bundles)
    {
        _client = client;
        _bundles = bundles;
        _bundles.Changed += (_, _) => ChangedEvent.Raise(Changed, this, client.Logger, nameof(JwtSource));
    }

    /// <summary>
    /// Connects and waits for the first JWT bundles. Throws <see cref="WorkloadApiException"/> (WRIT-SDK-ADDRESS,
    /// WRIT-SDK-DENIED, WRIT-SDK-TIMEOUT).
    /// </summary>
    public static async Task<JwtSource> CreateAsync(WorkloadApiOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new WorkloadApiOptions();
        var bundleOptions = new BundleSourceOptions
        {
            Address = options.Address, InitialTimeout = options.InitialTimeout, InitialBackoff = options.InitialBackoff,
            MaxBackoff = options.MaxBackoff, TimeProvider = options.TimeProvider, Jitter = options.Jitter,
            LoggerFactory = options.LoggerFactory, X509 = false, Jwt = true,
        };
        var client = WorkloadApiClient.Create(options);
        try
        {
            var bundles = await BundleSource.CreateAsync(bundleOptions, cancellationToken).ConfigureAwait(false);
            return new JwtSource(client, bundles);
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>Raised after the JWT bundles changed.</summary>
    public event EventHandler? Changed;

    /// <summary>
    /// A JWT-SVID for <paramref name="audience"/> (of <paramref name="subject"/>, or the workload's first identity):
    /// from the cache while less than half its lifetime has passed, else freshly fetched.
    /// </summary>
    public async Task<JwtSvid> FetchJwtSvidAsync(IReadOnlyList<string> audience, SpiffeId? subject = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        ArgumentNullException.ThrowIfNull(audience);
        var key = string.Join('\n', audience.Order(StringComparer.Ordinal)) + "\0" + subject;
        var now = _client.Options.TimeProvider.GetUtcNow();
        if (_cache.TryGetValue(key, out var cached) && now < RefreshAt(cached))
        {
            return cached;
        }
        var svids = await _client.FetchJwtSvidsAsync(audience, subject, cancellationToken).ConfigureAwait(false);
        var svid = svids[0];
        _cache[key] = svid;
        return svid;
    }

    private static DateTimeOffset RefreshAt(JwtSvid svid)
    {
        var issued = svid.IssuedAt ?? svid.ExpiresAt;
        return issued + (svid.ExpiresAt - issued) / 2;
    }

    /// <summary>
    /// The agent validates <paramref name="token"/> for <paramref name="audience"/> (ValidateJWTSVID: signature against
    /// its bundles, expiry, audience, and its own replay and revocation checks). Throws WRIT-SDK-JWT-INVALID when refused.
    /// </summary>
    public Task<JwtSvid> ValidateAsync(string token, string audience, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return _client.ValidateJwtSvidAsync(token, audience, cancellationToken);
    }

    /// <summary>
    /// Validates <paramref name="token"/> here, against the JWT bundles of this source (signature, expiry, audience);
    /// no call to the agent. Throws <see cref="WorkloadApiException"/> WRIT-SDK-JWT-INVALID with the reason when refused.
    /// </summary>
    public JwtSvid Validate(string token, string audience)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        ArgumentException.ThrowIfNullOrEmpty(audience);
        var v = JwtSvidValidator.Validate(token ?? "", _bundles, [audience], _client.Options.TimeProvider.GetUtcNow());
        return v.IsValid && v.Svid is not null ? v.Svid : throw new WorkloadApiException(WorkloadErrors.JwtInvalid, $"the JWT-SVID was refused: {v.Error}");
    }

    /// <inheritdoc />
    public TrustBundle? GetBundle(TrustDomain td) => _bundles.GetBundle(td);

    /// <inheritdoc />
    public TrustBundle? GetJwtBundle(TrustDomain td) => _bundles.GetJwtBundle(td);

    /// <summary>Ends the bundle stream and closes the connections.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _bundles.DisposeAsync().ConfigureAwait(false);
        _client.Dispose();
    }

    /// <summary>Ends the bundle stream and closes the connections.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
