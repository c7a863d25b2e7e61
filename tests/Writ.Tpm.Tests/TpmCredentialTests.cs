using System.Security.Cryptography;
using Writ.Tests.Shared;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Writ.Tpm.Verification;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>Writ's software MakeCredential, activated by tpm2_activatecredential on a real TPM.</summary>
[Collection(TpmWorkspaceCollection.Name)]
public class TpmCredentialTests(TpmWorkspace ws)
{
    [Theory]
    [InlineData(TpmWorkspace.RsaEk, "ek-rsa.pub")]
    [InlineData(TpmWorkspace.EccEk, "ek-ecc.pub")]
    [InlineData("ek-ecc256.ctx", "ek-ecc256.pub")]
    public async Task The_tpm_holding_the_ek_activates_the_credential_for_its_ak(string ekContext, string ekPub)
    {
        var ek = ws.Public(ekPub);
        var secret = RandomNumberGenerator.GetBytes(32);
        var credential = TpmCredential.Make(ek, ws.Public("ak.pub").Name(), secret);
        var activated = await ActivateAsync(credential, ekContext, "ak.ctx");
        Assert.True(TpmCredential.SecretMatches(secret, activated));
    }

    [Fact]
    public async Task A_credential_for_another_tpms_ek_is_not_activated()
    {
        // Attacker: an AK from this TPM presented with the EK (certificate) of another, genuine TPM.
        await using var other = await Swtpm.StartAsync(null, TestContext.Current.CancellationToken);
        var dir = Directory.CreateTempSubdirectory("writ-tpm-other-").FullName;
        try
        {
            await other.Tpm2Async("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"], TestContext.Current.CancellationToken, dir);
            var otherEk = TpmPublic.Parse(new TpmReader(File.ReadAllBytes(Path.Combine(dir, "ek.pub"))).ReadSized());
            Assert.NotEqual(ws.Public("ek-rsa.pub").EkHash(), otherEk.EkHash());
            var credential = TpmCredential.Make(otherEk, ws.Public("ak.pub").Name(), RandomNumberGenerator.GetBytes(32));
            var e = await Assert.ThrowsAsync<InvalidOperationException>(() => ActivateAsync(credential, TpmWorkspace.RsaEk, "ak.ctx"));
            Assert.Contains("tpm2_activatecredential", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_credential_bound_to_another_name_is_not_activated_for_this_ak()
    {
        // The credential is for ak2's name: ak (same TPM, same EK) cannot claim it.
        var credential = TpmCredential.Make(ws.Public("ek-rsa.pub"), ws.Public("ak2.pub").Name(), RandomNumberGenerator.GetBytes(32));
        await Assert.ThrowsAsync<InvalidOperationException>(() => ActivateAsync(credential, TpmWorkspace.RsaEk, "ak.ctx"));
        Assert.Equal(32, (await ActivateAsync(credential, TpmWorkspace.RsaEk, "ak2.ctx")).Length);
    }

    [Fact]
    public void Only_an_endorsement_key_and_a_well_formed_name_and_secret_are_accepted()
    {
        var name = ws.Public("ak.pub").Name();
        // Attacker: a signing key (here the AK itself) offered as the EK.
        var e = Assert.Throws<TpmVerificationException>(() => TpmCredential.Make(ws.Public("ak.pub"), name, new byte[32]));
        Assert.Equal(TpmErrorCodes.EkUnsupported, e.Code);
        var ek = ws.Public("ek-rsa.pub");
        Assert.Throws<ArgumentException>(() => TpmCredential.Make(ek, name, new byte[33]));
        Assert.Throws<ArgumentException>(() => TpmCredential.Make(ek, name, []));
        Assert.Throws<ArgumentException>(() => TpmCredential.Make(ek, name.AsSpan(0, 20), new byte[32]));
        Assert.False(TpmCredential.SecretMatches(new byte[32], new byte[31]));
    }

    [Fact]
    public void Oaep_encryption_is_rfc_8017_as_dotnet_decrypts_it()
    {
        // With an empty label, Writ's OAEP must be what .NET's own OAEP-SHA256 decrypts (the TPM tests cover the label).
        using var rsa = RSA.Create(2048);
        var p = rsa.ExportParameters(false);
        var area = new TpmWriter().WriteUInt16(TpmAlg.Rsa).WriteUInt16(TpmAlg.Sha256).WriteUInt32((uint)TpmaObject.Decrypt).WriteSized([])
            .WriteUInt16(TpmAlg.Null).WriteUInt16(TpmAlg.Null).WriteUInt16(2048).WriteUInt32(0).WriteSized(p.Modulus).ToArray();
        var key = TpmPublic.Parse(area);
        var message = RandomNumberGenerator.GetBytes(32);
        var cipher = RsaOaep.Encrypt(key.Rsa!, TpmAlg.Sha256, message, []);
        Assert.Equal(message, rsa.Decrypt(cipher, RSAEncryptionPadding.OaepSHA256));
    }

    private const string PolicyASha384 = "8bbf2266537c171cb56e403c4dc1d4b64f432611dc386e6f532050c3278c930e143e8bb1133824ccb431053871c6db53";
    private const string PolicyCSha384 = "d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5b4947c2d73e63005eed2dc2b3593d165";

    /// <summary>tpm2_activatecredential with the EK's PolicySecret(endorsement) session; returns the recovered secret.</summary>
    private async Task<byte[]> ActivateAsync(TpmCredential credential, string ekContext, string akContext)
    {
        var id = Guid.NewGuid().ToString("N");
        var file = new TpmWriter().WriteUInt32(0xBADCC0DE).WriteUInt32(1).WriteSized(credential.CredentialBlob).WriteSized(credential.EncryptedSecret).ToArray();
        await File.WriteAllBytesAsync(ws.PathOf($"{id}.cred"), file, TestContext.Current.CancellationToken);
        var session = $"{id}.session";
        var highRange = ekContext == TpmWorkspace.EccEk;
        await ws.Tpm.Tpm2Async("tpm2_startauthsession", ["--policy-session", "-g", highRange ? "sha384" : "sha256", "-S", session], TestContext.Current.CancellationToken, ws.Dir);
        try
        {
            await ws.Tpm.Tpm2Async("tpm2_policysecret", ["-S", session, "-c", "e"], TestContext.Current.CancellationToken, ws.Dir);
            if (highRange)
            {
                // The high-range EK's policy is PolicyOR(PolicyA = PolicySecret(endorsement), PolicyC = PolicyAuthorizeNV) (TCG EK profile 2.3, SHA-384).
                await File.WriteAllBytesAsync(ws.PathOf($"{id}.pola"), Convert.FromHexString(PolicyASha384), TestContext.Current.CancellationToken);
                await File.WriteAllBytesAsync(ws.PathOf($"{id}.polc"), Convert.FromHexString(PolicyCSha384), TestContext.Current.CancellationToken);
                await ws.Tpm.Tpm2Async("tpm2_policyor", ["-S", session, "-l", $"sha384:{id}.pola,{id}.polc"], TestContext.Current.CancellationToken, ws.Dir);
            }
            await ws.RunAsync("tpm2_activatecredential", "-c", akContext, "-C", ekContext, "-i", $"{id}.cred", "-o", $"{id}.secret", "-P", $"session:{session}");
            return ws.Read($"{id}.secret");
        }
        finally
        {
            await ws.Tpm.Tpm2Async("tpm2_flushcontext", ["-s"], TestContext.Current.CancellationToken, ws.Dir);
            await ws.Tpm.Tpm2Async("tpm2_flushcontext", ["-t"], TestContext.Current.CancellationToken, ws.Dir);
        }
    }
}
