using System.Collections.Frozen;

namespace Writ.Protocol.Evidence;

/// <summary>
/// The selector types Writ's built-in workload attestors emit, in one place the agent (which runs the attestors) and
/// the server (which validates registration entries and does not load attestors) share. A selector type here is the
/// attestor's name and the selector's key, <c>unix:uid</c> of <c>unix:uid:1000</c>: an entry with any other type
/// could never match, so the server refuses it unless the caller says it is for an attestor plugin the server does
/// not know (<c>--allow-unknown-selector-type</c>). A built-in attestor that adds a selector adds its type here.
/// </summary>
public static class SelectorTypes
{
    public static readonly FrozenSet<string> BuiltIn = FrozenSet.Create(StringComparer.Ordinal,
    [
        // unix attestor (docs/selectors.md)
        "unix:uid", "unix:gid", "unix:user", "unix:group", "unix:supplementary_gid", "unix:supplementary_group",
        "unix:path", "unix:sha256",
        // cgroup attestor
        "cgroup:path", "container:id", "container:runtime", "k8s:pod-uid",
        // k8s attestor (the pod and container from the kubelet; k8s:pod-uid above too)
        "k8s:ns", "k8s:sa", "k8s:pod-name", "k8s:pod-label", "k8s:pod-owner", "k8s:container-name", "k8s:container-image",
        "k8s:container-image-id", "k8s:node-name", "k8s:image-signed-by",
        // CI logins: a job's OIDC token (server-side, docs/ci.md)
        "oidc:iss", "oidc:sub", "oidc:claim",
    ]);

    /// <summary>The type of a selector given as attestor type and value: <c>("unix", "uid:1000")</c> → <c>unix:uid</c>.</summary>
    public static string TypeOf(string type, string value)
    {
        var colon = value.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? type : $"{type}:{value[..colon]}";
    }

    public static bool IsBuiltIn(string type, string value) => BuiltIn.Contains(TypeOf(type, value));

    /// <summary>The built-in type closest to a misspelt one (edit distance at most 3), or null.</summary>
    public static string? Suggest(string selectorType)
    {
        string? best = null;
        var bestDistance = 4;
        foreach (var known in BuiltIn.Order(StringComparer.Ordinal))
        {
            var d = Distance(selectorType, known);
            if (d < bestDistance)
            {
                (best, bestDistance) = (known, d);
            }
        }
        return best;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
