using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>The outcome of X.509-SVID validation: the ID when valid, otherwise a one-line reason.</summary>
public sealed record X509SvidValidation(bool IsValid, SpiffeId? Id, string? Error)
{
    internal static X509SvidValidation Fail(string error) => new(false, null, error);
}

/// <summary>
/// Validates X.509-SVIDs (X509-SVID.md §5): the leaf and signing-certificate rules of §3–§4, then RFC 5280 path validation
/// to the X.509 authorities of the ID's trust domain.
/// </summary>
public static class X509SvidValidator
{
    private const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuth = "1.3.6.1.5.5.7.3.2";

    /// <summary>Longest chain (leaf included) a validator will look at.</summary>
    public const int MaxChainLength = 16;

    /// <summary>Full validation of a chain (leaf first, then intermediates) at <paramref name="now"/>.</summary>
    public static X509SvidValidation Validate(IReadOnlyList<X509Certificate2> chain, IBundleSource bundles, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(bundles);
        var structure = ValidateStructure(chain);
        if (!structure.IsValid)
        {
            return structure;
        }
        var id = structure.Id!;
        var leaf = chain[0];
        var bundle = bundles.GetBundle(id.TrustDomain);
        if (bundle is null)
        {
            return X509SvidValidation.Fail($"no trust bundle for trust domain '{id.TrustDomain}': add or federate that trust domain's bundle");
        }
        if (bundle.X509Authorities.Count == 0)
        {
            return X509SvidValidation.Fail($"the trust bundle for '{id.TrustDomain}' has no X.509 authorities: nothing from that trust domain is trusted");
        }
        for (var i = 0; i < chain.Count; i++)
        {
            var c = chain[i];
            if (now < new DateTimeOffset(c.NotBefore.ToUniversalTime()))
            {
                return X509SvidValidation.Fail($"{Which(i)} is not valid before {c.NotBefore.ToUniversalTime():O}: check the clocks");
            }
            if (now > new DateTimeOffset(c.NotAfter.ToUniversalTime()))
            {
                return X509SvidValidation.Fail($"{Which(i)} expired at {c.NotAfter.ToUniversalTime():O}: fetch a fresh SVID");
            }
        }

        using var x509Chain = new X509Chain();
        var policy = x509Chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = now.UtcDateTime;
        policy.VerificationTimeIgnored = false;
        foreach (var root in bundle.X509Authorities)
        {
            policy.CustomTrustStore.Add(root);
        }
        for (var i = 1; i < chain.Count; i++)
        {
            policy.ExtraStore.Add(chain[i]);
        }
        bool built;
        try
        {
            built = x509Chain.Build(leaf);
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            return X509SvidValidation.Fail("certificate chain could not be built: the chain is malformed");
        }
        if (!built)
        {
            var status = x509Chain.ChainStatus.Select(s => s.Status).Where(s => s != X509ChainStatusFlags.NoError).Distinct().ToList();
            var reason = status.Count == 0 ? "unknown reason" : string.Join(", ", status);
            return X509SvidValidation.Fail($"certificate chain does not verify to the '{id.TrustDomain}' trust bundle ({reason}): the SVID was not issued by that trust domain's CA");
        }
        // Signing certificates the path actually uses (excluding the leaf and the trust anchor) must be proper CAs.
        for (var i = 1; i < x509Chain.ChainElements.Count - 1; i++)
        {
            if (CheckSigningCert(x509Chain.ChainElements[i].Certificate, i) is { } err)
            {
                return X509SvidValidation.Fail(err);
            }
        }
        return structure;
    }

    /// <summary>
    /// Structure rules for a leaf only (no chain, no time): exactly one URI SAN that is a SPIFFE ID with a path, cA=false,
    /// KeyUsage present and critical with digitalSignature and without keyCertSign/cRLSign, EKU (if present) with serverAuth and clientAuth.
    /// </summary>
    public static X509SvidValidation ValidateLeaf(X509Certificate2 leaf)
    {
        ArgumentNullException.ThrowIfNull(leaf);
        try
        {
            return ValidateLeafCore(leaf);
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            return X509SvidValidation.Fail("leaf certificate has a malformed extension: reissue the certificate");
        }
    }

    private static X509SvidValidation ValidateLeafCore(X509Certificate2 leaf)
    {
        if (DuplicateExtension(leaf) is { } dup)
        {
            return X509SvidValidation.Fail($"leaf certificate has extension {dup} more than once (RFC 5280 §4.2): reissue the certificate");
        }
        var id = IdOf(leaf, out var error);
        if (id is null)
        {
            return X509SvidValidation.Fail(error!);
        }
        if (id.IsRoot)
        {
            return X509SvidValidation.Fail($"leaf certificate ID '{id}' has no path: a leaf SVID must name a workload, not the trust domain (X509-SVID §3.1)");
        }
        var bc = leaf.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        if (bc is { CertificateAuthority: true })
        {
            return X509SvidValidation.Fail("leaf certificate must not have the CA flag set to true (X509-SVID §4.1): issue the leaf with cA=false");
        }
        var ku = leaf.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (ku is null)
        {
            return X509SvidValidation.Fail("leaf certificate has no KeyUsage extension (X509-SVID §4.3): issue it with a critical KeyUsage of digitalSignature");
        }
        if (!ku.Critical)
        {
            return X509SvidValidation.Fail("leaf certificate KeyUsage extension is not critical (X509-SVID §4.3): mark KeyUsage critical");
        }
        if ((ku.KeyUsages & X509KeyUsageFlags.DigitalSignature) == 0)
        {
            return X509SvidValidation.Fail("leaf certificate must have the digitalSignature key usage (X509-SVID §4.3)");
        }
        if ((ku.KeyUsages & X509KeyUsageFlags.KeyCertSign) != 0)
        {
            return X509SvidValidation.Fail("leaf certificate must not have the keyCertSign key usage (X509-SVID §4.3): a leaf SVID cannot sign certificates");
        }
        if ((ku.KeyUsages & X509KeyUsageFlags.CrlSign) != 0)
        {
            return X509SvidValidation.Fail("leaf certificate must not have the cRLSign key usage (X509-SVID §4.3): a leaf SVID cannot sign CRLs");
        }
        var eku = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault();
        if (eku is not null)
        {
            var oids = eku.EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value).ToHashSet();
            if (!oids.Contains(ServerAuth) || !oids.Contains(ClientAuth))
            {
                return X509SvidValidation.Fail("leaf certificate extended key usage must include both serverAuth and clientAuth (X509-SVID §4.4)");
            }
        }
        return new X509SvidValidation(true, id, null);
    }

    /// <summary>Structure rules for a presented chain: the leaf rules, then every further certificate must be a signing certificate.</summary>
    public static X509SvidValidation ValidateStructure(IReadOnlyList<X509Certificate2> chain)
    {
        if (chain is null || chain.Count == 0)
        {
            return X509SvidValidation.Fail("the SVID chain is empty: present the leaf certificate first");
        }
        if (chain.Count > MaxChainLength)
        {
            return X509SvidValidation.Fail($"the SVID chain has {chain.Count} certificates, more than {MaxChainLength}: refused");
        }
        var leaf = ValidateLeaf(chain[0]);
        if (!leaf.IsValid)
        {
            return leaf;
        }
        for (var i = 1; i < chain.Count; i++)
        {
            if (CheckSigningCert(chain[i], i) is { } err)
            {
                return X509SvidValidation.Fail(err);
            }
        }
        return leaf;
    }

    private static string? CheckSigningCert(X509Certificate2 cert, int index)
    {
        try
        {
            return CheckSigningCertCore(cert, index);
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            return $"{Which(index)} has a malformed extension: the chain is corrupted";
        }
    }

    private static string? DuplicateExtension(X509Certificate2 cert)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var ext in cert.Extensions)
        {
            if (ext.Oid?.Value is { } oid && !seen.Add(oid))
            {
                return oid;
            }
        }
        return null;
    }

    private static string? CheckSigningCertCore(X509Certificate2 cert, int index)
    {
        if (DuplicateExtension(cert) is { } dup)
        {
            return $"{Which(index)} has extension {dup} more than once (RFC 5280 §4.2)";
        }
        var bc = cert.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        if (bc is not { CertificateAuthority: true })
        {
            return $"{Which(index)} is a signing certificate but does not have the CA flag set to true (X509-SVID §4.1)";
        }
        var ku = cert.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (ku is null || (ku.KeyUsages & X509KeyUsageFlags.KeyCertSign) == 0)
        {
            return $"{Which(index)} is a signing certificate but does not have the keyCertSign key usage (X509-SVID §4.3)";
        }
        var uris = SanExtension.ReadUris(cert, out var err);
        if (uris is null)
        {
            return $"{Which(index)}: {err}";
        }
        foreach (var u in uris.Where(u => u.StartsWith(SpiffeIdRules.Scheme, StringComparison.OrdinalIgnoreCase)))
        {
            if (!SpiffeId.TryParse(u, out var caId, out _) || !caId.IsRoot)
            {
                return $"{Which(index)} is a signing certificate whose SPIFFE ID has a path or is invalid (X509-SVID §3.2): a CA's ID must be spiffe://<trust-domain>";
            }
        }
        return null;
    }

    /// <summary>The SPIFFE ID of a certificate: its single URI SAN, which must parse as a SPIFFE ID.</summary>
    internal static SpiffeId? IdOf(X509Certificate2 cert, out string? error)
    {
        var uris = SanExtension.ReadUris(cert, out error);
        if (uris is null)
        {
            return null;
        }
        if (uris.Count == 0)
        {
            error = "certificate has no URI SAN: an X.509-SVID carries its SPIFFE ID as exactly one URI SAN (X509-SVID §2)";
            return null;
        }
        if (uris.Count > 1)
        {
            error = $"certificate has {uris.Count} URI SANs: an X.509-SVID must carry exactly one, its SPIFFE ID (X509-SVID §2)";
            return null;
        }
        if (!SpiffeId.TryParse(uris[0], out var id, out var idError))
        {
            error = $"certificate URI SAN is not a valid SPIFFE ID: {idError}";
            return null;
        }
        return id;
    }

    private static string Which(int index) => index == 0 ? "leaf certificate" : $"chain certificate {index}";
}
