using System.Security.Cryptography;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Writ.Tpm.Verification;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>
/// Truncated, extended, mutated and random bytes in place of real TPM structures: every parser answers with the
/// structure or a <see cref="TpmFormatException"/>, every check with a <see cref="TpmVerificationException"/>, never
/// anything else (an index error, a CryptographicException, an overflow). Mutations are seeded, so a failure repeats.
/// </summary>
[Collection(TpmWorkspaceCollection.Name)]
public class TpmParseRobustnessTests(TpmWorkspace ws)
{
    private static readonly Action<byte[]> ParsePublic = b =>
    {
        var p = TpmPublic.Parse(b);
        p.Name();
        p.EkHash();
        try
        {
            TpmAttestationCheck.CheckAk(p);
        }
        catch (TpmVerificationException)
        {
        }
    };

    private static readonly Action<byte[]> ParseAttest = b => TpmsAttest.Parse(b);

    private static readonly Action<byte[]> ParseSignature = b => TpmtSignature.Parse(b);

    [Fact]
    public async Task Truncated_or_extended_structures_are_format_errors()
    {
        foreach (var (bytes, parse) in await SamplesAsync())
        {
            parse(bytes);
            for (var length = 0; length < bytes.Length; length++)
                Assert.Throws<TpmFormatException>(() => parse(bytes[..length]));
            Assert.Throws<TpmFormatException>(() => parse([.. bytes, 0]));
            Assert.Throws<TpmFormatException>(() => parse([.. bytes, .. bytes]));
        }
    }

    [Fact]
    public async Task Mutated_and_random_bytes_give_only_format_errors()
    {
        var random = new Random(14);
        foreach (var (bytes, parse) in await SamplesAsync())
        {
            for (var i = 0; i < 1500; i++)
            {
                var mutated = (byte[])bytes.Clone();
                for (var flips = random.Next(1, 4); flips > 0; flips--)
                    mutated[random.Next(mutated.Length)] = (byte)random.Next(256);
                OnlyFormatErrors(parse, mutated);
            }
        }
        foreach (var parse in (Action<byte[]>[])[ParsePublic, ParseAttest, ParseSignature, b => { var r = new TpmReader(b); TpmPcrSelection.Read(ref r); }])
        {
            for (var i = 0; i < 1500; i++)
                OnlyFormatErrors(parse, RandomBytes(random, random.Next(0, 400)));
        }
    }

    [Fact]
    public async Task Mutated_evidence_gives_only_verification_errors()
    {
        var random = new Random(1414);
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (attest, sig) = await ws.QuoteAsync("ak.ctx", "sha256:0,1,2,3,4,5,6,7,14", nonce);
        var values = await ws.PcrValuesAsync("sha256:0,1,2,3,4,5,6,7,14");
        var (certify, certifySig) = await ws.CertifyAsync("key.ctx", "ak.ctx", nonce);
        var ak = ws.Public("ak.pub");
        var key = ws.Public("key.pub");
        for (var i = 0; i < 500; i++)
        {
            var a = Mutate(random, attest);
            var s = Mutate(random, sig);
            var c = Mutate(random, certify);
            var cs = Mutate(random, certifySig);
            OnlyVerificationErrors(() => TpmAttestationCheck.VerifyQuote(ak, a, s, nonce, [TpmPcrSelection.Default], values));
            OnlyVerificationErrors(() => TpmAttestationCheck.VerifyCertify(ak, c, cs, nonce, key));
        }
    }

    private async Task<List<(byte[] Bytes, Action<byte[]> Parse)>> SamplesAsync()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (quote, quoteSig) = await ws.QuoteAsync("ak.ctx", "sha256:0,1,2,3,4,5,6,7,14", nonce);
        var (_, rsaSig) = await ws.QuoteAsync("ak-rsa.ctx", "sha256:0,7", nonce);
        var (certify, _) = await ws.CertifyAsync("key.ctx", "ak.ctx", nonce);
        return
        [
            (ws.PublicArea("ek-rsa.pub"), ParsePublic),
            (ws.PublicArea("ek-ecc.pub"), ParsePublic),
            (ws.PublicArea("ak.pub"), ParsePublic),
            (ws.PublicArea("ak-rsa.pub"), ParsePublic),
            (quote, ParseAttest),
            (certify, ParseAttest),
            (quoteSig, ParseSignature),
            (rsaSig, ParseSignature),
        ];
    }

    private static byte[] Mutate(Random random, byte[] bytes)
    {
        var m = (byte[])bytes.Clone();
        m[random.Next(m.Length)] = (byte)random.Next(256);
        return random.Next(4) == 0 ? m[..random.Next(m.Length)] : m;
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var b = new byte[length];
        random.NextBytes(b);
        // Often a plausible start, so the parsers get past the first fields.
        if (length >= 2 && random.Next(2) == 0)
            b[0] = 0x00;
        return b;
    }

    private static void OnlyFormatErrors(Action<byte[]> parse, byte[] bytes)
    {
        try
        {
            parse(bytes);
        }
        catch (TpmFormatException)
        {
        }
        catch (Exception e)
        {
            Assert.Fail($"{e.GetType().Name} instead of TpmFormatException for {Convert.ToHexStringLower(bytes)}: {e.Message}");
        }
    }

    private static void OnlyVerificationErrors(Action check)
    {
        try
        {
            check();
        }
        catch (TpmVerificationException)
        {
        }
        catch (Exception e)
        {
            Assert.Fail($"{e.GetType().Name} instead of TpmVerificationException: {e.Message}");
        }
    }
}
