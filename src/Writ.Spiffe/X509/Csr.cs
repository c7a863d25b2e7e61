using System.Diagnostics.CodeAnalysis;
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>PKCS#10 certificate signing requests: proof that the requester holds the private key.</summary>
public static class Csr
{
    /// <summary>Creates a DER PKCS#10 request with an empty subject, signed by <paramref name="key"/> (ECDsa or RSA).</summary>
    public static byte[] Create(AsymmetricAlgorithm key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var subject = new X500DistinguishedName("");
        var req = key switch
        {
            ECDsa ec => new CertificateRequest(subject, ec, KeyAlgorithms.HashFor(ec)),
            RSA rsa => new CertificateRequest(subject, rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            _ => throw new ArgumentException($"key type {key.GetType().Name} is not supported: use ECDsa or RSA", nameof(key)),
        };
        return req.CreateSigningRequest();
    }

    /// <summary>
    /// Verifies a DER PKCS#10 request: its signature must verify with its own key (proof of possession) and the key must be
    /// EC P-256/P-384 or RSA ≥ 2048 bits. Never throws on bad input.
    /// </summary>
    public static bool TryVerify(ReadOnlySpan<byte> der, [NotNullWhen(true)] out PublicKey? subjectKey, [NotNullWhen(false)] out string? error)
    {
        subjectKey = null;
        if (der.IsEmpty)
        {
            error = "CSR is empty: send a DER PKCS#10 certificate signing request";
            return false;
        }
        if (der.Length > 64 * 1024)
        {
            error = "CSR is larger than 64 KiB: send a plain DER PKCS#10 request";
            return false;
        }
        switch (CsrFastPath.TryVerify(der, out subjectKey))
        {
            case CsrFastPath.Result.Valid when subjectKey is not null:
                error = null;
                return true;
            case CsrFastPath.Result.BadSignature:
                error = "CSR is not a valid DER PKCS#10 request or its signature does not verify: create it with the key being certified";
                return false;
            case CsrFastPath.Result.BadKey:
                error = "CSR public key cannot be read: create the request with a supported EC or RSA key";
                return false;
        }
        CertificateRequest req;
        try
        {
            req = CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, out var consumed,
                CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
            if (consumed != der.Length)
            {
                error = "CSR has trailing data after its DER encoding: send exactly one DER PKCS#10 request";
                return false;
            }
        }
        catch (Exception e) when (e is CryptographicException or AsnContentException or ArgumentException or FormatException or NotSupportedException)
        {
            error = "CSR is not a valid DER PKCS#10 request or its signature does not verify: create it with the key being certified";
            return false;
        }
        var pk = req.PublicKey;
        try
        {
            switch (pk.Oid.Value)
            {
                case "1.2.840.10045.2.1":
                    using (var ec = pk.GetECDsaPublicKey())
                    {
                        var curve = ec?.ExportParameters(false).Curve.Oid.Value;
                        if (curve is not (KeyAlgorithms.OidP256 or KeyAlgorithms.OidP384))
                        {
                            error = "CSR key is an EC key on an unsupported curve: use P-256 or P-384";
                            return false;
                        }
                    }
                    break;
                case "1.2.840.113549.1.1.1":
                    using (var rsa = pk.GetRSAPublicKey())
                    {
                        if (rsa is null || rsa.KeySize < 2048)
                        {
                            error = "CSR key is RSA shorter than 2048 bits: use RSA-2048 or larger, or EC P-256";
                            return false;
                        }
                    }
                    break;
                default:
                    error = "CSR key type is not supported: use EC P-256/P-384 or RSA ≥ 2048";
                    return false;
            }
        }
        catch (CryptographicException)
        {
            error = "CSR public key cannot be read: create the request with a supported EC or RSA key";
            return false;
        }
        subjectKey = pk;
        error = null;
        return true;
    }
}
