namespace Writ.Workload;

/// <summary>The stable codes of <see cref="WorkloadApiException"/> (docs/errors.md, "Workload SDK").</summary>
public static class WorkloadErrors
{
    /// <summary>The Workload API address is missing or not a unix socket address.</summary>
    public const string Address = "WRIT-SDK-ADDRESS";

    /// <summary>The first update did not arrive before the deadline.</summary>
    public const string Timeout = "WRIT-SDK-TIMEOUT";

    /// <summary>The Workload API refused: no identity issued to this process.</summary>
    public const string Denied = "WRIT-SDK-DENIED";

    /// <summary>The Workload API could not be reached or failed.</summary>
    public const string Unavailable = "WRIT-SDK-UNAVAILABLE";

    /// <summary>There is no (unexpired) X.509-SVID to present.</summary>
    public const string NoSvid = "WRIT-SDK-NO-SVID";

    /// <summary>The Workload API sent something this SDK cannot use (a malformed SVID, bundle or token).</summary>
    public const string Malformed = "WRIT-SDK-MALFORMED";

    /// <summary>A JWT-SVID was refused (by the agent's ValidateJWTSVID or local validation).</summary>
    public const string JwtInvalid = "WRIT-SDK-JWT-INVALID";

    /// <summary>The Workload API does not serve this call (an older agent, or another SPIFFE implementation).</summary>
    public const string Unsupported = "WRIT-SDK-UNSUPPORTED";
}
