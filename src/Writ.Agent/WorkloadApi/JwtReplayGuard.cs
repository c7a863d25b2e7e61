using System.Threading.Channels;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Agent;
using Writ.Spiffe.Jwt;
using Writ.Protocol.Evidence;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// Replay detection for ValidateJWTSVID, for relying parties entitled to the audience (<see cref="IsRelyingPartyFor"/>).
/// Each (token, audience) — the token by its jti, or its SHA-256 when it has none —
/// is remembered with the first relying party it was validated for, until it expires; the same token validated for the
/// same audience by another relying party is a replay: refused, and reported to the server (ReportJwtReplay, by the
/// hosted <see cref="JwtReplayReportService"/>, retried with backoff). A token minted for several audiences may be validated once per audience.
/// <para>
/// The <b>peer</b> here is the relying party that calls ValidateJWTSVID, as the agent attested it from the kernel — not
/// the client that presented the token to it (the agent never sees that connection; relying parties that terminate
/// mTLS check the binding themselves with <see cref="JwtSvidVerifier"/>). A relying party is named by the SPIFFE IDs its
/// evidence matches (<c>spiffe:ID[,ID…]</c>): replicas of one service match the same entries and are one peer, also across
/// executable upgrades; two services registered apart are two. A caller that matches no entry is named by its uid and
/// executable path (<c>uid:N exe:PATH</c>, else its executable hash).
/// </para>
/// </summary>
public sealed class JwtReplayGuard
{
    private const int MaxPendingReports = 256;
    private const int MaxAttempts = 8;

    private readonly Func<AgentService.AgentServiceClient> _client;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Channel<(ReportJwtReplayRequest Report, string Name)> _reports =
        Channel.CreateUnbounded<(ReportJwtReplayRequest, string)>(new UnboundedChannelOptions { SingleReader = true });
    private int _pending;

    public JwtReplayGuard(Func<AgentService.AgentServiceClient> client, TimeProvider time, ILogger log, int capacity = 100_000)
    {
        _client = client;
        _time = time;
        _log = log;
        Cache = new JwtReplayCache(capacity);
    }

    /// <summary>Which token was first validated for which relying party.</summary>
    public JwtReplayCache Cache { get; }

    /// <summary>Retry delays start here and double (tests shorten it).</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Reports waiting or in flight (for tests and diagnostics).</summary>
    public int PendingReports => Volatile.Read(ref _pending);

    /// <summary>The live entries whose selectors the evidence has (what the caller is registered as).</summary>
    private static IEnumerable<Entry> Matched(ProcessEvidence evidence, AgentSnapshot snapshot, DateTimeOffset now)
    {
        var have = SelectorMatch.SetOf(evidence.Selectors);
        var unix = now.ToUnixTimeSeconds();
        return snapshot.Entries.Values
            .Where(e => (e.ExpiresAtUnix == 0 || e.ExpiresAtUnix > unix) && EvidenceProto.Matches(e.Selectors, have));
    }

    /// <summary>
    /// Whether the caller is entitled to be the relying party of <paramref name="audience"/>, so that its validation
    /// counts as the token's use for that audience: one of the entries it matches has the audience as its SPIFFE ID,
    /// or lists it — or, for an http/https URL audience, its host — among its DNS names; a <c>spiffe://</c> audience
    /// must be the entry's SPIFFE ID exactly (<c>writ entry create --dns</c>). Any other
    /// caller gets a plain validation answer that records nothing: it could otherwise "use" a token it has seen
    /// first, and the real relying party would be refused as a replay and the token revoked (token burning).
    /// </summary>
    public static bool IsRelyingPartyFor(ProcessEvidence evidence, AgentSnapshot snapshot, string audience, DateTimeOffset now)
    {
        var uri = Uri.TryCreate(audience, UriKind.Absolute, out var u) ? u : null;
        if (uri is not null && string.Equals(uri.Scheme, "spiffe", StringComparison.OrdinalIgnoreCase))
        {
            // A SPIFFE ID audience names one workload: only an entry with exactly that ID is its relying party (a DNS
            // name equal to the trust domain must not cover every ID in it).
            return Matched(evidence, snapshot, now).Any(e => string.Equals(e.SpiffeId, audience, StringComparison.Ordinal));
        }
        var host = uri is not null && (uri.Scheme == Uri.UriSchemeHttps || uri.Scheme == Uri.UriSchemeHttp) && uri.Host.Length > 0 ? uri.Host : null;
        return Matched(evidence, snapshot, now).Any(e =>
            string.Equals(e.SpiffeId, audience, StringComparison.Ordinal)
            || e.DnsNames.Any(d => string.Equals(d, audience, StringComparison.OrdinalIgnoreCase) || (host is not null && string.Equals(d, host, StringComparison.OrdinalIgnoreCase))));
    }

    /// <summary>How the relying party calling ValidateJWTSVID is named (see the class summary).</summary>
    public static string PeerOf(ProcessEvidence evidence, AgentSnapshot snapshot, DateTimeOffset now)
    {
        var ids = Matched(evidence, snapshot, now)
            .Select(e => e.SpiffeId)
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToList();
        if (ids.Count > 0)
        {
            return "spiffe:" + string.Join(',', ids);
        }
        string? Selector(string prefix) => evidence.Selectors.FirstOrDefault(s => s.Type == "unix" && s.Value.StartsWith(prefix, StringComparison.Ordinal))?.Value[prefix.Length..];
        var exe = Selector("path:") is { } path ? " exe:" + path : Selector("sha256:") is { } sha ? " sha256:" + sha : "";
        return $"uid:{evidence.Process.Peer.Uid}{exe}";
    }

    /// <summary>Records that <paramref name="peer"/> validated <paramref name="svid"/>; on a replay starts the report to the server.</summary>
    public JwtReplayCheck Check(JwtSvid svid, string peer, string audience, DateTimeOffset now, TimeSpan leeway)
    {
        // Per audience: a token issued for several audiences may be validated once by each of them.
        var key = JwtReplayCache.KeyOf(svid);
        var check = Cache.Record(key + " aud:" + audience, peer, svid.ExpiresAt + leeway, now);
        if (check.IsReplay)
        {
            var name = TokenName(svid, key);
            AgentLog.JwtReplayRefused(_log, name, svid.Id.ToString(), check.FirstPeer, peer);
            var report = new ReportJwtReplayRequest
            {
                Jti = svid.Jti ?? "",
                // As the report says: the SHA-256 of the token as presented (the cache keys jti-less tokens by their signed
                // part, so that a re-encoded signature is the same token; the record names the token itself).
                TokenSha256 = svid.Jti is null ? Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(svid.Token))) : "",
                SpiffeId = svid.Id.ToString(),
                FirstPeer = check.FirstPeer,
                SecondPeer = peer,
                Audience = audience,
                ExpiresAtUnix = svid.ExpiresAt.ToUnixTimeSeconds(),
            };
            Report(report, name);
        }
        return check;
    }

    /// <summary>Queued for <see cref="SendReportsAsync"/>: a bounded number waiting or in flight; beyond that, dropped and logged.</summary>
    private void Report(ReportJwtReplayRequest report, string name)
    {
        if (Interlocked.Increment(ref _pending) > MaxPendingReports || !_reports.Writer.TryWrite((report, name)))
        {
            Interlocked.Decrement(ref _pending);
            AgentLog.JwtReplayReportFailed(_log, name, $"more than {MaxPendingReports} replay reports are waiting for the server; this one is dropped (the refusal stands)");
        }
    }

    /// <summary>
    /// Delivers queued reports until stopped, each retried with backoff on its own (one slow report does not hold up the
    /// next); on the way out waits for those in flight, which end at once on the same token.
    /// </summary>
    public async Task SendReportsAsync(CancellationToken stopping)
    {
        var inFlight = new List<Task>();
        try
        {
            await foreach (var (report, name) in _reports.Reader.ReadAllAsync(stopping).ConfigureAwait(false))
            {
                inFlight.RemoveAll(t => t.IsCompleted);
                inFlight.Add(SendTrackedAsync(report, name, stopping));
            }
        }
        finally
        {
            await Task.WhenAll(inFlight).ConfigureAwait(false);
        }
    }

    private async Task SendTrackedAsync(ReportJwtReplayRequest report, string name, CancellationToken stopping)
    {
        try
        {
            await SendAsync(report, name, stopping).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _pending);
        }
    }

    private async Task SendAsync(ReportJwtReplayRequest report, string name, CancellationToken stopping)
    {
        var revoked = false;
        var outcome = await ServerReportDelivery.SendAsync(async ct =>
            {
                var r = await _client().ReportJwtReplayAsync(report, deadline: _time.GetUtcNow().UtcDateTime.AddSeconds(10), cancellationToken: ct).ConfigureAwait(false);
                revoked = r.Revoked;
            },
            MaxAttempts, RetryDelay, _time, (reason, attempt, delay) => AgentLog.JwtReplayReportRetry(_log, name, reason, attempt, delay), stopping).ConfigureAwait(false);
        if (outcome.Delivered)
        {
            AgentLog.JwtReplayReported(_log, name, revoked);
        }
        else if (outcome.Failure is { } failure)
        {
            AgentLog.JwtReplayReportFailed(_log, name, failure);
        }
    }

    private static string TokenName(JwtSvid svid, string key) => svid.Jti is { } jti ? $"jti {jti}" : $"token {key[(key.IndexOf(' ') + 1)..]}";
}
