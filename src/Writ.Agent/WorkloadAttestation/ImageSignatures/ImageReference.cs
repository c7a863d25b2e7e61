using System.Diagnostics.CodeAnalysis;
using System.Text.RegularExpressions;

namespace Writ.Agent.WorkloadAttestation.ImageSignatures;

/// <summary>
/// Where an image lives: its registry (as the OCI distribution API is reached, <c>host[:port]</c>) and repository, parsed
/// the way the container runtimes normalize a name: the first path component is a registry when it has a '.' or a ':'
/// or is <c>localhost</c>, else the image is on Docker Hub (<c>docker.io</c>, API host <c>registry-1.docker.io</c>, and a
/// single name gets <c>library/</c>). A tag or digest is dropped: the digest to check comes from the kubelet.
/// </summary>
public sealed partial record ImageReference(string Registry, string Repository)
{
    /// <summary>Docker Hub's name in image references and cosign payloads.</summary>
    public const string DockerHub = "docker.io";

    /// <summary>The host the distribution API of <see cref="Registry"/> is served on.</summary>
    public string ApiHost => Registry == DockerHub ? "registry-1.docker.io" : Registry;

    /// <summary><c>registry/repository</c>, the cache key and the name cosign's <c>docker-reference</c> must match.</summary>
    public override string ToString() => $"{Registry}/{Repository}";

    // The distribution spec's repository grammar: lower-case components separated by '/'.
    [GeneratedRegex(@"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$", RegexOptions.CultureInvariant)]
    private static partial Regex RepositoryPattern();

    // host[:port]: DNS labels or an IPv4 address; a bracketed IPv6 literal is refused (no registry names one).
    [GeneratedRegex(@"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?$", RegexOptions.CultureInvariant)]
    private static partial Regex HostPattern();

    /// <summary>Parses an image reference (<c>nginx</c>, <c>nginx:1.25</c>, <c>ghcr.io/org/app@sha256:…</c>,
    /// <c>registry.example:5000/team/app:1.2</c>); false with the reason for anything else.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out ImageReference? reference, [NotNullWhen(false)] out string? error)
    {
        reference = null;
        if (string.IsNullOrEmpty(text) || text.Length > 512)
        {
            error = "image reference is empty or longer than 512 characters";
            return false;
        }
        var name = text;
        var at = name.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
            name = name[..at];
        var slash = name.IndexOf('/', StringComparison.Ordinal);
        string registry;
        string path;
        if (slash > 0 && (name.AsSpan(0, slash).ContainsAny('.', ':') || name[..slash] == "localhost"))
        {
            registry = name[..slash];
            path = name[(slash + 1)..];
        }
        else
        {
            registry = DockerHub;
            path = name;
        }
        // A tag is after the last ':' of the path (a registry port was split off above).
        var colon = path.LastIndexOf(':');
        if (colon >= 0)
            path = path[..colon];
        if (registry is "index.docker.io" or "registry-1.docker.io")
            registry = DockerHub;
        if (registry == DockerHub && !path.Contains('/', StringComparison.Ordinal))
            path = "library/" + path;
        var portAt = registry.IndexOf(':', StringComparison.Ordinal);
        if (!HostPattern().IsMatch(registry) || (portAt >= 0 && int.Parse(registry.AsSpan(portAt + 1), System.Globalization.CultureInfo.InvariantCulture) is 0 or > 65535))
        {
            error = $"image reference '{text}' names an invalid registry host";
            return false;
        }
        if (!RepositoryPattern().IsMatch(path) || path.Length > 255)
        {
            error = $"image reference '{text}' names an invalid repository (lower-case letters, digits and . _ - separated by /)";
            return false;
        }
        reference = new ImageReference(registry.ToLowerInvariant(), path);
        error = null;
        return true;
    }
}
