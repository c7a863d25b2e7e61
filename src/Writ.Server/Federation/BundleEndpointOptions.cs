using System.Net;
using Writ.Server.Configuration;

namespace Writ.Server.Federation;

/// <summary>
/// <c>federation.bundle_endpoint.*</c>: where this server serves its trust domain's bundle to federated domains, and
/// with which profile — https_web with a configured certificate and key, else https_spiffe (the server's own SVID).
/// </summary>
public sealed record BundleEndpointOptions(IPEndPoint Bind, string? CertificateFile, string? KeyFile)
{
    public string Profile => CertificateFile is null ? Storage.FederationRelationship.HttpsSpiffe : Storage.FederationRelationship.HttpsWeb;

    /// <summary>Null when <c>federation.bundle_endpoint.bind</c> is empty (no endpoint); errors go to the sources.</summary>
    public static BundleEndpointOptions? Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        const string bindKey = "federation.bundle_endpoint.bind", certKey = "federation.bundle_endpoint.certificate", keyKey = "federation.bundle_endpoint.key";
        var text = c.Get(bindKey) ?? "";
        var cert = c.Get(certKey) is { Length: > 0 } cf ? cf : null;
        var key = c.Get(keyKey) is { Length: > 0 } kf ? kf : null;
        if (text.Length == 0)
        {
            if (cert is not null || key is not null)
            {
                c.Errors.Add($"{c.Describe(certKey)} and {keyKey} need {bindKey}: set the address the bundle endpoint listens on");
            }
            return null;
        }
        if (!IPEndPoint.TryParse(text, out var bind) || bind.Port == 0 && !text.EndsWith(":0", StringComparison.Ordinal))
        {
            c.Errors.Add($"{c.Describe(bindKey)} must be HOST:PORT with an IP address, e.g. 0.0.0.0:8443, got '{text}'");
            return null;
        }
        if ((cert is null) != (key is null))
        {
            c.Errors.Add($"'{certKey}' and '{keyKey}' go together (profile https_web): give both, or neither for https_spiffe");
            return null;
        }
        foreach (var (k, p) in new[] { (certKey, cert), (keyKey, key) })
        {
            if (p is not null && !File.Exists(p))
            {
                c.Errors.Add($"{c.Describe(k)}: file '{p}' does not exist");
            }
        }
        return new BundleEndpointOptions(bind, cert is null ? null : Path.GetFullPath(cert), key is null ? null : Path.GetFullPath(key));
    }
}
