using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>
/// The cheap check for the common CSR — an EC P-256/P-384 key, signed with ecdsa-with-SHA256/384/512: the DER is read once
/// (strictly, no copies of the request), the key imported once and the signature verified over the encoded
/// CertificationRequestInfo. Anything else is left to the general <see cref="CertificateRequest"/> path.
/// </summary>
internal static class CsrFastPath
{
    private const string OidEcPublicKey = "1.2.840.10045.2.1";

    public enum Result
    {
        /// <summary>Not a shape this path handles (RSA, another algorithm, unusual encoding): use the general path.</summary>
        NotHandled,
        Valid,
        BadSignature,
        BadKey,
    }

    public static Result TryVerify(ReadOnlySpan<byte> der, out PublicKey? subjectKey)
    {
        subjectKey = null;
        try
        {
            // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
            AsnDecoder.ReadSequence(der, AsnEncodingRules.DER, out var cOff, out var cLen, out var consumed);
            if (consumed != der.Length)
            {
                return Result.NotHandled;
            }
            var content = der.Slice(cOff, cLen);
            AsnDecoder.ReadEncodedValue(content, AsnEncodingRules.DER, out _, out _, out var criLength);
            var cri = content[..criLength];
            var rest = content[criLength..];
            AsnDecoder.ReadSequence(rest, AsnEncodingRules.DER, out var aOff, out var aLen, out var algLength);
            var alg = rest.Slice(aOff, aLen);
            var hash = SignatureHash(alg);
            if (hash is null)
            {
                return Result.NotHandled;
            }
            rest = rest[algLength..];
            if (!AsnDecoder.TryReadPrimitiveBitString(rest, AsnEncodingRules.DER, out var unused, out var signature, out var sigLength)
                || unused != 0 || sigLength != rest.Length)
            {
                return Result.NotHandled;
            }

            // CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name, subjectPKInfo, attributes [0] }
            AsnDecoder.ReadSequence(cri, AsnEncodingRules.DER, out var iOff, out var iLen, out _);
            var info = cri.Slice(iOff, iLen);
            if (!AsnDecoder.TryReadInt32(info, AsnEncodingRules.DER, out var version, out var read) || version != 0)
            {
                return Result.NotHandled;
            }
            info = info[read..];
            AsnDecoder.ReadSequence(info, AsnEncodingRules.DER, out _, out _, out read);   // subject Name
            info = info[read..];
            AsnDecoder.ReadEncodedValue(info, AsnEncodingRules.DER, out _, out _, out var spkiLength);
            var spki = info[..spkiLength];
            info = info[spkiLength..];
            // Attributes (extension requests, ...) are rare here; the general path reads and checks them.
            AsnDecoder.ReadSetOf(info, AsnEncodingRules.DER, out _, out var attributesLength, out read,
                expectedTag: new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true));
            if (read != info.Length || attributesLength != 0)
            {
                return Result.NotHandled;
            }

            var curve = NamedCurveKey(spki, out var point);
            if (curve == 0)
            {
                return Result.NotHandled;
            }
            var pk = PublicKey.CreateFromSubjectPublicKeyInfo(spki, out var spkiRead);
            if (spkiRead != spki.Length)
            {
                return Result.NotHandled;
            }
            ECDsa ec;
            try
            {
                ec = OpenSslEcImport.TryImport(point, curve == 384) ?? ImportManaged(spki);
            }
            catch (CryptographicException)
            {
                // OpenSSL refused the point. Let .NET's stricter import decide, so a misbehaving fast import can never
                // refuse a good key: if .NET accepts it, stop using the fast import.
                try
                {
                    ec = ImportManaged(spki);
                    OpenSslEcImport.Disable();
                }
                catch (CryptographicException)
                {
                    return Result.BadKey;   // not a point on the curve
                }
            }
            using (ec)
            {
                if (!ec.VerifyData(cri, signature, hash.Value, DSASignatureFormat.Rfc3279DerSequence))
                {
                    return Result.BadSignature;
                }
            }
            subjectKey = pk;
            return Result.Valid;
        }
        catch (Exception e) when (e is AsnContentException or CryptographicException)
        {
            return Result.NotHandled;   // malformed: the general path gives the error
        }
    }

    /// <summary>ecdsa-with-SHA256/384/512 with absent parameters (RFC 5758 §3.2); null for anything else.</summary>
    private static HashAlgorithmName? SignatureHash(ReadOnlySpan<byte> algContent)
    {
        var oid = AsnDecoder.ReadObjectIdentifier(algContent, AsnEncodingRules.DER, out var read);
        if (read != algContent.Length)
        {
            return null;
        }
        return oid switch
        {
            "1.2.840.10045.4.3.2" => HashAlgorithmName.SHA256,
            "1.2.840.10045.4.3.3" => HashAlgorithmName.SHA384,
            "1.2.840.10045.4.3.4" => HashAlgorithmName.SHA512,
            _ => null,
        };
    }

    private static ECDsa ImportManaged(ReadOnlySpan<byte> spki)
    {
        var ec = ECDsa.Create();
        try
        {
            ec.ImportSubjectPublicKeyInfo(spki, out _);
            return ec;
        }
        catch
        {
            ec.Dispose();
            throw;
        }
    }

    /// <summary>256 or 384 for id-ecPublicKey on namedCurve P-256 or P-384 (with the key's point), else 0.</summary>
    private static int NamedCurveKey(ReadOnlySpan<byte> spki, out ReadOnlySpan<byte> point)
    {
        point = default;
        AsnDecoder.ReadSequence(spki, AsnEncodingRules.DER, out var off, out var len, out _);
        var body = spki.Slice(off, len);
        AsnDecoder.ReadSequence(body, AsnEncodingRules.DER, out var aOff, out var aLen, out var algLength);
        var alg = body.Slice(aOff, aLen);
        if (AsnDecoder.ReadObjectIdentifier(alg, AsnEncodingRules.DER, out var read) != OidEcPublicKey)
        {
            return 0;
        }
        alg = alg[read..];
        if (alg.IsEmpty || alg[0] != 0x06)
        {
            return 0;
        }
        var curve = AsnDecoder.ReadObjectIdentifier(alg, AsnEncodingRules.DER, out read);
        if (read != alg.Length)
        {
            return 0;
        }
        var bits = body[algLength..];
        if (!AsnDecoder.TryReadPrimitiveBitString(bits, AsnEncodingRules.DER, out var unused, out point, out read) || unused != 0 || read != bits.Length)
        {
            return 0;
        }
        return curve switch
        {
            KeyAlgorithms.OidP256 => 256,
            KeyAlgorithms.OidP384 => 384,
            _ => 0,
        };
    }
}
