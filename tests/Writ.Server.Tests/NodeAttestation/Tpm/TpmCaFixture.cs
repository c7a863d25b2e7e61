using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Configuration;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.NodeAttestation.Tpm;

/// <summary>
/// Two TPM manufacturers for a test class: <see cref="Ca"/>, whose CA directory the server trusts, and
/// <see cref="OtherCa"/>, which it does not. Each is made by manufacturing one swtpm with it.
/// </summary>
public sealed class TpmCaFixture : IAsyncLifetime
{
    /// <summary>
    /// The server's (fake) clock for TPM tests: later than any EK certificate a test manufactures (their validity starts
    /// when swtpm_setup runs), a whole second as the CA tests need.
    /// </summary>
    public static readonly DateTimeOffset ClockStart = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.AddHours(2).ToUnixTimeSeconds());

    public SwtpmCa Ca { get; } = SwtpmCa.Create();

    public SwtpmCa OtherCa { get; } = SwtpmCa.Create();

    public string CaDirectory => Path.Combine(Ca.Directory, "trusted");

    public async ValueTask InitializeAsync()
    {
        await using (await Swtpm.StartAsync(Ca, TestContext.Current.CancellationToken))
        {
        }
        await using (await Swtpm.StartAsync(OtherCa, TestContext.Current.CancellationToken))
        {
        }
        Ca.WriteCaDirectory(CaDirectory);
    }

    /// <summary>The server's tpm options: trust <see cref="Ca"/>'s directory (and these EK hashes), default PCRs and timings.</summary>
    public TpmOptions Options(bool trustCaDirectory = true, params string[] ekHashes)
    {
        var c = new ConfigSources(ServerConfigLoader.Keys);
        c.Set("trust_domain", "example.org", "test");
        if (trustCaDirectory)
            c.Set("tpm.ek_ca_dir", CaDirectory, "test");
        if (ekHashes.Length > 0)
            c.Set("tpm.ek_hashes", string.Join(',', ekHashes), "test");
        var o = ServerConfigLoader.Build(c, out var errors) ?? throw new InvalidOperationException(string.Join("; ", errors));
        return o.Tpm;
    }

    /// <summary>An EK certificate for <paramref name="rsaEk"/>'s key signed by <see cref="Ca"/>'s issuer, valid only in the given window
    /// (starting no earlier than the issuer).</summary>
    public byte[] EkCertificate(RSA rsaEk, DateTimeOffset notBefore, DateTimeOffset notAfter, X509Extension? extra = null)
    {
        using var issuer = X509Certificate2.CreateFromPemFile(Ca.IssuerCertificatePath, Path.Combine(Ca.StateDirectory, "signkey.pem"));
        var req = new CertificateRequest("CN=unknown", rsaEk, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        if (extra is not null)
            req.CertificateExtensions.Add(extra);
        var issuedFrom = new DateTimeOffset(issuer.NotBefore.ToUniversalTime());
        using var cert = req.Create(issuer, notBefore < issuedFrom ? issuedFrom : notBefore, notAfter, [1, 2, 3, 4, 5, 6, 7, 8]);
        return cert.RawData;
    }

    public ValueTask DisposeAsync()
    {
        Ca.Dispose();
        OtherCa.Dispose();
        return ValueTask.CompletedTask;
    }
}
