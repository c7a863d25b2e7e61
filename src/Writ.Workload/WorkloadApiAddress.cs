namespace Writ.Workload;

/// <summary>
/// The Workload API endpoint address: <c>unix:///path/to/socket</c> or <c>unix:/path/to/socket</c> (the SPIFFE Workload
/// Endpoint forms), read from an explicit option or the <c>SPIFFE_ENDPOINT_SOCKET</c> environment variable.
/// </summary>
public static class WorkloadApiAddress
{
    /// <summary>The environment variable SPIFFE names for the Workload API address.</summary>
    public const string EnvironmentVariable = "SPIFFE_ENDPOINT_SOCKET";

    /// <summary>
    /// The Unix socket path of <paramref name="address"/>, or of <c>SPIFFE_ENDPOINT_SOCKET</c> when it is null or empty.
    /// Throws <see cref="WorkloadApiException"/> (WRIT-SDK-ADDRESS) when there is no address or it is not a unix address.
    /// </summary>
    public static string ResolveSocketPath(string? address = null)
    {
        var text = string.IsNullOrWhiteSpace(address) ? Environment.GetEnvironmentVariable(EnvironmentVariable) : address;
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new WorkloadApiException(WorkloadErrors.Address,
                $"no Workload API address: set {EnvironmentVariable} (e.g. unix:///run/writ/agent.sock) or give the address in the options");
        }
        if (TryParse(text, out var path, out var error))
        {
            return path;
        }
        throw new WorkloadApiException(WorkloadErrors.Address, error);
    }

    /// <summary>Parses <paramref name="address"/> into a socket path; false with a one-line reason otherwise.</summary>
    public static bool TryParse(string? address, out string path, out string error)
    {
        path = "";
        error = "";
        var text = address?.Trim() ?? "";
        string rest;
        if (text.StartsWith("unix://", StringComparison.Ordinal))
        {
            rest = text["unix://".Length..];
            if (!rest.StartsWith('/'))
            {
                // unix://host/path: a host part is meaningless for a Unix socket (go-spiffe refuses it too).
                error = $"Workload API address '{Shorten(text)}' has an authority part: use unix:///absolute/path";
                return false;
            }
        }
        else if (text.StartsWith("unix:", StringComparison.Ordinal))
        {
            rest = text["unix:".Length..];
        }
        else
        {
            error = $"Workload API address '{Shorten(text)}' is not a unix socket address: use unix:///absolute/path (SPIFFE_ENDPOINT_SOCKET)";
            return false;
        }
        if (rest.Length == 0 || rest[0] != '/' || rest.Length < 2)
        {
            error = $"Workload API address '{Shorten(text)}' has no absolute socket path: use unix:///absolute/path";
            return false;
        }
        if (rest.Contains('?', StringComparison.Ordinal) || rest.Contains('#', StringComparison.Ordinal))
        {
            error = $"Workload API address '{Shorten(text)}' has a query or fragment: use unix:///absolute/path";
            return false;
        }
        if (rest.Contains('\0', StringComparison.Ordinal) || rest.Length > 4096)
        {
            error = "Workload API address has an invalid socket path: use unix:///absolute/path";
            return false;
        }
        path = rest;
        return true;
    }

    private static string Shorten(string s) => s.Length <= 120 ? s : s[..120] + "…";
}
