using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Keys;

namespace Writ.Server.Ca;

/// <summary>Certificate and key helpers the CA's parts share.</summary>
internal static class CaCertificates
{
    public static X509Certificate2 Load(string derBase64) => X509CertificateLoader.LoadCertificate(Convert.FromBase64String(derBase64));

    public static List<X509Certificate2> LoadAll(IEnumerable<string> derBase64) => derBase64.Select(Load).ToList();

    public static bool IsSelfSigned(X509Certificate2 c) => c.SubjectName.RawData.AsSpan().SequenceEqual(c.IssuerName.RawData);

    public static DateTimeOffset NotAfterOf(X509Certificate2 c) => new(c.NotAfter.ToUniversalTime());

    public static byte[] SpkiOf(string derBase64)
    {
        using var c = Load(derBase64);
        return c.PublicKey.ExportSubjectPublicKeyInfo();
    }

    public static bool SameSpki(AsymmetricAlgorithm key, byte[] spki) => key.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(spki);

    /// <summary>certs[i] is signed by certs[i + 1] for every i, ending in a self-signed root.</summary>
    public static bool LinkUp(IReadOnlyList<X509Certificate2> certs)
    {
        if (!IsSelfSigned(certs[^1]))
        {
            return false;
        }
        if (certs.Count == 1)
        {
            return true;
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid;
        chain.ChainPolicy.CustomTrustStore.Add(certs[^1]);
        foreach (var c in certs.Skip(1).SkipLast(1))
        {
            chain.ChainPolicy.ExtraStore.Add(c);
        }
        return chain.Build(certs[0])
            && chain.ChainElements.Select(e => e.Certificate.Thumbprint).SequenceEqual(certs.Select(c => c.Thumbprint));
    }

    /// <summary>An EC or RSA public key from its SubjectPublicKeyInfo (base64).</summary>
    public static AsymmetricAlgorithm ImportPublic(string spkiBase64)
    {
        var spki = Convert.FromBase64String(spkiBase64);
        return KeyTypes.ImportEcOrRsa(k => k.ImportSubjectPublicKeyInfo(spki, out _))
            ?? throw new CryptographicException("the public key is neither EC nor RSA");
    }

    public static string Base64Url(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
