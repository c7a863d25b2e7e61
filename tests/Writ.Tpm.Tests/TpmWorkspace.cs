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
