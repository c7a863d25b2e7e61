using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Writ.Spiffe;

namespace Writ.Server.NodeAttestation.X509Pop;

/// <summary>
/// <c>x509pop.agent_path_template</c>: the part of the agent ID after <c>/writ/agent/x509pop/</c>, made from the node
/// certificate. Placeholders <c>{fingerprint_sha1}</c> (the default: lowercase hex SHA-1 of the leaf DER, as SPIRE's),
/// <c>{fingerprint_sha256}</c>, <c>{subject_cn}</c>, <c>{serialnumber}</c> (lowercase hex); the rest is literal SPIFFE path
/// characters and '/'. Checked at start-up: a template without a placeholder would give every node the same ID.
/// </summary>
public sealed partial class X509PopAgentPath
{
    public const string DefaultTemplate = "{fingerprint_sha1}";

    public static readonly IReadOnlyList<string> Placeholders = ["fingerprint_sha1", "fingerprint_sha256", "subject_cn", "serialnumber"];

    private static readonly TrustDomain SampleTd = TrustDomain.Parse("example.org");

    private X509PopAgentPath(string template) => Template = template;

    public string Template { get; }

    [GeneratedRegex(@"\{([^{}]*)\}")]
    private static partial Regex PlaceholderRegex();

    /// <summary>Parses a template, or says (one line) why it cannot make good agent IDs.</summary>
    public static bool TryParse(string template, out X509PopAgentPath? path, out string? error)
    {
        path = null;
        var names = PlaceholderRegex().Matches(template).Select(m => m.Groups[1].Value).ToList();
        if (names.FirstOrDefault(n => !Placeholders.Contains(n)) is { } unknown)
        {
            error = $"has unknown placeholder '{{{unknown}}}': use {string.Join(", ", Placeholders.Select(p => "{" + p + "}"))}";
            return false;
        }
        if (names.Count == 0)
        {
            error = "has no placeholder, so every node would get the same agent ID: include {fingerprint_sha1}, {fingerprint_sha256}, {subject_cn} or {serialnumber}";
            return false;
        }
        // Literal text must be SPIFFE path characters: try it with placeholder values made of letters only.
        var sample = PlaceholderRegex().Replace(template, "a");
        if (!SpiffeId.TryFromPath(SampleTd, $"{NodeAttestationService.AgentPathPrefix}{X509PopNodeAttestor.TypeName}/{sample}", out _, out var pathError))
        {
            error = $"does not make a valid SPIFFE ID path ({pathError}): use letters, digits, '.', '-', '_' and '/' between the placeholders, without a leading or trailing '/'";
            return false;
        }
        path = new X509PopAgentPath(template);
        error = null;
        return true;
    }

    /// <summary>The agent ID for <paramref name="leaf"/>, or null with the reason when the certificate's values make no valid path.</summary>
    public SpiffeId? For(TrustDomain td, X509Certificate2 leaf, out string? error)
    {
        string? bad = null;
        var expanded = PlaceholderRegex().Replace(Template, m =>
        {
            var value = Value(m.Groups[1].Value, leaf);
            if (value is null)
            {
                bad ??= $"the certificate has no {m.Groups[1].Value.Replace('_', ' ')}";
                return "";
            }
            return value;
        });
        if (bad is not null)
        {
            error = bad;
            return null;
        }
        return SpiffeId.TryFromPath(td, $"{NodeAttestationService.AgentPathPrefix}{X509PopNodeAttestor.TypeName}/{expanded}", out var id, out error) ? id : null;
    }

    private static string? Value(string placeholder, X509Certificate2 leaf) => placeholder switch
    {
        "fingerprint_sha1" => Fingerprint(leaf),
        "fingerprint_sha256" => Convert.ToHexStringLower(SHA256.HashData(leaf.RawData)),
        "subject_cn" => X509PopNodeAttestor.CommonName(leaf),
        "serialnumber" => leaf.SerialNumber.ToLowerInvariant(),
        _ => null,
    };

    /// <summary>Lowercase hex SHA-1 of the DER certificate (the x509pop fingerprint of a node and of a CA).</summary>
    public static string Fingerprint(X509Certificate2 cert) => Convert.ToHexStringLower(SHA1.HashData(cert.RawData));
}
