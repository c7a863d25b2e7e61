namespace Writ.Workload.AspNetCore;

/// <summary>Options of the call authorization policy (<see cref="WritCallAuthorizationExtensions.RequireWritCall"/>).</summary>
public sealed class WritCallAuthorizationOptions
{
    /// <summary>The local agent's socket (<c>unix:///run/writ/agent.sock</c>). Default: the <c>SPIFFE_ENDPOINT_SOCKET</c> environment variable.</summary>
    public string? Endpoint { get; set; }

    /// <summary>The destination's SPIFFE ID (the resource of the decision). Default (null): the agent uses this service's own identity.</summary>
    public string? Resource { get; set; }

    /// <summary>How long to wait for the agent before failing closed (503). Default 2 s.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Request headers never sent to the agent (case-insensitive). Default: Authorization, Cookie, Proxy-Authorization
    /// (the JWT-SVID travels in its own field). The agent further keeps only the headers of its <c>authz_headers</c>.
    /// </summary>
    public ISet<string> ExcludedHeaders { get; } = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "Authorization", "Cookie", "Proxy-Authorization" };
}
