using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Ca.Signing;

namespace Writ.Server.Revocation;

/// <summary>One revoked X.509 serial as it goes into the CRL.</summary>
public sealed record CrlEntry(string SerialHex, DateTimeOffset RevokedAt);

/// <summary>The CRL signed by one (retired) X.509 authority.</summary>
public sealed record AuthorityCrl(string AuthorityKeyId, byte[] Der, int Count);

/// <summary>
/// Builds an X.509 v2 CRL (RFC 5280 §5) signed by a CA certificate's key: issuer = the CA's subject, Authority Key
/// Identifier = the CA's Subject Key Identifier, CRL number, thisUpdate/nextUpdate, one entry per revoked serial.
/// </summary>
public static class CrlBuilder
{
    public static byte[] Build(X509Certificate2 issuer, AsymmetricAlgorithm key, IEnumerable<CrlEntry> entries, BigInteger crlNumber,
        DateTimeOffset thisUpdate, DateTimeOffset nextUpdate)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(entries);
        var builder = new CertificateRevocationListBuilder();
        foreach (var e in entries)
        {
            builder.AddEntry(Convert.FromHexString(e.SerialHex), e.RevokedAt);
        }
        var (generator, hash) = key switch
        {
            ECDsa ec => (X509SignatureGenerator.CreateForECDsa(ec), ec.KeySize switch { > 384 => HashAlgorithmName.SHA512, > 256 => HashAlgorithmName.SHA384, _ => HashAlgorithmName.SHA256 }),
            RSA rsa => (X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1), HashAlgorithmName.SHA256),
            _ => throw new ArgumentException($"the CA key type {key.GetType().Name} cannot sign a CRL: use an EC or RSA CA key", nameof(key)),
        };
        var ski = issuer.Extensions.OfType<X509SubjectKeyIdentifierExtension>().FirstOrDefault()
            ?? new X509SubjectKeyIdentifierExtension(issuer.PublicKey, false);
        var aki = X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(ski);
        return builder.Build(issuer.SubjectName, generator, crlNumber, nextUpdate, hash, aki, thisUpdate);
    }

    /// <summary>
    /// A CRL from every retired X.509 authority whose SVIDs may still be valid (after a rotation, SVIDs it signed live on
    /// until they expire, and a relying party checks them against a CRL from their own issuer). Each lists the revoked serials
    /// that can be its own: those of credentials expiring no later than the authority's SVIDs can (a leaf never outlives
    /// its authority). Serials are random, so a serial another authority issued revokes nothing here.
    /// </summary>
    internal static IReadOnlyList<AuthorityCrl> BuildRetired(IReadOnlyList<X509AuthorityKey> retired, IReadOnlyCollection<Storage.RevocationRecord> revoked,
        BigInteger crlNumber, DateTimeOffset thisUpdate, DateTimeOffset nextUpdate) =>
        [.. retired.Select(a =>
        {
            var entries = revoked.Where(r => r.SerialHex is not null && r.ExpiresAt <= a.SvidsValidUntil)
                .OrderBy(r => r.SerialHex, StringComparer.Ordinal).Select(r => new CrlEntry(r.SerialHex!, r.RevokedAt)).ToList();
            return new AuthorityCrl(a.KeyId, Build(a.Certificate, a.Key, entries, crlNumber, thisUpdate, nextUpdate), entries.Count);
        })];

    /// <summary>PEM ("X509 CRL") of a DER CRL, as openssl writes it.</summary>
    public static string ToPem(ReadOnlySpan<byte> der) => PemEncoding.WriteString("X509 CRL", der) + "\n";
}
