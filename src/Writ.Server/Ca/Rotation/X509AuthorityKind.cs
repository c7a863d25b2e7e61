using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Writ.Server.Ca.Upstream;
using Writ.Server.Keys;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.Server.Ca.Rotation;

/// <summary>X.509 CA authorities: a key, and a self-signed root or an intermediate the upstream authority signs.</summary>
internal sealed class X509AuthorityKind(TrustDomain td, CaOptions options, IKeyManager keys, IUpstreamAuthority? upstream, ILogger log)
    : IAuthorityKind<X509AuthorityRecord>
{
    private string? _upstreamExpiryWarnedFor;

    public async Task<X509AuthorityRecord> CreateAsync(AuthorityStatus status, DateTimeOffset now, CancellationToken ct)
    {
        var keyId = "x509-ca-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var notBefore = now - TimeSpan.FromSeconds(10);
        var notAfter = now + options.CaTtl;
        // Check the upstream before a key is generated: a bad upstream must leave no orphan key behind.
        if (upstream is not null)
        {
            await upstream.VerifyAsync(now, ct).ConfigureAwait(false);
        }
        var key = await keys.GenerateAsync(keyId, options.KeyType, ct).ConfigureAwait(false);
        IReadOnlyList<X509Certificate2> chain;
        try
        {
            chain = upstream is null
                ? [X509Authorities.CreateSelfSignedCa(td, key, notBefore, notAfter)]
                : await upstream.MintIntermediateAsync(td, new PublicKey(key), notBefore, notAfter, ct).ConfigureAwait(false);
        }
        catch
        {
            await CaKeys.DeleteAsync(keys, keyId, log, ct).ConfigureAwait(false);
            throw;
        }
        return new X509AuthorityRecord(keyId, chain.Select(c => Convert.ToBase64String(c.RawData)).ToList(), status,
            new DateTimeOffset(chain[0].NotBefore.ToUniversalTime()), CaCertificates.NotAfterOf(chain[0]));
    }

    public async Task<bool> MayPrepareSuccessorAsync(X509AuthorityRecord active, CancellationToken ct)
    {
        if (upstream is null)
        {
            return true;
        }
        var upstreamNotAfter = CaCertificates.NotAfterOf((await upstream.ChainAsync(ct).ConfigureAwait(false))[0]);
        if (upstreamNotAfter > active.NotAfter)
        {
            return true;
        }
        // A successor would be capped at the same instant: nothing to gain, and repeating it every pass would fill the
        // bundle. Say it once per authority; when the upstream is renewed the next pass prepares.
        if (_upstreamExpiryWarnedFor != active.KeyId)
        {
            _upstreamExpiryWarnedFor = active.KeyId;
            ServerLog.UpstreamCaExpiring(log, upstream.Name, upstreamNotAfter);
        }
        return false;
    }

    public void Created(X509AuthorityRecord authority) => ServerLog.X509AuthorityCreatedActive(log, authority.KeyId, authority.NotAfter);

    public void Prepared(X509AuthorityRecord authority, DateTimeOffset activatesAt) => ServerLog.X509AuthorityPrepared(log, authority.KeyId, activatesAt);

    public void Activated(X509AuthorityRecord authority) => ServerLog.X509AuthorityActivated(log, authority.KeyId, authority.NotAfter);

    public void Pruned(X509AuthorityRecord authority) => ServerLog.X509AuthorityPruned(log, authority.KeyId, authority.NotAfter);
}
