using Writ.Tests.Shared;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>
/// One manufactured swtpm (RSA and ECC EK certificates from its own CA) with keys made by tpm2-tools, shared by the
/// verifier tests: an RSA EK and an ECC EK, an ECDSA AK and a second one, an RSASSA AK, an agent-style signing key and
/// a key that may leave the TPM. tpm2-tools runs in <see cref="Dir"/>; transient objects are flushed after every tool
/// (swtpm has no resource manager).
/// </summary>
public sealed class TpmWorkspace : IAsyncLifetime
{
    private SwtpmCa? _ca;
    private Swtpm? _tpm;

    public string Dir { get; } = Directory.CreateTempSubdirectory("writ-tpm-verify-").FullName;

    /// <summary>The persistent handle of the RSA EK (certificate at NV 0x01C00002).</summary>
    public const string RsaEk = "0x81010001";

    /// <summary>The persistent handle of the ECC P-384 EK (certificate at NV 0x01C00016).</summary>
    public const string EccEk = "0x81010016";

    public Swtpm Tpm => _tpm ?? throw new InvalidOperationException("the workspace is not initialized");

    public async ValueTask InitializeAsync()
    {
        _ca = SwtpmCa.Create();
        _tpm = await Swtpm.StartAsync(_ca, CancellationToken.None);
        // swtpm_setup persists the EKs its certificates are for: RSA 2048 (TCG low range) and ECC NIST P-384 (high range, SHA-384 name).
        await RunAsync("tpm2_readpublic", "-c", RsaEk, "-o", "ek-rsa.pub");
        await RunAsync("tpm2_readpublic", "-c", EccEk, "-o", "ek-ecc.pub");
        // An ECC NIST P-256 EK from the TCG low-range template, as tpm2-tools makes it.
        await RunAsync("tpm2_createek", "-c", "ek-ecc256.ctx", "-G", "ecc", "-u", "ek-ecc256.pub");
        await CreateAkAsync("ak", "ecc", "ecdsa");
        await CreateAkAsync("ak2", "ecc", "ecdsa");
        await CreateAkAsync("ak-rsa", "rsa", "rsassa");
        await RunAsync("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", "owner.ctx");
        await CreateKeyAsync("key", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign");
        await CreateKeyAsync("key2", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign");
        await CreateKeyAsync("loose", "sensitivedataorigin|userwithauth|sign");
    }

    private Task CreateAkAsync(string name, string type, string scheme) =>
        RunAsync("tpm2_createak", "-C", RsaEk, "-c", $"{name}.ctx", "-G", type, "-g", "sha256", "-s", scheme,
            "-u", $"{name}.pub", "-n", $"{name}.name", "-r", $"{name}.priv");

    private async Task CreateKeyAsync(string name, string attributes)
    {
        await RunAsync("tpm2_create", "-C", "owner.ctx", "-G", "ecc256:ecdsa-sha256", "-a", attributes, "-u", $"{name}.pub", "-r", $"{name}.priv");
        await RunAsync("tpm2_load", "-C", "owner.ctx", "-u", $"{name}.pub", "-r", $"{name}.priv", "-c", $"{name}.ctx");
    }

    /// <summary>Runs a tpm2-tools command in <see cref="Dir"/>, then flushes every transient object it left loaded.</summary>
    public async Task<string> RunAsync(string tool, params string[] args)
    {
        var output = await Tpm.Tpm2Async(tool, args, TestContext.Current.CancellationToken, Dir);
        await Tpm.Tpm2Async("tpm2_flushcontext", ["-t"], TestContext.Current.CancellationToken, Dir);
        return output;
    }

    public string PathOf(string file) => Path.Combine(Dir, file);

    public byte[] Read(string file) => File.ReadAllBytes(PathOf(file));

    /// <summary>The TPMT_PUBLIC inside a tpm2-tools <c>-u</c> file (a TPM2B_PUBLIC: its UINT16 size prefix is checked and stripped).</summary>
    public byte[] PublicArea(string file)
    {
        var bytes = Read(file);
        var r = new TpmReader(bytes);
        var inner = r.ReadSized().ToArray();
        r.ExpectEnd(file);
        return inner;
    }

    public TpmPublic Public(string file) => TpmPublic.Parse(PublicArea(file));

    public async ValueTask DisposeAsync()
    {
        if (_tpm is not null)
            await _tpm.DisposeAsync();
        _ca?.Dispose();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>The tests that drive the shared <see cref="TpmWorkspace"/> run one at a time (swtpm serves one connection, and they extend its PCRs).</summary>
[CollectionDefinition(Name)]
public sealed class TpmWorkspaceCollection : ICollectionFixture<TpmWorkspace>
{
    public const string Name = "tpm workspace";
}

/// <summary>Quotes, certifications and signatures from the workspace's TPM, made by tpm2-tools.</summary>
public static class TpmWorkspaceEvidence
{
    /// <summary>TPM2_Quote by <paramref name="akContext"/> over <paramref name="pcrs"/> (tpm2-tools notation) with <paramref name="nonce"/>: (TPMS_ATTEST, TPMT_SIGNATURE).</summary>
    public static async Task<(byte[] Attest, byte[] Signature)> QuoteAsync(this TpmWorkspace ws, string akContext, string pcrs, byte[] nonce)
    {
        var id = Guid.NewGuid().ToString("N");
        await ws.RunAsync("tpm2_quote", "-c", akContext, "-l", pcrs, "-q", Convert.ToHexStringLower(nonce), "-g", "sha256", "-m", $"{id}.msg", "-s", $"{id}.sig");
        return (ws.Read($"{id}.msg"), ws.Read($"{id}.sig"));
    }

    /// <summary>The current values of <paramref name="pcrs"/> (one sha256 bank, tpm2-tools notation) as TPM2_PCR_Read gives them.</summary>
    public static async Task<List<TpmPcrValue>> PcrValuesAsync(this TpmWorkspace ws, string pcrs)
    {
        var id = Guid.NewGuid().ToString("N");
        await ws.RunAsync("tpm2_pcrread", pcrs, "-o", $"{id}.pcrs");
        var raw = ws.Read($"{id}.pcrs");
        var indices = pcrs.Split(':')[1].Split(',').Select(int.Parse).Order().ToList();
        Assert.Equal(indices.Count * 32, raw.Length);
        return [.. indices.Select((index, i) => new TpmPcrValue(TpmAlg.Sha256, index, raw.AsMemory(i * 32, 32)))];
    }

    /// <summary>
    /// TPM2_Certify of <paramref name="keyContext"/> by <paramref name="akContext"/> with <paramref name="nonce"/> as qualifying
    /// data: (TPMS_ATTEST, TPMT_SIGNATURE). tpm2_certify (5.4) cannot pass qualifying data, so the command is marshalled
    /// here and sent with tpm2_send, with both objects loaded by tpm2-tools.
    /// </summary>
    public static async Task<(byte[] Attest, byte[] Signature)> CertifyAsync(this TpmWorkspace ws, string keyContext, string akContext, byte[] nonce)
    {
        var ct = TestContext.Current.CancellationToken;
        var id = Guid.NewGuid().ToString("N");
        await ws.Tpm.Tpm2Async("tpm2_flushcontext", ["-t"], ct, ws.Dir);
        try
        {
            await ws.Tpm.Tpm2Async("tpm2_readpublic", ["-c", keyContext], ct, ws.Dir);   // stays loaded: 0x80000000
            await ws.Tpm.Tpm2Async("tpm2_readpublic", ["-c", akContext], ct, ws.Dir);    // 0x80000001
            var w = new TpmWriter().WriteUInt16(TpmSt.Sessions).WriteUInt32(0).WriteUInt32(0x00000148)   // TPM2_Certify
                .WriteUInt32(0x80000000).WriteUInt32(0x80000001).WriteUInt32(18);
            for (var i = 0; i < 2; i++)
                w.WriteUInt32(TpmHandle.PasswordSession).WriteSized([]).WriteUInt8(0).WriteSized([]);
            w.WriteSized(nonce).WriteUInt16(TpmAlg.Null);
            w.PatchUInt32(2, (uint)w.Length);
            await File.WriteAllBytesAsync(ws.PathOf($"{id}.cmd"), w.ToArray(), ct);
            await ws.Tpm.Tpm2Async("tpm2_send", ["-o", $"{id}.rsp", $"{id}.cmd"], ct, ws.Dir);
        }
        finally
        {
            await ws.Tpm.Tpm2Async("tpm2_flushcontext", ["-t"], ct, ws.Dir);
        }
        var rsp = ws.Read($"{id}.rsp");
        var r = new TpmReader(rsp);
        r.ReadUInt16();
        r.ReadUInt32();
        Assert.Equal(0u, r.ReadUInt32());   // TPM_RC_SUCCESS
        var parameterSize = (int)r.ReadUInt32();
        var start = r.Offset;
        var attest = r.ReadSized().ToArray();
        var signature = r.ReadBytes(parameterSize - (r.Offset - start)).ToArray();
        return (attest, signature);
    }

    /// <summary>TPM2_Sign by <paramref name="keyContext"/> of a SHA-256 <paramref name="digest"/> (not hashed again): the TPMT_SIGNATURE.</summary>
    public static async Task<byte[]> SignDigestAsync(this TpmWorkspace ws, string keyContext, byte[] digest)
    {
        var id = Guid.NewGuid().ToString("N");
        await File.WriteAllBytesAsync(ws.PathOf($"{id}.digest"), digest, TestContext.Current.CancellationToken);
        await ws.RunAsync("tpm2_sign", "-c", keyContext, "-g", "sha256", "-d", "-o", $"{id}.sig", $"{id}.digest");
        return ws.Read($"{id}.sig");
    }
}
