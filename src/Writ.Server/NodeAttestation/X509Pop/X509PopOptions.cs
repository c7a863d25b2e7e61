using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Protocol;
using Writ.Server.Configuration;

namespace Writ.Server.NodeAttestation.X509Pop;

/// <summary>
/// The x509pop attestor's configuration: enabled when <c>x509pop.ca_bundle</c> is set. The template is checked with the
/// rest of the configuration; the bundle is read at start-up (<see cref="LoadCaBundle"/>), before any key is made.
/// </summary>
public sealed record X509PopOptions(string CaBundlePath, X509PopAgentPath AgentPath)
{
    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("x509pop.ca_bundle", "", "PEM file of the root CA certificates node certificates must chain to; when set, agents may attest with x509pop (--node-attestor x509pop)."),
        new("x509pop.agent_path_template", X509PopAgentPath.DefaultTemplate,
            "Agent ID path after /writ/agent/x509pop/: {fingerprint_sha1}, {fingerprint_sha256}, {subject_cn}, {serialnumber} and literal path characters."),
    ];

    /// <summary>The options, or null when x509pop is not configured; problems go to <paramref name="c"/>'s errors.</summary>
    public static X509PopOptions? Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var template = c.Get("x509pop.agent_path_template") ?? X509PopAgentPath.DefaultTemplate;
        if (!X509PopAgentPath.TryParse(template, out var path, out var error))
        {
            c.Errors.Add($"{c.Describe("x509pop.agent_path_template")} '{template}' {error}");
        }
        if (c.Get("x509pop.ca_bundle") is not { Length: > 0 } bundle)
        {
            return null;
        }
        return path is null ? null : new X509PopOptions(Path.GetFullPath(bundle), path);
    }

    /// <summary>
    /// The trusted root CAs from <see cref="CaBundlePath"/>. An unreadable file, one without a certificate, or a
    /// certificate that is no self-signed CA refuses the start (<see cref="X509PopCodes.CaBundle"/>).
    /// </summary>
    public X509Certificate2Collection LoadCaBundle()
    {
        var cas = new X509Certificate2Collection();
        try
        {
            cas.ImportFromPem(File.ReadAllText(CaBundlePath));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Refused($"cannot be read ({e.Message})");
        }
        catch (CryptographicException)
        {
            throw Refused("holds a CERTIFICATE block that is not a valid certificate");
        }
        if (cas.Count == 0)
        {
            throw Refused("holds no PEM CERTIFICATE");
        }
        foreach (var ca in cas)
        {
            // Roots only: the platform's chain builder (OpenSSL) does not anchor a chain at an intermediate.
            var why = ca.Extensions["2.5.29.19"] is not { } bc || !new X509BasicConstraintsExtension(bc, bc.Critical).CertificateAuthority
                ? "which is not a CA certificate (basicConstraints CA:TRUE)"
                : !ca.SubjectName.RawData.AsSpan().SequenceEqual(ca.IssuerName.RawData) ? "which is not a self-signed root CA (x509pop trusts roots; the agent sends the intermediates)"
                : null;
            if (why is not null)
            {
                var subject = ca.Subject;
                foreach (var c in cas)
                {
                    c.Dispose();
                }
                throw Refused($"holds '{subject}', {why}");
            }
        }
        return cas;
    }

    private StartupRefusedException Refused(string why) => new(X509PopCodes.CaBundle,
        $"x509pop.ca_bundle '{CaBundlePath}' {why}: give a PEM file of the root CA certificates of the machine PKI");
}
