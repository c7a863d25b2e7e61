using System.Security.Cryptography.X509Certificates;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Server.Ca;

/// <summary>
/// The trust bundle made from the CA journal: every X.509 authority's trust anchor and every JWT authority's public key.
/// A bundle is stored with the next sequence number only when its keys differ from the stored one.
/// </summary>
internal sealed class BundlePublisher(TrustDomain td, IWritStore store, TimeSpan refreshHint, TimeProvider time)
{
    private TrustBundle? _bundle;
    private long _sequence;

    public TrustBundle? Current => _bundle;

    public long Sequence => Interlocked.Read(ref _sequence);

    /// <summary>The upstream's certificates, for journals from before the upstream roots were recorded with each authority.</summary>
    public IReadOnlyList<X509Certificate2> UpstreamRoots { get; set; } = [];

    public async Task LoadSequenceAsync(CancellationToken ct)
    {
        var stored = await store.Bundles.GetAsync(td.Name, ct).ConfigureAwait(false);
        Interlocked.Exchange(ref _sequence, stored?.Sequence ?? 0);
    }

    /// <summary>Publishes the journal's bundle when its keys differ from the stored one's, and returns it (null: unchanged).</summary>
    public async Task<TrustBundle?> PublishAsync(CaJournalDocument journal, CancellationToken ct)
    {
        var roots = journal.X509.SelectMany(TrustAnchorsOf).DistinctBy(c => c.Thumbprint).ToList();
        var jwtKeys = journal.Jwt.Select(a => new JwtAuthority(a.Kid, CaCertificates.ImportPublic(a.PublicKeySpkiBase64))).ToList();
        var candidate = new TrustBundle(td, roots, jwtKeys, _sequence, refreshHint);
        var storedBundle = await store.Bundles.GetAsync(td.Name, ct).ConfigureAwait(false);
        // Compare with what is published, not with whether this pass changed the journal: a restart that dropped
        // authorities (lost keys) must publish too, and a status change alone (prepared -> active) must not.
        if (storedBundle is not null && SameKeys(storedBundle.SpiffeBundleJson, candidate))
        {
            _bundle ??= TrustBundle.ParseSpiffeJson(td, storedBundle.SpiffeBundleJson);
            Interlocked.Exchange(ref _sequence, storedBundle.Sequence);
            return null;
        }
        var seq = (storedBundle?.Sequence ?? 0) + 1;
        candidate = new TrustBundle(td, roots, jwtKeys, seq, refreshHint);
        await store.Bundles.PutAsync(new StoredBundle(td.Name, candidate.ToSpiffeJson(), seq, time.GetUtcNow()), ct).ConfigureAwait(false);
        Interlocked.Exchange(ref _sequence, seq);
        _bundle = candidate;
        return candidate;
    }

    /// <summary>
    /// The bundle certificates for one authority: itself when self-signed; with an upstream CA the root its recorded chain
    /// ends in (journals record the upstream's certificates with each authority, so a renewed upstream root is published
    /// alongside the old one until the old one's authorities are pruned).
    /// </summary>
    private IEnumerable<X509Certificate2> TrustAnchorsOf(X509AuthorityRecord a)
    {
        var chain = CaCertificates.LoadAll(a.ChainDerBase64);
        if (CaCertificates.IsSelfSigned(chain[0]))
        {
            return [chain[0]];
        }
        // Journals from before roots were recorded with each authority: the configured upstream's root.
        return chain.Count > 1 ? [chain[^1]] : UpstreamRoots.Where(CaCertificates.IsSelfSigned);
    }

    private bool SameKeys(string storedJson, TrustBundle candidate)
    {
        var stored = TrustBundle.ParseSpiffeJson(td, storedJson);
        return stored.X509Authorities.Select(c => c.Thumbprint).Order().SequenceEqual(candidate.X509Authorities.Select(c => c.Thumbprint).Order())
            && stored.JwtAuthorities.Keys.Order().SequenceEqual(candidate.JwtAuthorities.Keys.Order());
    }
}
