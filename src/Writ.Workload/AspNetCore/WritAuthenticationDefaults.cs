namespace Writ.Workload.AspNetCore;

/// <summary>Scheme names and claim types of Writ's ASP.NET Core authentication.</summary>
public static class WritAuthenticationDefaults
{
    /// <summary>The default name of the X.509-SVID scheme (<see cref="WritAuthenticationExtensions.AddWritX509Svid(Microsoft.AspNetCore.Authentication.AuthenticationBuilder, Action{WritX509SvidOptions})"/>).</summary>
    public const string X509SvidScheme = "WritX509Svid";

    /// <summary>The default name of the JWT-SVID scheme (<see cref="WritAuthenticationExtensions.AddWritJwtSvid(Microsoft.AspNetCore.Authentication.AuthenticationBuilder, Action{WritJwtSvidOptions})"/>).</summary>
    public const string JwtSvidScheme = "WritJwtSvid";
}

/// <summary>The claims a Writ scheme puts on the caller's principal (beside <c>ClaimTypes.NameIdentifier</c> = the SPIFFE ID).</summary>
public static class WritClaimTypes
{
    /// <summary>The caller's SPIFFE ID, <c>spiffe://td/path</c>.</summary>
    public const string SpiffeId = "spiffe_id";

    /// <summary>The caller's trust domain name.</summary>
    public const string TrustDomain = "spiffe_trust_domain";

    /// <summary>The serial of the caller's X.509-SVID (upper-case hex), X.509 scheme only.</summary>
    public const string Serial = "x509_serial";

    /// <summary>The <c>jti</c> of the caller's JWT-SVID, JWT scheme only (when the token has one).</summary>
    public const string Jti = "jti";

    /// <summary>Which credential proved the identity: <c>x509-svid</c> or <c>jwt-svid</c>.</summary>
    public const string Credential = "writ_credential";

    /// <summary>True when the JWT-SVID was bound (<c>cnf</c> <c>x5t#S256</c>) to the client certificate of the connection.</summary>
    public const string Bound = "writ_bound";

    /// <summary>Value of <see cref="Credential"/> for an X.509-SVID caller.</summary>
    public const string X509Credential = "x509-svid";

    /// <summary>Value of <see cref="Credential"/> for a JWT-SVID caller.</summary>
    public const string JwtCredential = "jwt-svid";
}
