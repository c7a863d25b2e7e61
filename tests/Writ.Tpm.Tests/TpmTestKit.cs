using System.Buffers.Binary;
using System.Security.Cryptography;
using Writ.Tests.Shared;
using Writ.Tpm.Marshalling;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>Test-side helpers: names, TPMS_ATTEST fields, signatures as .NET sees them, and the TPM's handle tables as tpm2-tools see them.</summary>
internal static class TpmTestKit
{
    /// <summary>A TPM object's name: nameAlg (SHA-256) || SHA-256(TPMT_PUBLIC).</summary>
    public static byte[] NameOf(byte[] tpmtPublic) => [0x00, 0x0B, .. SHA256.HashData(tpmtPublic)];

    /// <summary>TPM2B_PUBLIC around a TPMT_PUBLIC (what tpm2-tools reads as a public file).</summary>
    public static byte[] Tpm2bPublic(byte[] tpmtPublic) => new TpmWriter().WriteSized(tpmtPublic).ToArray();

    /// <summary>The fields of a TPMS_ATTEST a test looks at: type, extraData, and for a quote its PCR digest.</summary>
    public static (ushort Type, byte[] ExtraData, byte[] Attested) ReadAttest(byte[] attest)
    {
        var r = new TpmReader(attest);
        Assert.Equal(TpmGenerated.Value, r.ReadUInt32());
        var type = r.ReadUInt16();
        r.ReadSized();                  // qualifiedSigner
        var extra = r.ReadSized().ToArray();
        r.ReadBytes(17);                // clockInfo
        r.ReadUInt64();                 // firmwareVersion
        return (type, extra, r.ReadBytes(r.Remaining).ToArray());
    }

    /// <summary>The pcrDigest of a TPMS_QUOTE_INFO (after its TPML_PCR_SELECTION).</summary>
    public static byte[] QuotePcrDigest(byte[] attested)
    {
        var r = new TpmReader(attested);
        var banks = r.ReadUInt32();
        for (var i = 0; i < banks; i++)
        {
            r.ReadUInt16();
            r.ReadBytes(r.ReadUInt8());
        }
        return r.ReadSized().ToArray();
    }

    /// <summary>An ECDSA TPMT_SIGNATURE as IEEE P1363 r||s (32 bytes each).</summary>
    public static byte[] EcdsaP1363(byte[] signature)
    {
        var r = new TpmReader(signature);
        Assert.Equal(TpmAlg.EcDsa, r.ReadUInt16());
        Assert.Equal(TpmAlg.Sha256, r.ReadUInt16());
        var sr = r.ReadSized().ToArray();
        var ss = r.ReadSized().ToArray();
        r.ExpectEnd("the signature");
        return [.. Pad(sr), .. Pad(ss)];
        static byte[] Pad(byte[] v) => v.Length >= 32 ? v[^32..] : [.. new byte[32 - v.Length], .. v];
    }

    /// <summary>The ECC point of a P-256 TPMT_PUBLIC as .NET ECDsa, parsed here (not by the code under test).</summary>
    public static ECDsa EcdsaOf(byte[] tpmtPublic)
    {
        var r = new TpmReader(tpmtPublic);
        Assert.Equal(TpmAlg.Ecc, r.ReadUInt16());
        r.ReadUInt16();
        r.ReadUInt32();
        r.ReadSized();
        Assert.Equal(TpmAlg.Null, r.ReadUInt16());              // symmetric
        Assert.Equal(TpmAlg.EcDsa, r.ReadUInt16());             // scheme
        Assert.Equal(TpmAlg.Sha256, r.ReadUInt16());
        Assert.Equal(TpmEccCurve.NistP256, r.ReadUInt16());
        Assert.Equal(TpmAlg.Null, r.ReadUInt16());              // kdf
        var x = r.ReadSized().ToArray();
        var y = r.ReadSized().ToArray();
        r.ExpectEnd("the public area");
        return ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, Q = new ECPoint { X = x, Y = y } });
    }

    /// <summary>
    /// The transient objects and loaded sessions tpm2-tools sees (swtpm has no resource manager, so anything not flushed
    /// stays): both lists must be empty after every operation.
    /// </summary>
    public static async Task AssertNothingLoadedAsync(Swtpm tpm)
    {
        var ct = TestContext.Current.CancellationToken;
        var transient = await tpm.Tpm2Async("tpm2_getcap", ["handles-transient"], ct);
        var sessions = await tpm.Tpm2Async("tpm2_getcap", ["handles-loaded-session"], ct);
        var policy = await tpm.Tpm2Async("tpm2_getcap", ["handles-saved-session"], ct);
        Assert.Equal("", transient.Trim());
        Assert.Equal("", sessions.Trim());
        Assert.Equal("", policy.Trim());
    }

    /// <summary>tpm2-tools' credential file (tpm2_makecredential -o): magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.</summary>
    public static (byte[] Blob, byte[] Secret) ReadCredentialFile(byte[] file)
    {
        Assert.Equal(0xBADCC0DEu, BinaryPrimitives.ReadUInt32BigEndian(file));
        var r = new TpmReader(file.AsSpan(8));
        var blob = r.ReadSized().ToArray();
        var secret = r.ReadSized().ToArray();
        r.ExpectEnd("the credential file");
        return (blob, secret);
    }
}
