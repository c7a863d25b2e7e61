using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Ca;
using Writ.Server.Registration;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.Server.Issuance;

/// <summary>
/// Signs SVIDs for registration entries: checks the CSR (proof of possession, no foreign identity requested),
/// picks the TTL (entry, else server default; capped by max_ttl and by the CA's own lifetime) and signs.
/// </summary>
public sealed class Issuer(WritCa ca, TimeSpan defaultX509Ttl, TimeSpan defaultJwtTtl, TimeSpan maxTtl)
{
    /// <summary>The entry's X.509 TTL (else the default), capped by max_ttl and by the entry's own expiry.</summary>
    public TimeSpan X509Ttl(RegistrationEntry e, DateTimeOffset now) =>
        CapAtEntry(Cap(e.X509TtlSeconds > 0 ? TimeSpan.FromSeconds(e.X509TtlSeconds) : defaultX509Ttl), e, now);

    public TimeSpan JwtTtl(RegistrationEntry e, int requestedSeconds, DateTimeOffset now)
    {
        var ttl = e.JwtTtlSeconds > 0 ? TimeSpan.FromSeconds(e.JwtTtlSeconds) : defaultJwtTtl;
        if (requestedSeconds > 0 && requestedSeconds < ttl.TotalSeconds)
        {
            ttl = TimeSpan.FromSeconds(requestedSeconds);   // a caller may ask for less, never more
        }
        return CapAtEntry(Cap(ttl), e, now);
    }

    /// <summary>An SVID never outlives the registration entry it was issued for.</summary>
    private static TimeSpan CapAtEntry(TimeSpan ttl, RegistrationEntry e, DateTimeOffset now) =>
        e.ExpiresAt is { } exp && exp - now < ttl ? (exp > now ? exp - now : TimeSpan.Zero) : ttl;

    public TimeSpan Cap(TimeSpan ttl) => ttl > maxTtl ? maxTtl : ttl;

    /// <summary>Verifies the CSR and signs an X.509-SVID for <paramref name="id"/>. Throws <see cref="ValidationException"/> for a bad CSR.</summary>
    public IReadOnlyList<X509Certificate2> SignX509(SpiffeId id, ReadOnlySpan<byte> csrDer, TimeSpan ttl, IReadOnlyList<string> dnsNames)
    {
        var key = VerifyCsr(csrDer, id);
        return ca.SignX509Svid(id, key, ttl, dnsNames);
    }

    /// <summary>As <see cref="SignX509"/>, returning DER for the wire (the agent API's hot path).</summary>
    public (SignedX509Leaf Leaf, IReadOnlyList<byte[]> ChainAboveLeaf) SignX509Der(SpiffeId id, ReadOnlySpan<byte> csrDer, TimeSpan ttl, IReadOnlyList<string> dnsNames)
    {
        var key = VerifyCsr(csrDer, id);
        return ca.SignX509SvidDer(id, key, ttl, dnsNames);
    }

    /// <summary>
    /// The CSR's key, after checking its signature and that it asks for no identity other than <paramref name="expected"/>
    /// (a CSR naming another SPIFFE ID is refused rather than silently ignored).
    /// </summary>
    public static PublicKey VerifyCsr(ReadOnlySpan<byte> csrDer, SpiffeId expected)
    {
        if (csrDer.Length == 0)
        {
            throw new ValidationException("the CSR is empty: send a PKCS#10 request (DER) signed by the SVID's key");
        }
        if (!Csr.TryVerify(csrDer, out var key, out var error))
        {
            throw new ValidationException($"the CSR was refused: {error}");
        }
        foreach (var uri in RequestedUris(csrDer))
        {
            if (!string.Equals(uri, expected.ToString(), StringComparison.Ordinal))
            {
                throw new ValidationException($"the CSR asks for URI SAN '{uri}' but the entry's SPIFFE ID is '{expected}'; leave the SAN out or use the entry's ID");
            }
        }
        return key;
    }

    private static List<string> RequestedUris(ReadOnlySpan<byte> csrDer)
    {
        var uris = new List<string>();
        try
        {
            var req = CertificateRequest.LoadSigningRequest(csrDer.ToArray(), HashAlgorithmName.SHA256, out _,
                CertificateRequestLoadOptions.SkipSignatureValidation | CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
            foreach (var ext in req.CertificateExtensions)
            {
                if (ext.Oid?.Value != "2.5.29.17")
                {
                    continue;
                }
                var reader = new AsnReader(ext.RawData, AsnEncodingRules.DER).ReadSequence();
                while (reader.HasData)
                {
                    var tag = reader.PeekTag();
                    if (tag.HasSameClassAndValue(new Asn1Tag(TagClass.ContextSpecific, 6)))
                    {
                        uris.Add(reader.ReadCharacterString(UniversalTagNumber.IA5String, new Asn1Tag(TagClass.ContextSpecific, 6)));
                    }
                    else
                    {
                        reader.ReadEncodedValue();
                    }
                }
            }
        }
        catch (Exception e) when (e is CryptographicException or AsnContentException or ArgumentException)
        {
            throw new ValidationException("the CSR's extensions could not be read: send a plain PKCS#10 request");
        }
        return uris;
    }
}
