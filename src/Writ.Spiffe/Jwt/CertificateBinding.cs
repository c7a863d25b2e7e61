using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.Jwt;

/// <summary>
/// Certificate-bound tokens (RFC 8705 §3.1): the <c>x5t#S256</c> confirmation is the unpadded base64url SHA-256 of the DER of
/// the X.509 certificate the token is bound to — for a JWT-SVID, the presenter's X.509-SVID leaf.
/// </summary>
public static class CertificateBinding
{
    /// <summary>The length of an encoded x5t#S256 value (32 bytes in unpadded base64url).</summary>
    public const int EncodedLength = 43;

    /// <summary>x5t#S256 of a certificate: unpadded base64url SHA-256 of its DER.</summary>
    public static string Thumbprint(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return Thumbprint(certificate.RawData);
    }

    /// <summary>x5t#S256 of a DER-encoded certificate.</summary>
    public static string Thumbprint(ReadOnlySpan<byte> certificateDer) => Encode(SHA256.HashData(certificateDer));

    internal static string Encode(ReadOnlySpan<byte> sha256) => B64Url.Encode(sha256);

    /// <summary>The 32 bytes of an x5t#S256 value, or null when it is not exactly 43 base64url characters.</summary>
    internal static byte[]? TryDecode(string? value)
    {
        if (value is null || value.Length != EncodedLength)
        {
            return null;
        }
        var bytes = B64Url.TryDecode(value);
        // 43 characters carry 258 bits: the last 2 must be zero, or two spellings would name one thumbprint.
        return bytes is { Length: 32 } && Encode(bytes) == value ? bytes : null;
    }

    /// <summary>Constant-time equality of two thumbprints: how long it takes says nothing about where they differ.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static bool FixedTimeMatches(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual) =>
        CryptographicOperations.FixedTimeEquals(expected, actual);
}
