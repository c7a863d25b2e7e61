using Writ.Tests.Shared;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>The shared swtpm fixture itself: a manufactured TPM with EK certificates, its PCRs readable and extendable by tpm2-tools.</summary>
public class SwtpmFixtureTests
{
    [Fact]
    public async Task A_manufactured_swtpm_has_ek_certificates_and_extendable_pcrs()
    {
        using var ca = SwtpmCa.Create();
        await using var tpm = await Swtpm.StartAsync(ca, TestContext.Current.CancellationToken);
        var nv = await tpm.Tpm2Async("tpm2_nvreadpublic", [], TestContext.Current.CancellationToken);
        Assert.Contains("0x1c00002", nv, StringComparison.Ordinal);   // RSA EK certificate
        Assert.Contains("0x1c00016", nv, StringComparison.Ordinal);   // ECC EK certificate
        var before = await tpm.Tpm2Async("tpm2_pcrread", ["sha256:14"], TestContext.Current.CancellationToken);
        await tpm.ExtendPcrAsync(14, "writ test", TestContext.Current.CancellationToken);
        var after = await tpm.Tpm2Async("tpm2_pcrread", ["sha256:14"], TestContext.Current.CancellationToken);
        Assert.NotEqual(before, after);
        Assert.True(File.Exists(ca.RootCertificatePath));
    }

    [Fact]
    public async Task A_swtpm_without_a_ca_has_no_ek_certificate()
    {
        await using var tpm = await Swtpm.StartAsync(null, TestContext.Current.CancellationToken);
        var nv = await tpm.Tpm2Async("tpm2_nvreadpublic", [], TestContext.Current.CancellationToken);
        Assert.DoesNotContain("0x1c00002", nv, StringComparison.Ordinal);
    }
}
