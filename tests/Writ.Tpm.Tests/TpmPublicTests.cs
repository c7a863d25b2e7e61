using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Writ.Tpm.Verification;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>Public areas made by a real TPM (tpm2-tools): names, SPKI and EK hash agree with what tpm2-tools and the EK certificates say.</summary>
[Collection(TpmWorkspaceCollection.Name)]
public class TpmPublicTests(TpmWorkspace ws)
{
    [Theory]
    [InlineData(TpmWorkspace.RsaEk, "ek-rsa.pub")]
    [InlineData(TpmWorkspace.EccEk, "ek-ecc.pub")]
    [InlineData("ek-ecc256.ctx", "ek-ecc256.pub")]
    [InlineData("ak.ctx", "ak.pub")]
    [InlineData("ak-rsa.ctx", "ak-rsa.pub")]
    [InlineData("key.ctx", "key.pub")]
    public async Task Name_and_spki_match_tpm2_readpublic(string context, string pub)
    {
        var stem = Path.GetFileNameWithoutExtension(pub);
        await ws.RunAsync("tpm2_readpublic", "-c", context, "-n", $"{stem}.rp-name", "-f", "der", "-o", $"{stem}.der");
        var key = ws.Public(pub);
        Assert.Equal(Convert.ToHexStringLower(ws.Read($"{stem}.rp-name")), Convert.ToHexStringLower(key.Name()));
        Assert.Equal(Convert.ToHexStringLower(ws.Read($"{stem}.der")), Convert.ToHexStringLower(key.SubjectPublicKeyInfo()));
        Assert.Equal(ws.PublicArea(pub), key.Bytes.ToArray());
    }

    [Fact]
    public void Ak_name_matches_tpm2_createak()
    {
        Assert.Equal(ws.Read("ak.name"), ws.Public("ak.pub").Name());
        Assert.Equal(ws.Read("ak-rsa.name"), ws.Public("ak-rsa.pub").Name());
    }

    [Fact]
    public void Parsed_fields_are_those_of_the_tcg_templates()
    {
        var rsaEk = ws.Public("ek-rsa.pub");
        Assert.Equal(TpmAlg.Rsa, rsaEk.Type);
        Assert.Equal(TpmAlg.Sha256, rsaEk.NameAlg);
        Assert.Equal(new TpmSymmetric(TpmAlg.Aes, 128, TpmAlg.Cfb), rsaEk.Symmetric);
        Assert.Equal(2048, rsaEk.Rsa!.KeyBits);
        Assert.Equal(65537u, rsaEk.Rsa.Exponent);
        Assert.Equal(32, rsaEk.AuthPolicy.Length);
        Assert.True(rsaEk.Attributes.HasFlag(TpmaObject.Restricted | TpmaObject.Decrypt | TpmaObject.FixedTpm));

        var ak = ws.Public("ak.pub");
        Assert.Equal(TpmAlg.Ecc, ak.Type);
        Assert.Equal(TpmEccCurve.NistP256, ak.Ecc!.Curve);
        Assert.Equal(new TpmScheme(TpmAlg.EcDsa, TpmAlg.Sha256), ak.Scheme);
        Assert.Equal(TpmAlg.Null, ak.Symmetric.Algorithm);
        Assert.Equal(32, ak.Ecc.X.Length);

        var eccEk = ws.Public("ek-ecc.pub");
        Assert.Equal(TpmEccCurve.NistP384, eccEk.Ecc!.Curve);
        Assert.Equal(TpmAlg.Sha384, eccEk.NameAlg);
        Assert.Equal(48, eccEk.Ecc.Y.Length);
    }

    [Theory]
    [InlineData("0x1c00002", "ek-rsa.pub", "ek-ecc.pub")]
    [InlineData("0x1c00016", "ek-ecc.pub", "ek-rsa.pub")]
    public async Task Ek_hash_is_the_same_from_the_certificate_and_from_the_public_area(string nvIndex, string ekPub, string otherEkPub)
    {
        var file = $"cert-{nvIndex}.der";
        await ws.RunAsync("tpm2_nvread", "-C", "o", "-o", file, nvIndex);
        using var cert = X509CertificateLoader.LoadCertificate(ws.Read(file));
        var ek = ws.Public(ekPub);
        Assert.True(ek.HasSameKey(cert));
        Assert.False(ws.Public(otherEkPub).HasSameKey(cert));
        Assert.Equal(TpmPublic.SpkiHash(cert.PublicKey.ExportSubjectPublicKeyInfo()), ek.EkHash());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(cert.PublicKey.ExportSubjectPublicKeyInfo())), ek.EkHash());
        Assert.Matches("^[0-9a-f]{64}$", ek.EkHash());
    }

    [Fact]
    public void Key_attributes_tell_an_ak_from_an_ek_and_a_resident_key_from_a_loose_one()
    {
        TpmAttestationCheck.CheckAk(ws.Public("ak.pub"));
        TpmAttestationCheck.CheckAgentKey(ws.Public("key.pub"));
        // Attacker: the EK (a decryption key) or the agent key (unrestricted: signs anything) posing as the AK.
        Assert.Equal(TpmErrorCodes.AkAttributes, Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.CheckAk(ws.Public("ek-rsa.pub"))).Code);
        Assert.Equal(TpmErrorCodes.AkAttributes, Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.CheckAk(ws.Public("key.pub"))).Code);
        // Attacker: a key that may be duplicated out of the TPM, or the AK itself, posing as the agent key.
        Assert.Equal(TpmErrorCodes.AgentKeyAttributes, Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.CheckAgentKey(ws.Public("loose.pub"))).Code);
        Assert.Equal(TpmErrorCodes.AgentKeyAttributes, Assert.Throws<TpmVerificationException>(() => TpmAttestationCheck.CheckAgentKey(ws.Public("ak.pub"))).Code);
    }
}
