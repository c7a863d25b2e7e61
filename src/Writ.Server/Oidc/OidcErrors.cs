using Writ.Protocol.Errors;

namespace Writ.Server.Oidc;

/// <summary>
/// The stable codes of a refused OIDC token (docs/errors.md, "OIDC tokens"). Every refusal is Unauthenticated except when
/// the issuer's keys cannot be had (<see cref="IssuerUnreachable"/>, <see cref="IssuerMisconfigured"/>: Unavailable).
/// Messages never carry the token or any of its claims' values beyond the issuer URL the operator configured.
/// </summary>
public static class OidcErrors
{
    public const string TooLarge = "WRIT-OIDC-TOO-LARGE";
    public const string Malformed = "WRIT-OIDC-MALFORMED";
    public const string AlgRefused = "WRIT-OIDC-ALG-REFUSED";
    public const string UnknownIssuer = "WRIT-OIDC-UNKNOWN-ISSUER";
    public const string WrongIssuer = "WRIT-OIDC-WRONG-ISSUER";
    public const string UnknownKey = "WRIT-OIDC-UNKNOWN-KEY";
    public const string BadSignature = "WRIT-OIDC-BAD-SIGNATURE";
    public const string Expired = "WRIT-OIDC-EXPIRED";
    public const string NotYetValid = "WRIT-OIDC-NOT-YET-VALID";
    public const string WrongAudience = "WRIT-OIDC-WRONG-AUDIENCE";
    public const string NoExpiry = "WRIT-OIDC-NO-EXPIRY";
    public const string IssuerUnreachable = "WRIT-OIDC-ISSUER-UNREACHABLE";
    public const string IssuerMisconfigured = "WRIT-OIDC-ISSUER-MISCONFIGURED";

    internal static WritException Refused(string code, string message) => new(code, WritErrorKind.Unauthenticated, message);

    internal static WritException Unavailable(string code, string message) => new(code, WritErrorKind.Unavailable, message);
}
