using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Configuration;
using Writ.Server.NodeAttestation;

namespace Writ.Server.Tests.NodeAttestation.Tpm;

/// <summary>The tpm.* configuration keys: defaults, what enables the attestor, and the start-up refusals with their codes.</summary>
public sealed class TpmOptionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-tpm-options-").FullName;

    private static (ServerOptions? Options, IReadOnlyList<string> Errors) Build(params (string Key, string Value)[] values)
    {
        var c = new ConfigSources(ServerConfigLoader.Keys);
        c.Set("trust_domain", "example.org", "test");
        foreach (var (k, v) in values)
            c.Set(k, v, $"flag --{k.Replace('.', '-').Replace('_', '-')}");
        var o = ServerConfigLoader.Build(c, out var errors);
        return (o, errors);
    }

    private string CaDir()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=Test TPM Manufacturer Root", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(10));
        var dir = Directory.CreateDirectory(Path.Combine(_dir, "ca")).FullName;
        File.WriteAllText(Path.Combine(dir, "root.pem"), cert.ExportCertificatePem());
        File.WriteAllBytes(Path.Combine(dir, "root.der"), cert.Export(X509ContentType.Cert));
        return dir;
    }

    [Fact]
    public void Without_tpm_keys_the_attestor_is_off()
    {
        var (o, errors) = Build();
        Assert.Empty(errors);
        Assert.False(o!.Tpm.Enabled);
    }

    [Fact]
    public void An_ek_ca_dir_enables_the_attestor_with_the_documented_defaults()
    {
        var (o, errors) = Build(("tpm.ek_ca_dir", CaDir()));
        Assert.Empty(errors);
        var tpm = o!.Tpm;
        Assert.True(tpm.Enabled);
        Assert.Equal(2, tpm.EkCaCertificates.Count);   // PEM and DER alike
        Assert.Equal(TimeSpan.FromSeconds(60), tpm.RequoteInterval);
        Assert.Equal(TimeSpan.FromSeconds(10), tpm.RequoteGrace);
        Assert.Equal(DriftAction.Quarantine, tpm.DriftAction);
        Assert.Equal("sha256", tpm.PcrBank);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7, 14], tpm.PcrIndices);
    }

    [Fact]
    public void Ek_hashes_alone_enable_the_attestor_and_the_other_keys_are_read()
    {
        var hash = new string('A', 64);
        var (o, errors) = Build(("tpm.ek_hashes", $"{hash}, {new string('0', 64)}"), ("tpm.requote_interval", "30s"), ("tpm.requote_grace", "5s"),
            ("tpm.drift_action", "revoke"), ("tpm.pcrs", "sha384:7,0"));
        Assert.Empty(errors);
        Assert.Contains(new string('a', 64), o!.Tpm.EkHashes);
        Assert.Equal(2, o.Tpm.EkHashes.Count);
        Assert.Equal(TimeSpan.FromSeconds(30), o.Tpm.RequoteInterval);
        Assert.Equal(TimeSpan.FromSeconds(5), o.Tpm.RequoteGrace);
        Assert.Equal(DriftAction.Revoke, o.Tpm.DriftAction);
        Assert.Equal("sha384", o.Tpm.PcrBank);
        Assert.Equal([0, 7], o.Tpm.PcrIndices);
    }

    [Fact]
    public void A_tpm_key_without_ek_trust_refuses_the_start_with_its_code()
    {
        var (o, errors) = Build(("tpm.requote_interval", "30s"));
        Assert.Null(o);
        var e = Assert.Single(errors);
        Assert.StartsWith(TpmOptions.NoEkTrustCode + ": ", e, StringComparison.Ordinal);
        Assert.Contains("--tpm-requote-interval", e, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_or_missing_ca_dir_refuses_the_start_with_its_code()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        Assert.StartsWith(TpmOptions.EkCaDirCode + ": ", Assert.Single(Build(("tpm.ek_ca_dir", empty)).Errors), StringComparison.Ordinal);
        Assert.StartsWith(TpmOptions.EkCaDirCode + ": ", Assert.Single(Build(("tpm.ek_ca_dir", Path.Combine(_dir, "nope"))).Errors), StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(empty, "notes.txt"), "not a certificate");
        Assert.StartsWith(TpmOptions.EkCaDirCode + ": ", Assert.Single(Build(("tpm.ek_ca_dir", empty)).Errors), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("tpm.ek_hashes", "abc")]
    [InlineData("tpm.pcrs", "sha256:0,24")]
    [InlineData("tpm.pcrs", "sha256:1,1")]
    [InlineData("tpm.pcrs", "md5:0")]
    [InlineData("tpm.pcrs", "0,1,2")]
    [InlineData("tpm.drift_action", "ignore")]
    [InlineData("tpm.requote_interval", "0s")]
    public void Bad_values_are_refused_naming_the_key(string key, string value)
    {
        (string, string)[] values = key == "tpm.ek_hashes" ? [(key, value)] : [("tpm.ek_hashes", new string('a', 64)), (key, value)];
        var (o, errors) = Build(values);
        Assert.Null(o);
        Assert.Contains(errors, e => e.Contains($"'{key}'", StringComparison.Ordinal));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
