using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using Writ.Tpm.Marshalling;

namespace Writ.Tests.Shared;

/// <summary>
/// What a verifier does with tpm2-tools, for tests of the agent's TPM side: tpm2_makecredential (offline, <c>-T none</c>)
/// for an EK public and an AK name, tpm2_checkquote, and the TPM names they need.
/// </summary>
public static class TpmTools
{
    /// <summary>A TPM object's name: nameAlg (SHA-256, 0x000B) || SHA-256(TPMT_PUBLIC).</summary>
    public static byte[] NameOf(byte[] tpmtPublic) => [0x00, 0x0B, .. SHA256.HashData(tpmtPublic)];

    /// <summary>
    /// tpm2_makecredential for the EK (its TPMT_PUBLIC) and the AK's name: the credential blob (TPM2B_ID_OBJECT contents)
    /// and the encrypted seed (TPM2B_ENCRYPTED_SECRET contents), as the server's MakeCredential would give them.
    /// </summary>
    public static async Task<(byte[] Blob, byte[] EncryptedSecret)> MakeCredentialAsync(byte[] ekPublic, byte[] akPublic, byte[] secret, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("writ-makecred-").FullName;
        try
        {
            var ek = Path.Combine(dir, "ek.pub");
            File.WriteAllBytes(ek, [(byte)(ekPublic.Length >> 8), (byte)ekPublic.Length, .. ekPublic]);   // TPM2B_PUBLIC
            File.WriteAllBytes(Path.Combine(dir, "secret"), secret);
            await RunAsync("tpm2_makecredential", ["-T", "none", "-u", ek, "-s", Path.Combine(dir, "secret"),
                "-n", Convert.ToHexStringLower(NameOf(akPublic)), "-o", Path.Combine(dir, "cred")], ct).ConfigureAwait(false);
            // tpm2-tools' credential file: magic 0xBADCC0DE, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
            var file = File.ReadAllBytes(Path.Combine(dir, "cred"));
            if (BinaryPrimitives.ReadUInt32BigEndian(file) != 0xBADCC0DE)
                throw new InvalidOperationException("tpm2_makecredential wrote an unknown file format");
            var blobSize = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(8));
            var blob = file.AsSpan(10, blobSize).ToArray();
            var secretSize = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(10 + blobSize));
            return (blob, file.AsSpan(12 + blobSize, secretSize).ToArray());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// The transient objects, loaded sessions and saved sessions tpm2_getcap lists ("" when none): swtpm has no resource
    /// manager, so whatever an operation does not flush stays, and this must be empty after every operation.
    /// </summary>
    public static async Task<string> LoadedHandlesAsync(Swtpm tpm, CancellationToken ct)
    {
        var all = "";
        foreach (var kind in (string[])["handles-transient", "handles-loaded-session", "handles-saved-session"])
            all += (await tpm.Tpm2Async("tpm2_getcap", [kind], ct).ConfigureAwait(false)).Trim();
        return all;
    }

    /// <summary>tpm2_checkquote of a quote (TPMS_ATTEST, TPMT_SIGNATURE) by an AK (PEM) over a nonce: its exit code.</summary>
    public static async Task<int> CheckQuoteAsync(string akPem, byte[] attest, byte[] signature, byte[] nonce, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("writ-checkquote-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "ak.pem"), akPem);
            File.WriteAllBytes(Path.Combine(dir, "quote.msg"), attest);
            File.WriteAllBytes(Path.Combine(dir, "quote.sig"), signature);
            return await RunAsync("tpm2_checkquote", ["-u", Path.Combine(dir, "ak.pem"), "-m", Path.Combine(dir, "quote.msg"), "-s", Path.Combine(dir, "quote.sig"),
                "-g", "sha256", "-q", Convert.ToHexStringLower(nonce)], ct, mayFail: true).ConfigureAwait(false);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The fields of a TPMS_ATTEST a test looks at: type, extraData, and for a quote its PCR digest.</summary>
    public static (ushort Type, byte[] ExtraData, byte[] Attested) ReadAttest(byte[] attest)
    {
        var r = new TpmReader(attest);
        Expect(TpmGenerated.Value, r.ReadUInt32(), "TPM_GENERATED");
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
        Expect(TpmAlg.EcDsa, r.ReadUInt16(), "TpmAlg.EcDsa");
        Expect(TpmAlg.Sha256, r.ReadUInt16(), "TpmAlg.Sha256");
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
        Expect(TpmAlg.Ecc, r.ReadUInt16(), "TpmAlg.Ecc");
        r.ReadUInt16();
        r.ReadUInt32();
        r.ReadSized();
        Expect(TpmAlg.Null, r.ReadUInt16(), "TpmAlg.Null");
        Expect(TpmAlg.EcDsa, r.ReadUInt16(), "TpmAlg.EcDsa");
        Expect(TpmAlg.Sha256, r.ReadUInt16(), "TpmAlg.Sha256");
        Expect(TpmEccCurve.NistP256, r.ReadUInt16(), "TpmEccCurve.NistP256");
        Expect(TpmAlg.Null, r.ReadUInt16(), "TpmAlg.Null");
        var x = r.ReadSized().ToArray();
        var y = r.ReadSized().ToArray();
        r.ExpectEnd("the public area");
        return ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, Q = new ECPoint { X = x, Y = y } });
    }

    private static void Expect(uint expected, uint actual, string what)
    {
        if (expected != actual)
            throw new InvalidOperationException($"expected {what} (0x{expected:x}), got 0x{actual:x}");
    }

    private static async Task<int> RunAsync(string file, string[] args, CancellationToken ct, bool mayFail = false)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync(ct);
        await p.StandardOutput.ReadToEndAsync(ct).ConfigureAwait(false);
        await p.WaitForExitAsync(ct).ConfigureAwait(false);
        if (p.ExitCode != 0 && !mayFail)
            throw new InvalidOperationException($"{file} exited {p.ExitCode}: {await err.ConfigureAwait(false)}");
        return p.ExitCode;
    }
}
