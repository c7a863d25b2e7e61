using System.Security.Cryptography;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Writ.Tpm.Verification;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>Quotes and certifications from a real TPM verify; every tampering an attacker can try is refused with its code.</summary>
[Collection(TpmWorkspaceCollection.Name)]
public class TpmAttestationCheckTests(TpmWorkspace ws)
{
    private const string Pcrs = "sha256:0,1,2,3,4,5,6,7,14";

    private static readonly TpmPcrSelection[] Requested = [TpmPcrSelection.Default];

    [Theory]
    [InlineData("ak.ctx", "ak.pub")]
    [InlineData("ak-rsa.ctx", "ak-rsa.pub")]
    public async Task A_quote_by_the_ak_over_the_nonce_and_pcrs_verifies(string akContext, string akPub)
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.QuoteAsync(akContext, Pcrs, nonce);
        var values = await ws.PcrValuesAsync(Pcrs);
        var quote = TpmAttestationCheck.VerifyQuote(ws.Public(akPub), attest, sig, nonce, Requested, values);
        Assert.Equal(nonce, quote.ExtraData.ToArray());
        Assert.Equal(TpmPcrSelection.Default, Assert.Single(quote.Quote!.PcrSelections));
        Assert.Equal(ws.Public(akContext == "ak.ctx" ? "ak.pub" : "ak-rsa.pub").Name().Length, quote.QualifiedSigner.Length);
        Assert.Equal(Pcrs, TpmPcrSelection.Default.ToString());
    }

    [Fact]
    public async Task A_replayed_quote_over_an_old_nonce_is_refused()
    {
        var old = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.QuoteAsync("ak.ctx", Pcrs, old);
        var values = await ws.PcrValuesAsync(Pcrs);
        var e = Assert.Throws<TpmVerificationException>(() =>
            TpmAttestationCheck.VerifyQuote(ws.Public("ak.pub"), attest, sig, RandomNumberGenerator.GetBytes(32), Requested, values));
        Assert.Equal(TpmErrorCodes.QuoteNonce, e.Code);
    }

    [Fact]
    public async Task Pcr_values_that_changed_after_the_quote_do_not_match_its_digest()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.QuoteAsync("ak.ctx", Pcrs, nonce);
        await ws.Tpm.ExtendPcrAsync(14, "after the quote", TestContext.Current.CancellationToken);
        var values = await ws.PcrValuesAsync(Pcrs);
        var e = Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.VerifyQuote(ws.Public("ak.pub"), attest, sig, nonce, Requested, values));
        Assert.Equal(TpmErrorCodes.QuoteDigest, e.Code);
    }

    [Fact]
    public async Task Reported_values_must_be_exactly_the_quoted_pcrs_with_their_values()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.QuoteAsync("ak.ctx", Pcrs, nonce);
        var values = await ws.PcrValuesAsync(Pcrs);
        var ak = ws.Public("ak.pub");
        string Code(List<TpmPcrValue> reported) =>
            Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.VerifyQuote(ak, attest, sig, nonce, Requested, reported)).Code;

        Assert.Equal(TpmErrorCodes.QuotePcrs, Code(values[1..]));                                                  // one missing
        Assert.Equal(TpmErrorCodes.QuotePcrs, Code([.. values, new TpmPcrValue(TpmAlg.Sha256, 9, new byte[32])]));  // one extra
        Assert.Equal(TpmErrorCodes.QuotePcrs, Code([.. values, values[0]]));                                        // one twice
        Assert.Equal(TpmErrorCodes.QuotePcrs, Code([values[0] with { Digest = new byte[20] }, .. values[1..]]));      // wrong size
        // Attacker: PCR 7's value reported as some other (reference) value.
        Assert.Equal(TpmErrorCodes.QuoteDigest, Code([.. values.Select(v => v.Index == 7 ? v with { Digest = Enumerable.Repeat((byte)0xab, 32).ToArray() } : v)]));
        // The values in another order are the same report.
        TpmAttestationCheck.VerifyQuote(ak, attest, sig, nonce, Requested, [.. values.AsEnumerable().Reverse()]);
    }

    [Fact]
    public async Task A_quote_over_other_pcrs_than_requested_is_refused()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.QuoteAsync("ak.ctx", "sha256:0,1,2,3,4,5,6,7", nonce);   // PCR 14 left out
        var values = await ws.PcrValuesAsync("sha256:0,1,2,3,4,5,6,7");
        var e = Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.VerifyQuote(ws.Public("ak.pub"), attest, sig, nonce, Requested, values));
        Assert.Equal(TpmErrorCodes.QuotePcrs, e.Code);
        Assert.Contains("sha256:0,1,2,3,4,5,6,7,", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Altered_quote_bytes_or_signature_and_a_signature_by_another_key_are_refused()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.QuoteAsync("ak.ctx", Pcrs, nonce);
        var values = await ws.PcrValuesAsync(Pcrs);
        var ak = ws.Public("ak.pub");
        string Code(byte[] a, byte[] s) => Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.VerifyQuote(ak, a, s, nonce, Requested, values)).Code;

        var flippedSig = (byte[])sig.Clone();
        flippedSig[^5] ^= 0x01;
        Assert.Equal(TpmErrorCodes.QuoteSignature, Code(attest, flippedSig));
        var flippedAttest = (byte[])attest.Clone();
        flippedAttest[^3] ^= 0x01;   // inside the PCR digest
        Assert.Equal(TpmErrorCodes.QuoteSignature, Code(flippedAttest, sig));
        // The same quote by another AK of the same TPM, checked against the attested AK.
        var (otherAttest, otherSig) = await ws.QuoteAsync("ak2.ctx", Pcrs, nonce);
        Assert.Equal(TpmErrorCodes.QuoteSignature, Code(otherAttest, otherSig));
        Assert.Equal(TpmErrorCodes.QuoteFormat, Code(attest, [0x00, 0x18, 0x00]));
        // An ECDSA signature checked against the RSA AK.
        Assert.Equal(TpmErrorCodes.QuoteSignature,
            Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.VerifyQuote(ws.Public("ak-rsa.pub"), attest, sig, nonce, Requested, values)).Code);
    }

    [Fact]
    public async Task An_unrestricted_key_cannot_stand_in_for_the_ak_with_a_forged_quote()
    {
        // Attacker: a TPMS_ATTEST with the right magic, nonce and a PCR digest of their choosing, signed by a
        // signing key that is not restricted (a restricted AK refuses to sign data that starts with the magic).
        var nonce = RandomNumberGenerator.GetBytes(32);
        var values = await ws.PcrValuesAsync(Pcrs);
        var forged = new TpmWriter().WriteUInt32(TpmGenerated.Value).WriteUInt16(TpmSt.AttestQuote).WriteSized(ws.Public("key.pub").Name()).WriteSized(nonce)
            .WriteUInt64(1).WriteUInt32(0).WriteUInt32(0).WriteUInt8(1).WriteUInt64(0);
        TpmPcrSelection.WriteList(forged, [TpmPcrSelection.Default]);
        forged.WriteSized(SHA256.HashData(values.SelectMany(v => v.Digest.ToArray()).ToArray()));
        var sig = await ws.SignDigestAsync("key.ctx", SHA256.HashData(forged.AsSpan()));
        var key = ws.Public("key.pub");
        Assert.True(TpmtSignature.Parse(sig).Verify(key, forged.AsSpan()));   // the forgery is well signed...
        var e = Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.VerifyQuote(key, forged.ToArray(), sig, nonce, Requested, values));
        Assert.Equal(TpmErrorCodes.AkAttributes, e.Code);                    // ...by a key that is no AK
    }

    [Fact]
    public async Task A_certification_of_the_agent_key_by_the_ak_over_the_nonce_verifies()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.CertifyAsync("key.ctx", "ak.ctx", nonce);
        var certified = TpmAttestationCheck.VerifyCertify(ws.Public("ak.pub"), attest, sig, nonce, ws.Public("key.pub"));
        Assert.Equal(ws.Public("key.pub").Name(), certified.Certify!.Name.ToArray());
        Assert.Equal(nonce, certified.ExtraData.ToArray());
    }

    [Fact]
    public async Task Certifications_of_another_key_over_another_nonce_by_another_ak_or_of_a_loose_key_are_refused()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var ak = ws.Public("ak.pub");
        var key = ws.Public("key.pub");
        var (attest, sig) = await ws.CertifyAsync("key.ctx", "ak.ctx", nonce);
        string Code(TpmPublic signer, byte[] a, byte[] s, byte[] n, TpmPublic k) =>
            Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.VerifyCertify(signer, a, s, n, k)).Code;

        Assert.Equal(TpmErrorCodes.CertifyNonce, Code(ak, attest, sig, RandomNumberGenerator.GetBytes(32), key));
        Assert.Throws<ArgumentException>(() => TpmAttestationCheck.VerifyCertify(ak, attest, sig, [], key));   // no freshness is a caller bug
        // Attacker: a certification of another TPM key presented with a key of their choosing.
        var (otherKeyAttest, otherKeySig) = await ws.CertifyAsync("key2.ctx", "ak.ctx", nonce);
        Assert.Equal(TpmErrorCodes.CertifyName, Code(ak, otherKeyAttest, otherKeySig, nonce, key));
        var (otherAkAttest, otherAkSig) = await ws.CertifyAsync("key.ctx", "ak2.ctx", nonce);
        Assert.Equal(TpmErrorCodes.CertifySignature, Code(ak, otherAkAttest, otherAkSig, nonce, key));
        var (looseAttest, looseSig) = await ws.CertifyAsync("loose.ctx", "ak.ctx", nonce);
        Assert.Equal(TpmErrorCodes.AgentKeyAttributes, Code(ak, looseAttest, looseSig, nonce, ws.Public("loose.pub")));
        Assert.Equal(TpmErrorCodes.CertifyFormat, Code(ak, attest, [1, 2, 3], nonce, key));
        // A quote (signed by the AK, over the nonce) is not a certification, nor the reverse.
        var (quote, quoteSig) = await ws.QuoteAsync("ak.ctx", Pcrs, nonce);
        Assert.Equal(TpmErrorCodes.CertifyType, Code(ak, quote, quoteSig, nonce, key));
        Assert.Equal(TpmErrorCodes.QuoteType, Assert.Throws<TpmVerificationException>(() =>
            TpmAttestationCheck.VerifyQuote(ak, attest, sig, nonce, Requested, [])).Code);
    }

    [Fact]
    public async Task The_agent_keys_signature_over_a_digest_verifies_only_for_that_key_and_digest()
    {
        var digest = SHA256.HashData("writ-tpm-agent-key test"u8);
        var sig = TpmtSignature.Parse(await ws.SignDigestAsync("key.ctx", digest));
        Assert.Equal(TpmAlg.EcDsa, sig.SigAlg);
        Assert.True(sig.VerifyDigest(ws.Public("key.pub"), digest));
        Assert.False(sig.VerifyDigest(ws.Public("key2.pub"), digest));
        Assert.False(sig.VerifyDigest(ws.Public("key.pub"), SHA256.HashData("another CSR"u8)));
        Assert.False(sig.VerifyDigest(ws.Public("ak-rsa.pub"), digest));
        Assert.False(sig.VerifyDigest(ws.Public("key.pub"), digest.AsSpan(0, 20)));
    }
}
