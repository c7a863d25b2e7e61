using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using NSec.Cryptography;

namespace Writ.Agent.WorkloadAttestation.ImageSignatures;

/// <summary>
/// The image-signing public keys the identity team registered: every <c>&lt;name&gt;.pub</c> in <c>k8s.image_keys_dir</c>,
/// a PEM <c>PUBLIC KEY</c> (SubjectPublicKeyInfo, what <c>cosign generate-key-pair</c> writes) of an ECDSA P-256 or
/// Ed25519 key. ECDSA signatures are ASN.1 DER over the SHA-256 of the payload; Ed25519 signatures are over the payload
/// itself (what cosign makes with each kind of key). Ed25519 comes from NSec (libsodium): .NET 10 has no Ed25519 of its own.
/// A file that is not such a key, or whose name cannot be a selector value, is skipped and reported, never fatal.
/// </summary>
internal sealed partial class RegisteredImageKeys : IDisposable
{
    private const string EcPublicKeyOid = "1.2.840.10045.2.1";
    private const string P256Oid = "1.2.840.10045.3.1.7";
    private const string Ed25519Oid = "1.3.101.112";
    private const int MaxKeyFileBytes = 64 * 1024;

    private readonly List<(string Name, ECDsa? Ec, NSec.Cryptography.PublicKey? Ed)> _keys;

    private RegisteredImageKeys(List<(string, ECDsa?, NSec.Cryptography.PublicKey?)> keys) => _keys = keys;

    /// <summary>The key names, sorted.</summary>
    public IReadOnlyList<string> Names => [.. _keys.Select(k => k.Name)];

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    /// <summary>Loads the keys of <paramref name="dir"/>; <paramref name="skipped"/> gets (file, why) for each file left out.</summary>
    public static RegisteredImageKeys Load(string dir, List<(string File, string Reason)> skipped)
    {
        var keys = new List<(string, ECDsa?, NSec.Cryptography.PublicKey?)>();
        string[] files;
        try
        {
            files = Directory.GetFiles(dir, "*.pub");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            skipped.Add((dir, $"cannot list the directory: {e.Message}"));
            return new RegisteredImageKeys(keys);
        }
        Array.Sort(files, StringComparer.Ordinal);
        foreach (var file in files)
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (!NamePattern().IsMatch(name))
            {
                skipped.Add((file, "the key name (the file name without .pub) must be 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit"));
                continue;
            }
            try
            {
                var info = new FileInfo(file);
                if (info.Length > MaxKeyFileBytes)
                {
                    skipped.Add((file, $"larger than {MaxKeyFileBytes} bytes: not a public key"));
                    continue;
                }
                var (ec, ed, error) = Parse(File.ReadAllText(file));
                if (error is not null)
                    skipped.Add((file, error));
                else
                    keys.Add((name, ec, ed));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                skipped.Add((file, $"cannot read it: {e.Message}"));
            }
        }
        return new RegisteredImageKeys(keys);
    }

    private static (ECDsa? Ec, NSec.Cryptography.PublicKey? Ed, string? Error) Parse(string pem)
    {
        if (!PemEncoding.TryFind(pem, out var fields) || pem[fields.Label] != "PUBLIC KEY")
            return (null, null, "not a PEM PUBLIC KEY (SubjectPublicKeyInfo); write it with cosign generate-key-pair or openssl pkey -pubout");
        var der = new byte[fields.DecodedDataLength];
        if (!Convert.TryFromBase64Chars(pem.AsSpan()[fields.Base64Data], der, out var n) || n != der.Length)
            return (null, null, "the PEM body is not valid base64");
        string algorithm;
        try
        {
            var spki = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
            var algorithmId = spki.ReadSequence();
            algorithm = algorithmId.ReadObjectIdentifier();
        }
        catch (AsnContentException)
        {
            return (null, null, "the PEM body is not a DER SubjectPublicKeyInfo");
        }
        switch (algorithm)
        {
            case EcPublicKeyOid:
                var ec = ECDsa.Create();
                try
                {
                    ec.ImportSubjectPublicKeyInfo(der, out var read);
                    if (read != der.Length)
                        throw new CryptographicException("trailing data");
                    if (ec.ExportParameters(false).Curve.Oid?.Value != P256Oid)
                    {
                        ec.Dispose();
                        return (null, null, "an ECDSA key on a curve other than P-256; register a P-256 or Ed25519 key");
                    }
                    return (ec, null, null);
                }
                catch (CryptographicException)
                {
                    ec.Dispose();
                    return (null, null, "an invalid ECDSA public key");
                }
            case Ed25519Oid:
                try
                {
                    return NSec.Cryptography.PublicKey.TryImport(SignatureAlgorithm.Ed25519, der, KeyBlobFormat.PkixPublicKey, out var ed) && ed is not null
                        ? (null, ed, null)
                        : (null, null, "an invalid Ed25519 public key");
                }
                catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or BadImageFormatException or InvalidOperationException)
                {
                    // libsodium is a native library of the NSec package: a platform without it cannot check Ed25519.
                    return (null, null, $"Ed25519 is not available on this platform ({e.GetType().Name}); register an ECDSA P-256 key");
                }
            default:
                return (null, null, $"a key of algorithm {algorithm}; register an ECDSA P-256 or Ed25519 key");
        }
    }

    /// <summary>The names of the keys under which <paramref name="signature"/> is a valid signature of <paramref name="payload"/>.</summary>
    public List<string> Verify(ReadOnlySpan<byte> payload, ReadOnlySpan<byte> signature)
    {
        var names = new List<string>();
        foreach (var (name, ec, ed) in _keys)
        {
            bool ok;
            if (ec is not null)
            {
                // An ECDsa instance makes no thread-safety promise; lookups of different images may run at once.
                lock (ec)
                    ok = ec.VerifyData(payload, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
            }
            else
            {
                ok = ed is not null && SignatureAlgorithm.Ed25519.Verify(ed, payload, signature);
            }
            if (ok)
                names.Add(name);
        }
        return names;
    }

    public void Dispose()
    {
        foreach (var (_, ec, _) in _keys)
            ec?.Dispose();
        _keys.Clear();
    }
}
