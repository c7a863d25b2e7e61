using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;
using Writ.Protocol.Errors;

namespace Writ.Server.Oidc;

/// <summary>
/// One issuer's signing keys: found through its discovery document (unless <c>jwks_uri</c> is configured), fetched over
/// HTTPS with an <see cref="HttpClient"/> of its own (only <c>ca_file</c> trusted when set, host name still checked,
/// no redirects, responses capped at <see cref="MaxResponseBytes"/>, <see cref="FetchTimeout"/>), and cached.
/// <list type="bullet">
/// <item>A cached set is used for <see cref="CacheLifetime"/>; after that the next token fetches it again.</item>
/// <item>An unknown <c>kid</c> fetches the set again, but at most once per <see cref="MinRefreshInterval"/> (counted from
///   the last fetch of any kind), so attacker-chosen kids cannot turn into a request storm at the issuer.</item>
/// <item>When a fetch fails and a set is cached, the cached set keeps being used (the failure is logged and retried at
///   most once per <see cref="MinRefreshInterval"/>); with nothing cached the token is refused as Unavailable, and the
///   failure is remembered for <see cref="ColdRetryInterval"/> so a down issuer is not asked for every token.</item>
/// </list>
/// Microsoft.IdentityModel's ConfigurationManager is not used for this: it cannot cap response sizes, trust a per-issuer
/// CA file, tell "unknown kid" from "stale", or run on an injected clock; its parsers (OpenIdConnectConfiguration,
/// JsonWebKeySet) are.
/// </summary>
internal sealed class OidcIssuerKeys : IDisposable
{
    public static readonly TimeSpan CacheLifetime = TimeSpan.FromMinutes(10);
    public static readonly TimeSpan MinRefreshInterval = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan ColdRetryInterval = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan FetchTimeout = TimeSpan.FromSeconds(10);
    public const int MaxResponseBytes = 256 * 1024;

    private readonly OidcIssuerConfig _config;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly HttpClient _http;
    private readonly string? _caProblem;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile Snapshot? _snapshot;
    private long _lastAttemptTicks;
    private WritException? _lastError;

    public OidcIssuerKeys(OidcIssuerConfig config, TimeProvider time, ILogger log)
    {
        _config = config;
        _time = time;
        _log = log;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = FetchTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            MaxResponseHeadersLength = 64,   // KiB
        };
        if (config.CaFile is { } caFile)
        {
            var cas = OidcOptions.LoadCaFile(caFile, out var problem);
            if (cas is null)
            {
                _caProblem = $"ca_file '{caFile}' {problem}";
                cas = [];
            }
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, chain, errors) => TrustedByCaFile(certificate, chain, errors, cas);
        }
        _http = new HttpClient(handler) { Timeout = FetchTimeout, MaxResponseContentBufferSize = MaxResponseBytes };
    }

    /// <summary>The signing keys: the cached set, or a fresh one when the cache is old or <paramref name="unknownKid"/> asks for a refresh (throttled).</summary>
    public async Task<IReadOnlyList<OidcSigningKey>> GetAsync(bool unknownKid, CancellationToken ct)
    {
        var snapshot = _snapshot;
        if (snapshot is not null && !FetchDue(snapshot, unknownKid, _time.GetUtcNow()))
        {
            return snapshot.Keys;
        }
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            snapshot = _snapshot;   // another caller may have fetched while this one waited
            if (snapshot is not null)
            {
                if (!FetchDue(snapshot, unknownKid, now))
                {
                    return snapshot.Keys;
                }
            }
            else if (_lastError is { } cold && now - LastAttempt < ColdRetryInterval)
            {
                throw new WritException(cold.Code, cold.Kind, cold.Message);
            }
            Volatile.Write(ref _lastAttemptTicks, now.UtcTicks);
            var reason = snapshot is null ? "first use" : unknownKid ? "token names an unknown kid" : "cache expired";
            try
            {
                var (keys, jwksUri) = await FetchAsync(ct).ConfigureAwait(false);
                _snapshot = new Snapshot(keys, now);
                _lastError = null;
                OidcLog.KeysFetched(_log, _config.Issuer, keys.Count, jwksUri.ToString(), reason);
                return keys;
            }
            catch (WritException e)
            {
                _lastError = e;
                if (snapshot is not null)
                {
                    OidcLog.UnreachableUsingCache(_log, _config.Issuer, e.Code, e.Message, snapshot.FetchedAt);
                    return snapshot.Keys;
                }
                OidcLog.UnreachableNoCache(_log, _config.Issuer, e.Code, e.Message);
                throw;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private DateTimeOffset LastAttempt => new(Volatile.Read(ref _lastAttemptTicks), TimeSpan.Zero);

    /// <summary>A fetch is wanted (cache old, or an unknown kid) and allowed (none in the last <see cref="MinRefreshInterval"/>).</summary>
    private bool FetchDue(Snapshot snapshot, bool unknownKid, DateTimeOffset now) =>
        (unknownKid || now - snapshot.FetchedAt >= CacheLifetime) && now - LastAttempt >= MinRefreshInterval;

    private async Task<(IReadOnlyList<OidcSigningKey> Keys, Uri JwksUri)> FetchAsync(CancellationToken ct)
    {
        if (_caProblem is not null)
        {
            throw OidcErrors.Unavailable(OidcErrors.IssuerMisconfigured, $"the OIDC issuer {_config.Issuer} cannot be trusted: {_caProblem}; fix 'ca_file' in oidc_issuers");
        }
        var jwksUri = _config.JwksUri ?? await DiscoverAsync(ct).ConfigureAwait(false);
        var json = await GetAsync(jwksUri, "JWKS", ct).ConfigureAwait(false);
        JsonWebKeySet set;
        try
        {
            set = new JsonWebKeySet(json);
        }
        catch (Exception e) when (e is ArgumentException or System.Text.Json.JsonException or InvalidOperationException)
        {
            throw Misconfigured($"its JWKS at {jwksUri} is not a JSON Web Key Set");
        }
        var keys = new List<OidcSigningKey>();
        foreach (var jwk in set.Keys)
        {
            // Only public keys meant for signatures: a symmetric ("oct") key in a JWKS would let anyone who reads the JWKS
            // sign tokens, so it is never used, whatever the algorithm allow-list says.
            if (jwk.Kty is not (JsonWebAlgorithmsKeyTypes.RSA or JsonWebAlgorithmsKeyTypes.EllipticCurve)
                || !(string.IsNullOrEmpty(jwk.Use) || jwk.Use == JsonWebKeyUseNames.Sig)
                || jwk.HasPrivateKey)
            {
                continue;
            }
            if (JsonWebKeyConverter.TryConvertToSecurityKey(jwk, out var key))
            {
                keys.Add(new OidcSigningKey(key, string.IsNullOrEmpty(jwk.Alg) ? null : jwk.Alg));
            }
        }
        if (keys.Count == 0)
        {
            throw Misconfigured($"its JWKS at {jwksUri} holds no RSA or EC signing key");
        }
        return (keys, jwksUri);
    }

    private async Task<Uri> DiscoverAsync(CancellationToken ct)
    {
        var url = new Uri(_config.Issuer.TrimEnd('/') + "/.well-known/openid-configuration");
        var json = await GetAsync(url, "discovery document", ct).ConfigureAwait(false);
        OpenIdConnectConfiguration doc;
        try
        {
            doc = OpenIdConnectConfiguration.Create(json);
        }
        catch (Exception e) when (e is ArgumentException or System.Text.Json.JsonException or InvalidOperationException)
        {
            throw Misconfigured($"its discovery document at {url} is not valid JSON");
        }
        if (!string.Equals(doc.Issuer, _config.Issuer, StringComparison.Ordinal))
        {
            throw Misconfigured($"its discovery document at {url} names issuer '{Printable(doc.Issuer)}', not '{_config.Issuer}' (they must be equal, character for character)");
        }
        if (!Uri.TryCreate(doc.JwksUri, UriKind.Absolute, out var jwks) || jwks.Scheme != Uri.UriSchemeHttps)
        {
            throw Misconfigured($"its discovery document at {url} gives jwks_uri '{Printable(doc.JwksUri)}', which is not an https URL");
        }
        return jwks;
    }

    private async Task<string> GetAsync(Uri url, string what, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(FetchTimeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                var redirect = (int)response.StatusCode is >= 300 and < 400 ? " (redirects are not followed: configure the final URL)" : "";
                throw Unreachable($"its {what} at {url} answered HTTP {(int)response.StatusCode}{redirect}");
            }
            if (response.Content.Headers.ContentLength > MaxResponseBytes)
            {
                throw Unreachable($"its {what} at {url} is larger than {MaxResponseBytes / 1024} KiB");
            }
            var stream = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                var buffer = new byte[MaxResponseBytes + 1];
                var length = 0;
                int read;
                while (length < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(length), timeout.Token).ConfigureAwait(false)) > 0)
                {
                    length += read;
                }
                if (length > MaxResponseBytes)
                {
                    throw Unreachable($"its {what} at {url} is larger than {MaxResponseBytes / 1024} KiB");
                }
                return Encoding.UTF8.GetString(buffer, 0, length);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw Unreachable($"its {what} at {url} did not answer within {FetchTimeout.TotalSeconds:0} s");
        }
        catch (HttpRequestException e)
        {
            var tls = e.InnerException is AuthenticationException ? " (TLS: the issuer's certificate is not trusted; check 'ca_file' or the system roots)" : "";
            throw Unreachable($"its {what} at {url} could not be fetched: {OneLine(e.HttpRequestError.ToString())}{tls}");
        }
    }

    private bool TrustedByCaFile(System.Security.Cryptography.X509Certificates.X509Certificate? certificate, X509Chain? presented, SslPolicyErrors errors, X509Certificate2Collection cas)
    {
        // The host name is still checked: only chain errors (the system roots do not know the CA) are re-judged here.
        if (certificate is null || cas.Count == 0 || (errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) != 0)
        {
            return false;
        }
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(cas);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = _time.GetUtcNow().UtcDateTime;
        chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.1"));   // serverAuth
        foreach (var element in presented?.ChainElements ?? (IEnumerable<X509ChainElement>)[])
        {
            if (!element.Certificate.RawData.AsSpan().SequenceEqual(leaf.RawData))
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }
        return chain.Build(leaf);
    }

    private WritException Unreachable(string what) =>
        OidcErrors.Unavailable(OidcErrors.IssuerUnreachable, $"the OIDC issuer {_config.Issuer} cannot be reached: {what}; retry later, and check the issuer URL and the server's network and TLS trust if it persists");

    private WritException Misconfigured(string what) =>
        OidcErrors.Unavailable(OidcErrors.IssuerMisconfigured, $"the OIDC issuer {_config.Issuer} cannot be used: {what}; check 'issuer' and 'jwks_uri' in oidc_issuers");

    private static string OneLine(string s) => string.Join(' ', s.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries));

    private static string Printable(string? s)
    {
        s ??= "";
        var clean = new string([.. s.Take(120).Select(ch => char.IsControl(ch) ? '?' : ch)]);
        return s.Length > 120 ? clean + "…" : clean;
    }

    public void Dispose()
    {
        _http.Dispose();
        _gate.Dispose();
    }

    private sealed record Snapshot(IReadOnlyList<OidcSigningKey> Keys, DateTimeOffset FetchedAt);
}

/// <summary>A public key of an issuer's JWKS, with the <c>alg</c> the JWKS restricts it to (null: none given).</summary>
internal sealed record OidcSigningKey(SecurityKey Key, string? Alg);
