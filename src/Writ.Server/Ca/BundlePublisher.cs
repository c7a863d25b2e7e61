using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Writ.Server.Ca.Journal;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Server.Ca;

/// <summary>
/// The trust bundle made from the CA journals of every server sharing the store (issue #16): every X.509 authority's trust
/// anchor and every JWT authority's public key, of this server's journal and of the others'. A bundle is stored with the
/// next sequence number only when its keys differ from the stored one's, by a compare-and-swap on that sequence: two
/// servers publishing at once never overwrite each other's keys (the loser merges again, its journal and the winner's).
/// </summary>
/// <remarks>
/// Every server computes the same bundle from the same journals: authorities expired more than the prune margin ago are
/// left out whoever's they are (a server that is gone never prunes its own journal), and so is an X.509 authority whose
/// recorded chain does not link up. The database is trusted: whoever can write it can add a journal, hence a trust anchor
/// (as they could before); no server ever signs with another server's journal (<see cref="Signing.CaSigner"/> loads keys
/// of its own journal only, after they matched the key manager).
/// </remarks>
internal sealed class BundlePublisher(TrustDomain td, IWritStore store, CaJournalStore journals, TimeSpan refreshHint, TimeSpan pruneMargin,
    TimeProvider time, ILogger log)
{
    /// <summary>How often a publication that keeps losing the race is merged again before the pass fails (and is redone).</summary>
    private const int MaxAttempts = 50;

    private TrustBundle? _bundle;
    private long _sequence;

    public TrustBundle? Current => _bundle;

    public long Sequence => Interlocked.Read(ref _sequence);

    /// <summary>The non-root certificates of the other servers' X.509 authorities (their SVIDs' intermediates, with an upstream CA).</summary>
    public IReadOnlyList<X509Certificate2> OtherIntermediates { get; private set; } = [];

    /// <summary>The other servers' journals as last read (for ListServers).</summary>
    public IReadOnlyList<(string Name, CaJournalDocument Journal)> Others { get; private set; } = [];

    /// <summary>The upstream's certificates, for journals from before the upstream roots were recorded with each authority.</summary>
    public IReadOnlyList<X509Certificate2> UpstreamRoots { get; set; } = [];

    public async Task LoadSequenceAsync(CancellationToken ct)
    {
        var stored = await store.Bundles.GetAsync(td.Name, ct).ConfigureAwait(false);
        Interlocked.Exchange(ref _sequence, stored?.Sequence ?? 0);
    }

    /// <summary>
    /// Publishes the merged bundle of <paramref name="own"/> and the other servers' journals when its keys differ from the
    /// stored one's. Returns the bundle when this server's view changed (it stored one, or another server had), else null.
    /// </summary>
    public async Task<TrustBundle?> PublishAsync(CaJournalDocument own, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var stored = await store.Bundles.GetAsync(td.Name, ct).ConfigureAwait(false);
            var others = await journals.OthersAsync(log, ct).ConfigureAwait(false);
            var now = time.GetUtcNow();
            var all = others.Select(o => o.Journal).Prepend(own).ToList();
            var roots = all.SelectMany(j => j.X509).Where(a => Live(a.NotAfter, now)).SelectMany(TrustAnchorsOf).DistinctBy(c => c.Thumbprint).ToList();
            var jwtKeys = all.SelectMany(j => j.Jwt).Where(a => Live(a.NotAfter, now)).DistinctBy(a => a.Kid)
                .Select(a => new JwtAuthority(a.Kid, CaCertificates.ImportPublic(a.PublicKeySpkiBase64))).ToList();
            var candidate = new TrustBundle(td, roots, jwtKeys, stored?.Sequence ?? 0, refreshHint);
            // Compare with what is published, not with whether this pass changed the journal: a restart that dropped
            // authorities (lost keys) must publish too, and a status change alone (prepared -> active) must not.
            if (stored is not null && SameKeys(stored.SpiffeBundleJson, candidate))
            {
                return Adopt(stored, others, now);
            }
            var seq = (stored?.Sequence ?? 0) + 1;
            candidate = new TrustBundle(td, roots, jwtKeys, seq, refreshHint);
            if (await store.Bundles.PutIfSequenceAsync(new StoredBundle(td.Name, candidate.ToSpiffeJson(), seq, now), stored?.Sequence ?? 0, ct).ConfigureAwait(false))
            {
                SetOthers(others, now);
                _bundle = candidate;   // the bundle first: whoever reads the new sequence finds its bundle
                Interlocked.Exchange(ref _sequence, seq);
                return candidate;
            }
            if (attempt >= MaxAttempts)
            {
                throw new StoreConflictException($"the trust bundle could not be published: {MaxAttempts} attempts in a row raced other servers; the next rotation pass retries");
            }
            ServerLog.BundlePublishRetry(log, seq);
        }
    }

    /// <summary>
    /// Takes the stored bundle when another server changed it (its sequence moved): returns it, or null when unchanged.
    /// Cheap when nothing changed: one row read.
    /// </summary>
    public async Task<TrustBundle?> ReloadAsync(CancellationToken ct)
    {
        var stored = await store.Bundles.GetAsync(td.Name, ct).ConfigureAwait(false);
        if (stored is null || stored.Sequence == Sequence)
        {
            return null;
        }
        var others = await journals.OthersAsync(log, ct).ConfigureAwait(false);
        return Adopt(stored, others, time.GetUtcNow());
    }

    private TrustBundle? Adopt(StoredBundle stored, IReadOnlyList<(string Name, CaJournalDocument Journal)> others, DateTimeOffset now)
    {
        SetOthers(others, now);
        var first = _bundle is null;
        if (!first && stored.Sequence == Sequence)
        {
            return null;
        }
        _bundle = TrustBundle.ParseSpiffeJson(td, stored.SpiffeBundleJson);
        Interlocked.Exchange(ref _sequence, stored.Sequence);
        return first ? null : _bundle;
    }

    private void SetOthers(IReadOnlyList<(string Name, CaJournalDocument Journal)> others, DateTimeOffset now)
    {
        Others = others;
        OtherIntermediates = others.SelectMany(o => o.Journal.X509).Where(a => Live(a.NotAfter, now))
            .SelectMany(a => a.ChainDerBase64)
            .Distinct(StringComparer.Ordinal)
            .Select(CaCertificates.Load)
            .Where(c => !CaCertificates.IsSelfSigned(c))
            .ToList();
    }

    /// <summary>Not yet expired by more than the prune margin: the same rule as <see cref="Rotation.AuthorityRotation{T}.Prune"/>.</summary>
    private bool Live(DateTimeOffset notAfter, DateTimeOffset now) => notAfter + pruneMargin >= now;

    /// <summary>
    /// The bundle certificates for one authority: itself when self-signed; with an upstream CA the root its recorded chain
    /// ends in (journals record the upstream's certificates with each authority, so a renewed upstream root is published
    /// alongside the old one until the old one's authorities are pruned). None when the recorded chain does not link up.
    /// </summary>
    private IEnumerable<X509Certificate2> TrustAnchorsOf(X509AuthorityRecord a)
    {
        var chain = CaCertificates.LoadAll(a.ChainDerBase64);
        if (CaCertificates.IsSelfSigned(chain[0]))
        {
            return [chain[0]];
        }
        if (chain.Count > 1)
        {
            return CaCertificates.LinkUp(chain) ? [chain[^1]] : [];
        }
        // Journals from before roots were recorded with each authority: the configured upstream's root.
        return UpstreamRoots.Where(CaCertificates.IsSelfSigned);
    }

    private bool SameKeys(string storedJson, TrustBundle candidate)
    {
        var stored = TrustBundle.ParseSpiffeJson(td, storedJson);
        return stored.X509Authorities.Select(c => c.Thumbprint).Order().SequenceEqual(candidate.X509Authorities.Select(c => c.Thumbprint).Order())
            && stored.JwtAuthorities.Keys.Order().SequenceEqual(candidate.JwtAuthorities.Keys.Order());
    }
}
