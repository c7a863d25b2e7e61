using Microsoft.Extensions.Logging;
using Writ.Spiffe;

namespace Writ.Server.Discovery;

/// <summary>A bundle as the server's admin API gives it (GetBundle): its trust domain and the SPIFFE bundle JSON.</summary>
public sealed record BundleReading(string TrustDomain, string SpiffeBundleJson);

/// <summary>
/// Keeps the discovery documents current: reads the bundle from the server every <see cref="DiscoveryOptions.RefreshInterval"/>
/// and rebuilds the documents when it changed. When the server cannot be reached (or answers with something that is not a
/// bundle) the last good documents stay served, with one warning per outage (event 1972) and a line when it ends (1973):
/// a verifier must not lose the keys because a server restarts. A key the server publishes is served within one
/// interval; the server publishes a JWT key long before it signs with it (ca.jwt_key_ttl: at 1/2, signing from 5/6) and
/// keeps it until after the last token it signed has expired.
/// </summary>
public sealed class DiscoveryKeySource(Func<CancellationToken, Task<BundleReading>> fetch, string issuer, TimeSpan interval, TimeProvider time, ILogger log)
{
    private readonly byte[] _emptyConfiguration = DiscoveryDocuments.Configuration(issuer);
    private volatile DiscoverySnapshot? _current;
    private DateTimeOffset? _lastGood;
    private int _failures;
    private DateTimeOffset _failingSince;
    private string? _lastJson;

    public string Issuer { get; } = issuer;

    /// <summary>The documents of the last bundle read; null until one was.</summary>
    public DiscoverySnapshot? Current => _current;

    /// <summary>The configuration to serve: the current one, or (before any bundle) one listing every algorithm.</summary>
    public byte[] Configuration => _current?.Configuration ?? _emptyConfiguration;

    /// <summary>One read of the bundle. Never throws but for cancellation: a failure keeps the previous documents.</summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        try
        {
            var reading = await fetch(ct).ConfigureAwait(false);
            if (!string.Equals(reading.SpiffeBundleJson, _lastJson, StringComparison.Ordinal))
            {
                var td = TrustDomain.TryParse(reading.TrustDomain, out var parsed, out var tdError) ? parsed
                    : throw new FormatException($"the server named an invalid trust domain: {tdError}");
                var snapshot = DiscoveryDocuments.Build(td, reading.SpiffeBundleJson, Issuer);
                var changed = _current is null || !snapshot.Kids.SequenceEqual(_current.Kids, StringComparer.Ordinal);
                _current = snapshot;
                _lastJson = reading.SpiffeBundleJson;
                if (changed)
                {
                    ServerLog.DiscoveryKeysChanged(log, snapshot.Kids.Count == 0 ? "(none)" : string.Join(", ", snapshot.Kids), snapshot.Sequence ?? 0);
                }
            }
            if (_failures > 0)
            {
                ServerLog.DiscoveryBundleRecovered(log, _failures, time.GetUtcNow() - _failingSince);
                _failures = 0;
            }
            _lastGood = time.GetUtcNow();
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            if (_failures++ == 0)
            {
                _failingSince = time.GetUtcNow();
                ServerLog.DiscoveryBundleUnavailable(log, OneLine(e), _lastGood is { } g ? g.ToString("u", System.Globalization.CultureInfo.InvariantCulture) : "never");
            }
        }
    }

    /// <summary>Reads the bundle every interval until cancelled.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await RefreshAsync(ct).ConfigureAwait(false);
                await Task.Delay(interval, time, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private static string OneLine(Exception e)
    {
        var m = e is Writ.Protocol.Errors.WritException w ? $"{w.Code}: {w.Message}" : e.Message;
        var nl = m.IndexOfAny(['\r', '\n']);
        return nl >= 0 ? m[..nl] : m;
    }
}
