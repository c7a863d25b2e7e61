namespace Writ.Server.Ci;

/// <summary>The stable codes of CI login refusals (docs/errors.md, "CI logins"); token validation has its own WRIT-OIDC-… codes.</summary>
public static class CiCodes
{
    /// <summary>The login request is malformed (no token, no CSR, too many or bad audiences).</summary>
    public const string BadRequest = "WRIT-CI-BAD-REQUEST";

    /// <summary>No registration entry parented to the server has all its selectors among the token's.</summary>
    public const string NoEntry = "WRIT-CI-NO-ENTRY";

    /// <summary>Entries of several SPIFFE IDs match the token and the login named none of them.</summary>
    public const string Ambiguous = "WRIT-CI-AMBIGUOUS";

    /// <summary>The token was already used for a login whose session is still open.</summary>
    public const string Replayed = "WRIT-CI-REPLAYED";

    /// <summary>The token's session ended (logout, expiry, denial): replayed after logout, or the SVID of an ended session.</summary>
    public const string SessionEnded = "WRIT-CI-SESSION-ENDED";

    /// <summary>A CI call without a client certificate.</summary>
    public const string NoCertificate = "WRIT-CI-NO-CERT";

    /// <summary>The client certificate does not chain to the bundle, or is expired.</summary>
    public const string CertificateRefused = "WRIT-CI-CERT-REFUSED";

    /// <summary>The client certificate is a valid SVID but not the SVID of a CI session (an agent's, a workload's).</summary>
    public const string NotCiSvid = "WRIT-CI-NOT-A-CI-SVID";

    /// <summary>The client certificate is revoked.</summary>
    public const string Revoked = "WRIT-CI-REVOKED";

    /// <summary>A session's SVID asked to end another session.</summary>
    public const string NotYourSession = "WRIT-CI-NOT-YOUR-SESSION";

    /// <summary>Policy refused one of the login's credentials: nothing is handed out.</summary>
    public const string Denied = "WRIT-CI-DENIED";

    /// <summary>The job token expires too soon for anything to be issued.</summary>
    public const string TokenExpiring = "WRIT-CI-TOKEN-EXPIRING";
}
