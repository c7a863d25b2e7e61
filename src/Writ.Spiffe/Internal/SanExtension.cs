using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Writ.Spiffe.Internal;

/// <summary>Writes and reads the subjectAltName extension (RFC 5280 §4.2.1.6) with URIs kept byte-exact.</summary>
internal static class SanExtension
{
    public const string Oid = "2.5.29.17";
    private static readonly Asn1Tag DnsTag = new(TagClass.ContextSpecific, 2);
    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    public static X509Extension Build(string uri, IReadOnlyList<string>? dnsNames, bool critical)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            w.WriteCharacterString(UniversalTagNumber.IA5String, uri, UriTag);
            foreach (var dns in dnsNames ?? [])
            {
                w.WriteCharacterString(UniversalTagNumber.IA5String, dns, DnsTag);
            }
        }
        return new X509Extension(Oid, w.Encode(), critical);
    }

    /// <summary>The URI names in a certificate's SAN extension; null with an error when the extension is malformed.</summary>
    public static List<string>? ReadUris(X509Certificate2 cert, out string? error)
    {
        error = null;
        var uris = new List<string>();
        var found = 0;
        foreach (var ext in cert.Extensions)
        {
            if (ext.Oid?.Value != Oid)
            {
                continue;
            }
            if (++found > 1)
            {
                error = "certificate has more than one subjectAltName extension: issue it with a single SAN extension";
                return null;
            }
            try
            {
                var r = new AsnReader(ext.RawData, AsnEncodingRules.DER);
                var seq = r.ReadSequence();
                r.ThrowIfNotEmpty();
                while (seq.HasData)
                {
                    var tag = seq.PeekTag();
                    if (tag.HasSameClassAndValue(UriTag))
                    {
                        uris.Add(seq.ReadCharacterString(UniversalTagNumber.IA5String, UriTag));
                    }
                    else
                    {
                        seq.ReadEncodedValue();
                    }
                }
            }
            catch (Exception e) when (e is AsnContentException or CryptographicException or ArgumentException)
            {
                error = "certificate's subjectAltName extension is malformed: reissue the certificate";
                return null;
            }
        }
        return uris;
    }
}
