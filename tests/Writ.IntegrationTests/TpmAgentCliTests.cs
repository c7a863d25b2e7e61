using System.Security.Cryptography;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>`writ agent run --node-attestor tpm`: bad TPM settings and an unusable TPM are one line with a code, no stack trace.</summary>
public sealed class TpmAgentCliTests
{
    [Fact]
    public async Task Bad_tpm_settings_and_an_unreachable_tpm_are_one_clear_line()
    {
        using var dir = new TempDir();
        using (var key = ECDsa.Create(ECCurve.NamedCurves.nistP256))
        {
            using var ca = Writ.Spiffe.X509.X509Authorities.CreateSelfSignedCa(Writ.Spiffe.TrustDomain.Parse("example.org"), key,
                DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
            File.WriteAllText(dir["bundle.pem"], ca.ExportCertificatePem());
        }
        string[] Base(string name) => ["agent", "run", "--server", "127.0.0.1:1", "--trust-bundle", dir["bundle.pem"], "--data-dir", dir[name], "--socket", dir[name + ".sock"]];

        var unknown = await Proc.WritAsync([.. Base("a1"), "--node-attestor", "tmp"]);
        Expect.OneLineError(unknown, "must be one of join_token, tpm");
        Assert.Equal(2, unknown.ExitCode);
        var badAddress = await Proc.WritAsync([.. Base("a2"), "--node-attestor", "tpm", "--tpm", "http://127.0.0.1:2321"]);
        Expect.OneLineError(badAddress, "tcp://HOST:PORT");
        Assert.Equal(2, badAddress.ExitCode);
        var noLog = await Proc.WritAsync([.. Base("a3"), "--node-attestor", "tpm", "--tpm", "tcp://127.0.0.1:2321", "--tpm-event-log", dir["no-such-log"]]);
        Expect.OneLineError(noLog, dir["no-such-log"]);
        Assert.Equal(2, noLog.ExitCode);

        int port;
        using (var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            l.Start();
            port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        }
        var closed = await Proc.WritAsync([.. Base("a4"), "--node-attestor", "tpm", "--tpm", $"tcp://127.0.0.1:{port}"]);
        Expect.OneLineError(closed, $"WRIT-AGENT-TPM: cannot reach the TPM at tcp://127.0.0.1:{port}: connection refused");
        Assert.Equal(1, closed.ExitCode);
        var noDevice = await Proc.WritAsync([.. Base("a5"), "--node-attestor", "tpm", "--tpm", dir["tpmrm9"]]);
        Expect.OneLineError(noDevice, $"WRIT-AGENT-TPM: cannot open the TPM device {dir["tpmrm9"]}: it does not exist");
    }
}
