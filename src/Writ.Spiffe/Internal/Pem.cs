using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Writ.Spiffe.Internal;

/// <summary>PEM reading that reports what was wrong instead of throwing.</summary>
internal static class Pem
{
    public readonly record struct Block(string Label, byte[] Data, string Text);

    /// <summary>All PEM blocks in the text; null with an error if a block's base64 is broken.</summary>
    public static List<Block>? ReadBlocks(string text, out string? error)
    {
        error = null;
        var blocks = new List<Block>();
        var rest = text.AsSpan();
        while (PemEncoding.TryFind(rest, out var fields))
        {
            var label = rest[fields.Label].ToString();
            var data = new byte[fields.DecodedDataLength];
            if (!Convert.TryFromBase64Chars(rest[fields.Base64Data], data, out var written) || written != data.Length)
            {
                error = $"PEM block '{label}' has invalid base64: the file is corrupted";
                return null;
            }
            blocks.Add(new Block(label, data, rest[fields.Location].ToString()));
            rest = rest[fields.Location.End..];
        }
        return blocks;
    }

    public static X509Certificate2? TryLoadCertificate(byte[] der, out string? error)
    {
        error = null;
        try
        {
            var cert = X509CertificateLoader.LoadCertificate(der);
            if (cert.RawData.Length != der.Length)
            {
                error = "certificate has trailing data after its DER encoding: the data is corrupted";
                return null;
            }
            return cert;
        }
        catch (CryptographicException)
        {
            error = "certificate cannot be parsed (malformed DER): the data is corrupted or is not a certificate";
            return null;
        }
    }

    public static string Certificates(IEnumerable<X509Certificate2> certs)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var c in certs)
        {
            sb.Append(PemEncoding.WriteString("CERTIFICATE", c.RawData)).Append('\n');
        }
        return sb.ToString();
    }
}
