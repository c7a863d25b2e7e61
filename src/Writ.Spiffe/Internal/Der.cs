using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace Writ.Spiffe.Internal;

/// <summary>Concatenated DER certificates (the Workload API's encoding of chains and bundles).</summary>
internal static class Der
{
    public const int MaxCertificates = 64;

    public static List<X509Certificate2>? SplitCertificates(ReadOnlySpan<byte> der, out string? error)
    {
        error = null;
        var certs = new List<X509Certificate2>();
        var rest = der;
        while (!rest.IsEmpty)
        {
            if (certs.Count == MaxCertificates)
            {
                error = $"more than {MaxCertificates} certificates in the DER data: refused";
                return null;
            }
            int length;
            try
            {
                AsnDecoder.ReadEncodedValue(rest, AsnEncodingRules.DER, out _, out _, out length);
            }
            catch (AsnContentException)
            {
                error = $"DER data is malformed at certificate {certs.Count}: send concatenated DER certificates";
                return null;
            }
            var cert = Pem.TryLoadCertificate(rest[..length].ToArray(), out error);
            if (cert is null)
            {
                error = $"certificate {certs.Count}: {error}";
                return null;
            }
            certs.Add(cert);
            rest = rest[length..];
        }
        return certs;
    }
}
