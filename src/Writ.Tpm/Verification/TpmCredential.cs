using System.Security.Cryptography;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;

namespace Writ.Tpm.Verification;

/// <summary>
/// The verifier's TPM2_MakeCredential (Part 1 §24, Annex B.10.4 and C.6.4), done in software: a secret only the TPM
/// holding <c>ek</c> can recover with TPM2_ActivateCredential, and only for the object whose name it is bound to (the AK).
/// An agent that answers with the secret proves its AK lives in the same TPM as the EK.
/// </summary>
/// <param name="CredentialBlob">TPM2B_ID_OBJECT contents (no size prefix): TPM2B_DIGEST(outer HMAC) || encrypted identity.</param>
/// <param name="EncryptedSecret">TPM2B_ENCRYPTED_SECRET contents (no size prefix): the seed, RSA-OAEP-encrypted, or the ephemeral ECDH point (TPMS_ECC_POINT).</param>
public sealed record TpmCredential(byte[] CredentialBlob, byte[] EncryptedSecret)
{
    /// <summary>
    /// Makes a credential: a random seed protected to <paramref name="ek"/> (RSA: OAEP with the EK's nameAlg and label
    /// "IDENTITY"; ECC: ephemeral ECDH on the EK's curve and KDFe), then <paramref name="secret"/> encrypted with
    /// AES-CFB under KDFa(seed, "STORAGE", <paramref name="objectName"/>) and an HMAC under KDFa(seed, "INTEGRITY").
    /// <see cref="TpmVerificationException"/> (<c>WRIT-TPM-EK-UNSUPPORTED</c>) when the EK is not an RSA or ECC
    /// restricted decryption key with an AES-CFB symmetric; <see cref="ArgumentException"/> for a malformed name or
    /// a secret longer than the EK's name digest.
    /// </summary>
    public static TpmCredential Make(TpmPublic ek, ReadOnlySpan<byte> objectName, ReadOnlySpan<byte> secret)
    {
        ArgumentNullException.ThrowIfNull(ek);
        CheckEk(ek);
        var nameAlg = ek.NameAlg;
        var digestSize = TpmHash.DigestSize(nameAlg);
        if (secret.Length == 0 || secret.Length > digestSize)
            throw new ArgumentException($"a credential secret is 1 to {digestSize} bytes for this EK, not {secret.Length}", nameof(secret));
        if (objectName.Length < 2 || !TpmHash.IsSupported((ushort)(objectName[0] << 8 | objectName[1]))
            || objectName.Length != 2 + TpmHash.DigestSize((ushort)(objectName[0] << 8 | objectName[1])))
            throw new ArgumentException("the object name is not a TPM name (hash algorithm, then its digest)", nameof(objectName));

        byte[] seed;
        byte[] encryptedSecret;
        if (ek.Rsa is not null)
        {
            seed = RandomNumberGenerator.GetBytes(digestSize);
            encryptedSecret = RsaOaep.Encrypt(ek.Rsa, nameAlg, seed, "IDENTITY\0"u8);
        }
        else
        {
            var ecc = ek.Ecc!;
            using var ekKey = ECDiffieHellman.Create(new ECParameters { Curve = ecc.NetCurve, Q = new ECPoint { X = ecc.X.ToArray(), Y = ecc.Y.ToArray() } });
            using var ephemeral = ECDiffieHellman.Create(ecc.NetCurve);
            var q = ephemeral.ExportParameters(false).Q;
            var z = ephemeral.DeriveRawSecretAgreement(ekKey.PublicKey);
            seed = TpmKdf.KdfE(nameAlg, z, "IDENTITY", q.X, ecc.X, digestSize * 8);
            CryptographicOperations.ZeroMemory(z);
            encryptedSecret = new TpmWriter().WriteSized(q.X).WriteSized(q.Y).ToArray();
        }

        var symKey = TpmKdf.KdfA(nameAlg, seed, "STORAGE", objectName, default, ek.Symmetric.KeyBits);
        var plain = new TpmWriter().WriteSized(secret).ToArray();
        var encIdentity = AesCfb(symKey, plain);
        var hmacKey = TpmKdf.KdfA(nameAlg, seed, "INTEGRITY", default, default, digestSize * 8);
        var outerHmac = TpmHash.Hmac(nameAlg, hmacKey, [.. encIdentity, .. objectName]);
        CryptographicOperations.ZeroMemory(seed);
        CryptographicOperations.ZeroMemory(symKey);
        CryptographicOperations.ZeroMemory(hmacKey);
        CryptographicOperations.ZeroMemory(plain);
        var blob = new TpmWriter().WriteSized(outerHmac).WriteBytes(encIdentity).ToArray();
        return new TpmCredential(blob, encryptedSecret);
    }

    /// <summary>Whether the secret an agent activated is the one the credential was made with (constant time).</summary>
    public static bool SecretMatches(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> activated) =>
        expected.Length == activated.Length && CryptographicOperations.FixedTimeEquals(expected, activated);

    private static void CheckEk(TpmPublic ek)
    {
        const TpmaObject storage = TpmaObject.Restricted | TpmaObject.Decrypt;
        if ((ek.Attributes & (storage | TpmaObject.SignEncrypt)) != storage)
            throw new TpmVerificationException(TpmErrorCodes.EkUnsupported,
                $"the EK public area has attributes {ek.Attributes}, not a restricted decryption key: send the TPM's endorsement key (TCG default template)");
        if (ek.Symmetric.Algorithm != TpmAlg.Aes || ek.Symmetric.Mode != TpmAlg.Cfb || ek.Symmetric.KeyBits is not (128 or 192 or 256))
            throw new TpmVerificationException(TpmErrorCodes.EkUnsupported,
                $"the EK's symmetric algorithm is 0x{ek.Symmetric.Algorithm:x4}/{ek.Symmetric.KeyBits}/0x{ek.Symmetric.Mode:x4}, not AES-CFB: send the TPM's endorsement key (TCG default template)");
        if (ek.Ecc is not null)
        {
            try
            {
                using var check = ek.CreateECDsa();
            }
            catch (TpmFormatException e)
            {
                throw new TpmVerificationException(TpmErrorCodes.EkUnsupported, $"the EK public area is not a usable ECC key ({e.Message}): send the TPM's endorsement key");
            }
        }
    }

    /// <summary>AES in CFB-128 with a zero IV, any length (CFB is a stream mode: pad to a block, encrypt, cut back).</summary>
    private static byte[] AesCfb(byte[] key, byte[] plain)
    {
        using var aes = Aes.Create();
        aes.Key = key;
        var padded = new byte[(plain.Length + 15) / 16 * 16];
        plain.CopyTo(padded, 0);
        var cipher = aes.EncryptCfb(padded, new byte[16], PaddingMode.None, 128);
        return cipher.AsSpan(0, plain.Length).ToArray();
    }
}
