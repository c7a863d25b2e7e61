namespace Writ.Workload.AspNetCore;

/// <summary>
/// Why a Writ scheme refused a caller: a stable code (<c>WRIT-SDK-AUTH-…</c>) and a one-line reason that is safe to send
/// back (no token, no key material, no stack trace). Carried in <c>AuthenticateResult.Failure</c>.
/// </summary>
public sealed class WritAuthFailure(string code, string reason) : Exception($"{code}: {reason}")
{
    /// <summary>The stable code, e.g. <c>WRIT-SDK-AUTH-REVOKED</c>.</summary>
    public string Code { get; } = code;

    /// <summary>The one-line reason (without the code).</summary>
    public string Reason { get; } = reason;

    /// <summary>The line sent to the caller: <c>CODE: reason</c>, control characters removed, at most 300 characters.</summary>
    public string OneLine => Sanitize($"{Code}: {Reason}");

    internal static string Sanitize(string text)
    {
        var chars = text.Select(c => char.IsControl(c) ? ' ' : c).ToArray();
        var line = new string(chars);
        return line.Length <= 300 ? line : line[..297] + "...";
    }
}

/// <summary>The stable codes of Writ's ASP.NET Core authentication and authorization (rows in docs/errors.md).</summary>
public static class WritAuthCodes
{
    /// <summary>The X.509 scheme ran on a connection without a client certificate.</summary>
    public const string NoClientCertificate = "WRIT-SDK-AUTH-NO-CLIENT-CERT";

    /// <summary>The client certificate is not a valid X.509-SVID of a trusted trust domain (chain, expiry, structure).</summary>
    public const string InvalidX509Svid = "WRIT-SDK-AUTH-X509-INVALID";

    /// <summary>The JWT-SVID failed validation (signature, audience, expiry, alg, shape).</summary>
    public const string InvalidJwtSvid = "WRIT-SDK-AUTH-JWT-INVALID";

    /// <summary>The Authorization header is not one <c>Bearer</c> token.</summary>
    public const string MalformedAuthorization = "WRIT-SDK-AUTH-MALFORMED";

    /// <summary>The caller's SPIFFE ID is verified but the scheme's authorizer refused it.</summary>
    public const string NotAuthorized = "WRIT-SDK-AUTH-NOT-AUTHORIZED";

    /// <summary>The credential (serial or jti) is in the revocation set the agent pushed.</summary>
    public const string Revoked = "WRIT-SDK-AUTH-REVOKED";

    /// <summary>A certificate-bound JWT-SVID was presented over a connection whose client certificate is another one.</summary>
    public const string BindingMismatch = "WRIT-SDK-AUTH-BINDING-MISMATCH";

    /// <summary>A certificate-bound JWT-SVID was presented without mTLS (and the options do not allow it).</summary>
    public const string BindingRequiresMtls = "WRIT-SDK-AUTH-BINDING-NO-MTLS";

    /// <summary>A bearer (unbound) JWT-SVID was presented and the options only accept bound tokens.</summary>
    public const string BearerNotAllowed = "WRIT-SDK-AUTH-BEARER-NOT-ALLOWED";

    /// <summary>The JWT-SVID was first presented by another presenter.</summary>
    public const string Replayed = "WRIT-SDK-AUTH-REPLAYED";

    /// <summary>The local agent denied the call (Writ::Action::"call").</summary>
    public const string CallDenied = "WRIT-SDK-AUTH-CALL-DENIED";

    /// <summary>The local agent could not be asked; the call is refused (fail closed).</summary>
    public const string AgentUnavailable = "WRIT-SDK-AUTH-AGENT-UNAVAILABLE";
}
