using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;
using Writ.Protocol;
using Writ.Server.Hosting;
using Writ.Server.Ledger;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Server.Federation;

/// <summary>
/// Fetches each foreign trust domain's bundle from its bundle endpoint (SPIFFE Trust Domain and Bundle §5.2): at the
/// bundle's refresh hint (bounded), at once on create, update and <c>writ federation refresh</c>. https_web: Web PKI
/// validation (system roots, host name); https_spiffe: the endpoint's chain must validate against the stored bundle of
/// that domain and carry exactly the configured SPIFFE ID. A failure keeps the stored bundle and records last_error.
/// Several servers on one store take turns: a due fetch is leased by a conditional update of next_refresh.
/// </summary>
public sealed class BundleRefresher(ServerContext server, ILogger log)
{
    public const string FetchCode = "WRIT-FED-FETCH";
    public const string FetchTlsCode = "WRIT-FED-FETCH-TLS";
    public const string FetchTooLargeCode = "WRIT-FED-FETCH-TOO-LARGE";
    public const string FetchBundleCode = "WRIT-FED-FETCH-BUNDLE";
    /// <summary>The endpoint served a bundle older than the one held (a lower spiffe_sequence): refused, the held one kept.</summary>
    public const string FetchRollbackCode = "WRIT-FED-FETCH-ROLLBACK";
    /// <summary>The endpoint served other keys under the held bundle's spiffe_sequence: refused, the held one kept.</summary>
    public const string FetchSequenceReusedCode = "WRIT-FED-FETCH-SEQUENCE-REUSED";

    /// <summary>A bundle document larger than this is refused (a bundle is a few KiB).</summary>
    public const int MaxBodyBytes = 1 << 20;
    public static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan MaxInterval = TimeSpan.FromHours(1);
    /// <summary>When the bundle names no refresh hint (SPIRE's default).</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan FetchTimeout = TimeSpan.FromSeconds(10);

    private readonly ChangeSignal _kick = new();

    /// <summary>Wakes the loop (a relationship was created or changed here).</summary>
    public void Kick() => _kick.Raise();

    /// <summary>The loop: fetch what is due, sleep until the next due time (or a kick, or 5 s for other servers' changes).</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var generation = _kick.Generation;
            var next = server.Time.GetUtcNow() + TimeSpan.FromSeconds(5);
            foreach (var f in await server.Store.Federations.ListAsync(stop).ConfigureAwait(false))
            {
                var r = f.Relationship;
                var now = server.Time.GetUtcNow();
                if (r.NextRefresh > now)
                {
                    next = r.NextRefresh < next ? r.NextRefresh : next;
                    continue;
                }
                // The lease: of several servers, the one that moves next_refresh fetches; the others skip this round.
                if (await server.Store.Federations.TryLeaseRefreshAsync(r.TrustDomain, r.NextRefresh, now + (FetchTimeout * 3), stop).ConfigureAwait(false))
                {
                    await RefreshAsync(r, stop).ConfigureAwait(false);
                }
            }
            var delay = next - server.Time.GetUtcNow();
            if (delay > TimeSpan.Zero)
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(stop);
                await Task.WhenAny(Task.Delay(delay, server.Time, wait.Token), _kick.WaitAsync(generation, wait.Token)).ConfigureAwait(false);
                await wait.CancelAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Fetches now (admin refresh) and records the outcome; returns the relationship as stored afterwards.</summary>
    public async Task<FederationRelationship?> RefreshNowAsync(string trustDomain, CancellationToken ct)
    {
        var r = await server.Store.Federations.GetAsync(trustDomain, ct).ConfigureAwait(false);
        if (r is null)
        {
            return null;
        }
        await RefreshAsync(r, ct).ConfigureAwait(false);
        return await server.Store.Federations.GetAsync(trustDomain, ct).ConfigureAwait(false);
    }

    private async Task RefreshAsync(FederationRelationship r, CancellationToken ct)
    {
        var td = TrustDomain.Parse(r.TrustDomain);
        var stored = await server.Store.Bundles.GetAsync(r.TrustDomain, ct).ConfigureAwait(false);
        TrustBundle? storedBundle = null;
        if (stored is not null)
        {
            TrustBundle.TryParseSpiffeJson(td, stored.SpiffeBundleJson, out storedBundle, out _);
        }
        var now = server.Time.GetUtcNow();
        try
        {
            var (bundle, json) = await FetchAsync(r, td, storedBundle, ct).ConfigureAwait(false);
            RefuseRollback(r, stored, storedBundle, bundle);
            var next = now + Clamp(bundle.RefreshHint ?? DefaultInterval);
            var changed = stored is null || !SameKeys(storedBundle, bundle) || bundle.Sequence is { } s && s != stored.Sequence;
            if (changed)
            {
                var seq = bundle.Sequence ?? (stored?.Sequence ?? 0) + 1;
                var record = LedgerEvents.FederationBundle(r.TrustDomain, stored?.Sequence, storedBundle is null ? [] : FederationRules.KeyIds(storedBundle), bundle);
                if (!await server.Store.Federations.RecordRefreshAsync(r.TrustDomain, new StoredBundle(r.TrustDomain, json, seq, now), null, next, ct, [record],
                    fetchedFrom: r, storedSequence: stored?.Sequence).ConfigureAwait(false))
                {
                    return;   // the relationship or its bundle changed (or it was deleted) while this fetch was in flight: drop it
                }
                ServerLog.FederatedBundleUpdated(log, r.TrustDomain, stored?.Sequence ?? 0, seq);
                await server.FederatedBundles.ReloadAsync(ct).ConfigureAwait(false);
            }
            else
            {
                await server.Store.Federations.RecordRefreshAsync(r.TrustDomain, null, null, next, ct).ConfigureAwait(false);
            }
        }
        catch (FetchException e)
        {
            ServerLog.FederatedBundleFetchFailed(log, r.TrustDomain, e.Code, e.Message);
            await server.Store.Federations.RecordRefreshAsync(r.TrustDomain, null, $"{e.Code}: {e.Message}", now + RetryInterval, ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A fetched bundle never replaces a newer one (issue #16): a lower spiffe_sequence than the held bundle's is a rollback
    /// (a stale mirror or cache, or someone replaying an old document to bring back retired keys), and the held sequence
    /// with other keys is not the same bundle. Both are refused; the held bundle is kept. An operator replaces it
    /// explicitly with <c>writ federation update --trust-bundle-file</c>. A bundle without a sequence cannot be ordered.
    /// </summary>
    private static void RefuseRollback(FederationRelationship r, StoredBundle? stored, TrustBundle? storedBundle, TrustBundle fetched)
    {
        if (stored is null || storedBundle is null || fetched.Sequence is not { } seq)
        {
            return;
        }
        if (seq < stored.Sequence)
        {
            throw new FetchException(FetchRollbackCode, $"{r.BundleEndpointUrl} sent spiffe_sequence {seq}, older than the held bundle's {stored.Sequence}: refused, the held bundle is kept (if the trust domain really went back, replace it with 'writ federation update --trust-bundle-file')");
        }
        if (seq == stored.Sequence && !SameKeys(storedBundle, fetched))
        {
            throw new FetchException(FetchSequenceReusedCode, $"{r.BundleEndpointUrl} sent other keys under the held bundle's spiffe_sequence {seq}: refused, the held bundle is kept (check the endpoint; replace it with 'writ federation update --trust-bundle-file' if its keys are right)");
        }
    }

    private static TimeSpan Clamp(TimeSpan hint) => hint < MinInterval ? MinInterval : hint > MaxInterval ? MaxInterval : hint;

    private static bool SameKeys(TrustBundle? a, TrustBundle b) =>
        a is not null && FederationRules.KeyIds(a).SequenceEqual(FederationRules.KeyIds(b), StringComparer.Ordinal);

    /// <summary>One GET of the bundle endpoint with the profile's authentication; the document parsed and checked.</summary>
    internal async Task<(TrustBundle Bundle, string Json)> FetchAsync(FederationRelationship r, TrustDomain td, TrustBundle? storedBundle, CancellationToken ct)
    {
        string? tlsProblem = null;
        using var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            UseProxy = false,
            ConnectTimeout = FetchTimeout,
            MaxResponseHeadersLength = 64,
            PooledConnectionLifetime = TimeSpan.Zero,
        };
        if (r.Profile == FederationRelationship.HttpsSpiffe)
        {
            if (storedBundle is null)
            {
                throw new FetchException(FetchTlsCode, $"there is no stored bundle of {r.TrustDomain} to authenticate its https_spiffe endpoint: update the relationship with --trust-bundle-file");
            }
            var expected = SpiffeId.Parse(r.EndpointSpiffeId);
            handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, chain, _) =>
            {
                tlsProblem = SpiffeEndpointProblem(cert, chain, storedBundle, expected, server.Time.GetUtcNow());
                return tlsProblem is null;
            };
        }
        else
        {
            handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, errors) =>
            {
                tlsProblem = errors == SslPolicyErrors.None ? null : $"the endpoint's certificate is not trusted for its host name ({errors})";
                return tlsProblem is null;
            };
        }
        using var client = new HttpClient(handler, disposeHandler: false) { Timeout = Timeout.InfiniteTimeSpan, MaxResponseContentBufferSize = MaxBodyBytes };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(FetchTimeout);
        HttpResponseMessage response;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, r.BundleEndpointUrl);
            request.Headers.Accept.ParseAdd("application/json");
            response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new FetchException(FetchCode, $"{r.BundleEndpointUrl} did not answer within {FetchTimeout.TotalSeconds:0}s");
        }
        catch (HttpRequestException e)
        {
            throw tlsProblem is not null
                ? new FetchException(FetchTlsCode, $"{r.BundleEndpointUrl}: {tlsProblem}")
                : new FetchException(FetchCode, $"{r.BundleEndpointUrl}: {OneLine(e)}");
        }
        using (response)
        {
            if (response.StatusCode != HttpStatusCode.OK)
            {
                // A relative Location is legal HTTP: resolve it against the request, or GetLeftPart throws outside FetchException.
                var where = response.Headers.Location is { } loc ? $" (a redirect to {new Uri(new Uri(r.BundleEndpointUrl), loc).GetLeftPart(UriPartial.Path)}: bundle endpoints are fetched without following redirects; give the final URL)" : "";
                throw new FetchException(FetchCode, $"{r.BundleEndpointUrl} answered HTTP {(int)response.StatusCode}{where}");
            }
            if (response.Content.Headers.ContentLength > MaxBodyBytes)
            {
                throw new FetchException(FetchTooLargeCode, $"{r.BundleEndpointUrl} sent {response.Content.Headers.ContentLength} bytes, more than the {MaxBodyBytes} a bundle may have");
            }
            var body = new MemoryStream();
            try
            {
                var stream = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
                await using (stream.ConfigureAwait(false))
                {
                    var buffer = new byte[16384];
                    int n;
                    while ((n = await stream.ReadAsync(buffer, timeout.Token).ConfigureAwait(false)) > 0)
                    {
                        body.Write(buffer, 0, n);
                        if (body.Length > MaxBodyBytes)
                        {
                            throw new FetchException(FetchTooLargeCode, $"{r.BundleEndpointUrl} sent more than the {MaxBodyBytes} bytes a bundle may have");
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new FetchException(FetchCode, $"{r.BundleEndpointUrl} did not send its bundle within {FetchTimeout.TotalSeconds:0}s");
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                throw new FetchException(FetchCode, $"{r.BundleEndpointUrl}: {OneLine(e)}");
            }
            string json;
            try
            {
                json = new UTF8Encoding(false, true).GetString(body.ToArray());
            }
            catch (DecoderFallbackException)
            {
                throw new FetchException(FetchBundleCode, $"{r.BundleEndpointUrl} sent a document that is not UTF-8");
            }
            if (!FederationRules.TryParseBundle(td, json, out var bundle, out var error))
            {
                throw new FetchException(FetchBundleCode, $"{r.BundleEndpointUrl} sent no valid SPIFFE bundle of {r.TrustDomain}: {error}");
            }
            return (bundle!, json);
        }
    }

    /// <summary>https_spiffe (§5.2.2): the presented chain is an X.509-SVID of the foreign bundle carrying exactly the configured ID.</summary>
    private static string? SpiffeEndpointProblem(X509Certificate? cert, X509Chain? chain, TrustBundle bundle, SpiffeId expected, DateTimeOffset now)
    {
        if (cert is null)
        {
            return "the endpoint presented no certificate";
        }
        var leaf = cert as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(cert.GetRawCertData());
        var presented = new List<X509Certificate2> { leaf };
        presented.AddRange((chain?.ChainPolicy.ExtraStore ?? []).Where(c => c.Thumbprint != leaf.Thumbprint));
        var validation = X509SvidValidator.Validate(presented, bundle, now);
        if (!validation.IsValid)
        {
            return $"the endpoint's certificate is not an X.509-SVID of the stored {bundle.TrustDomain.Name} bundle ({validation.Error})";
        }
        return validation.Id == expected ? null : $"the endpoint presented {validation.Id}, not the configured {expected}";
    }

    private static string OneLine(Exception e) => (e.InnerException?.Message ?? e.Message).Split('\n')[0].Trim();

    private sealed class FetchException(string code, string message) : Exception(message)
    {
        public string Code { get; } = code;
    }
}
