using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;

namespace Writ.Tpm.Verification;

/// <summary>
/// The verifier's checks of what a TPM signed: a TPM2_Quote by the AK over the verifier's nonce and PCRs, a
/// TPM2_Certify by the AK of another key, and the attributes that make an AK an AK and the agent's key TPM-resident.
/// Every failure is a <see cref="TpmVerificationException"/> with a stable code; nothing in the evidence is trusted
/// before the AK's signature over it has been verified.
/// </summary>
public static class TpmAttestationCheck
{
    private const TpmaObject Resident = TpmaObject.FixedTpm | TpmaObject.FixedParent | TpmaObject.SensitiveDataOrigin;

    /// <summary>
    /// Checks that <paramref name="ak"/> is an attestation key: a restricted signing key (it signs only what the TPM
    /// itself generated), not a decryption key, generated inside the TPM and never leaving it (fixedTPM, fixedParent,
    /// sensitiveDataOrigin), with a name hash stronger than SHA-1. <c>WRIT-TPM-AK-ATTRIBUTES</c> otherwise.
    /// </summary>
    public static void CheckAk(TpmPublic ak)
    {
        ArgumentNullException.ThrowIfNull(ak);
        const TpmaObject required = Resident | TpmaObject.Restricted | TpmaObject.SignEncrypt;
        if ((ak.Attributes & (required | TpmaObject.Decrypt)) != required || ak.NameAlg == TpmAlg.Sha1)
            throw new TpmVerificationException(TpmErrorCodes.AkAttributes,
                $"the AK has attributes {ak.Attributes} and name hash 0x{ak.NameAlg:x4}; an AK must be a restricted signing key with fixedTPM, fixedParent, sensitiveDataOrigin, no decrypt, and a SHA-256 or stronger name: create it from the AK template");
    }

    /// <summary>
    /// Checks that <paramref name="key"/> can be the agent's TPM-resident key: an unrestricted signing key (it signs
    /// the CSR digest), not a decryption key, generated inside the TPM and never leaving it (fixedTPM, fixedParent,
    /// sensitiveDataOrigin), with a name hash stronger than SHA-1. <c>WRIT-TPM-AGENT-KEY-ATTRIBUTES</c> otherwise.
    /// </summary>
    public static void CheckAgentKey(TpmPublic key)
    {
        ArgumentNullException.ThrowIfNull(key);
        const TpmaObject required = Resident | TpmaObject.SignEncrypt;
        if ((key.Attributes & (required | TpmaObject.Decrypt | TpmaObject.Restricted)) != required || key.NameAlg == TpmAlg.Sha1)
            throw new TpmVerificationException(TpmErrorCodes.AgentKeyAttributes,
                $"the agent key has attributes {key.Attributes} and name hash 0x{key.NameAlg:x4}; it must be an unrestricted signing key with fixedTPM, fixedParent, sensitiveDataOrigin, no decrypt, and a SHA-256 or stronger name: let the agent create it in the TPM");
    }

    /// <summary>
    /// Verifies a TPM2_Quote: <paramref name="ak"/> is an AK (<see cref="CheckAk"/>) and signed <paramref name="attest"/>;
    /// the TPM generated it (magic) as a quote; its qualifying data is <paramref name="nonce"/>; it covers exactly the
    /// <paramref name="requested"/> banks and PCRs; and <paramref name="values"/> holds exactly one value per quoted PCR
    /// whose digest (in selection order, with the signature's hash) is the quote's PCR digest. Returns the parsed quote.
    /// </summary>
    public static TpmsAttest VerifyQuote(TpmPublic ak, ReadOnlySpan<byte> attest, ReadOnlySpan<byte> signature, ReadOnlySpan<byte> nonce,
        IReadOnlyList<TpmPcrSelection> requested, IReadOnlyList<TpmPcrValue> values)
    {
        ArgumentNullException.ThrowIfNull(requested);
        ArgumentNullException.ThrowIfNull(values);
        if (nonce.IsEmpty)
            throw new ArgumentException("a quote is verified against the nonce the verifier sent; it cannot be empty", nameof(nonce));
        var (parsed, sig) = Signed(ak, attest, signature, TpmErrorCodes.QuoteFormat, TpmErrorCodes.QuoteSignature, "quote");
        if (parsed.Magic != TpmGenerated.Value || parsed.Type != TpmSt.AttestQuote || parsed.Quote is null)
            throw new TpmVerificationException(TpmErrorCodes.QuoteType,
                $"the signed structure is not a TPM-generated quote (magic 0x{parsed.Magic:x8}, type 0x{parsed.Type:x4}): send the TPMS_ATTEST that TPM2_Quote returned");
        if (!parsed.ExtraData.SequenceEqual(nonce))
            throw new TpmVerificationException(TpmErrorCodes.QuoteNonce,
                "the quote is over another nonce than the one sent (a replayed or stale quote): quote again with the nonce of this challenge");
        var quoted = parsed.Quote.PcrSelections;
        var wanted = requested.Where(s => s.Indices.Count > 0).ToList();
        if (!quoted.SequenceEqual(wanted))
            throw new TpmVerificationException(TpmErrorCodes.QuotePcrs,
                $"the quote covers PCRs {Describe(quoted)}, not the requested {Describe(wanted)}: quote exactly the PCRs of the challenge");

        var concat = new List<byte>();
        var used = 0;
        foreach (var selection in quoted)
        {
            var size = TpmHash.DigestSize(selection.HashAlg);
            foreach (var index in selection.Indices)
            {
                var matches = values.Where(v => v.HashAlg == selection.HashAlg && v.Index == index).ToList();
                if (matches.Count != 1 || matches[0].Digest.Length != size)
                    throw new TpmVerificationException(TpmErrorCodes.QuotePcrs,
                        $"the reported PCR values have {matches.Count} value(s) for {selection.Bank}:{index} (one {size}-byte value expected): report each quoted PCR once, as TPM2_PCR_Read gives it");
                concat.AddRange(matches[0].Digest.Span);
                used++;
            }
        }
        if (used != values.Count)
            throw new TpmVerificationException(TpmErrorCodes.QuotePcrs,
                $"{values.Count - used} reported PCR value(s) are not in the quote: report exactly the quoted PCRs");
        if (!TpmHash.Hash(sig.HashAlg, concat.ToArray()).AsSpan().SequenceEqual(parsed.Quote.PcrDigest))
            throw new TpmVerificationException(TpmErrorCodes.QuoteDigest,
                "the reported PCR values do not hash to the quote's PCR digest (changed since the quote, or not the quoted ones): read the PCRs and quote again");
        return parsed;
    }

    /// <summary>
    /// Verifies a TPM2_Certify: <paramref name="ak"/> is an AK (<see cref="CheckAk"/>) and signed <paramref name="attest"/>;
    /// the TPM generated it (magic) as a certification; its qualifying data is <paramref name="nonce"/>; the certified
    /// name is <paramref name="certifiedKey"/>'s <see cref="TpmPublic.Name"/>; and that key is TPM-resident
    /// (<see cref="CheckAgentKey"/>). Together: the key lives in the same TPM as the AK. Returns the parsed certification.
    /// </summary>
    public static TpmsAttest VerifyCertify(TpmPublic ak, ReadOnlySpan<byte> attest, ReadOnlySpan<byte> signature, ReadOnlySpan<byte> nonce, TpmPublic certifiedKey)
    {
        ArgumentNullException.ThrowIfNull(certifiedKey);
        if (nonce.IsEmpty)
            throw new ArgumentException("a certification is verified against the nonce the verifier sent; it cannot be empty", nameof(nonce));
        var (parsed, _) = Signed(ak, attest, signature, TpmErrorCodes.CertifyFormat, TpmErrorCodes.CertifySignature, "certification");
        if (parsed.Magic != TpmGenerated.Value || parsed.Type != TpmSt.AttestCertify || parsed.Certify is null)
            throw new TpmVerificationException(TpmErrorCodes.CertifyType,
                $"the signed structure is not a TPM-generated certification (magic 0x{parsed.Magic:x8}, type 0x{parsed.Type:x4}): send the TPMS_ATTEST that TPM2_Certify returned");
        if (!parsed.ExtraData.SequenceEqual(nonce))
            throw new TpmVerificationException(TpmErrorCodes.CertifyNonce,
                "the certification is over another nonce than the one sent (replayed or stale): certify again with the nonce of this challenge");
        if (!parsed.Certify.Name.SequenceEqual(certifiedKey.Name()))
            throw new TpmVerificationException(TpmErrorCodes.CertifyName,
                "the certification is for another key than the agent key sent: certify the agent key whose public area is in the evidence");
        CheckAgentKey(certifiedKey);
        return parsed;
    }

    private static (TpmsAttest Attest, TpmtSignature Signature) Signed(TpmPublic ak, ReadOnlySpan<byte> attest, ReadOnlySpan<byte> signature,
        string formatCode, string signatureCode, string what)
    {
        ArgumentNullException.ThrowIfNull(ak);
        CheckAk(ak);
        TpmtSignature sig;
        try
        {
            sig = TpmtSignature.Parse(signature);
        }
        catch (TpmFormatException e)
        {
            throw new TpmVerificationException(formatCode, $"the {what} signature is not a TPMT_SIGNATURE Writ accepts ({e.Message}): send the signature the TPM returned");
        }
        if (!sig.Verify(ak, attest))
            throw new TpmVerificationException(signatureCode, $"the {what} is not signed by the attested AK: sign it with the AK the server challenged");
        try
        {
            return (TpmsAttest.Parse(attest), sig);
        }
        catch (TpmFormatException e)
        {
            throw new TpmVerificationException(formatCode, $"the signed {what} is not a TPMS_ATTEST Writ accepts ({e.Message}): send the structure the TPM returned");
        }
    }

    private static string Describe(IEnumerable<TpmPcrSelection> selections)
    {
        var s = string.Join(' ', selections);
        return s.Length == 0 ? "(none)" : s;
    }
}
