using System.Net;
using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Workload.AspNetCore;

/// <summary>
/// The JWT-SVID scheme (<c>Authorization: Bearer</c>): signature with the JWT bundle of the token's trust domain, audience,
/// expiry, revocation (jti), authorizer, <c>cnf</c> binding to the connection's client certificate, then the replay cache.
/// Refusals are 401 with <c>WWW-Authenticate: Bearer error="invalid_token", error_description="…"</c>.
/// </summary>
public sealed class WritJwtSvidHandler(IOptionsMonitor<WritJwtSvidOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<WritJwtSvidOptions>(options, logger, encoder)
{
    private const string BearerPrefix = "Bearer ";

    /// <inheritdoc />
    protected override Task<AuthenticateResult> HandleAuthenticateAsync() => Task.FromResult(Authenticate());

    private AuthenticateResult Authenticate()
    {
        var headers = Request.Headers.Authorization;
        if (StringValues.IsNullOrEmpty(headers))
        {
            return AuthenticateResult.NoResult();
        }
        if (headers.Count != 1)
        {
            return Refuse("(unknown)", WritAuthCodes.MalformedAuthorization, "send exactly one 'Authorization: Bearer <JWT-SVID>' header");
        }
        var header = headers[0] ?? "";
        if (!header.StartsWith(BearerPrefix, StringComparison.OrdinalIgnoreCase))
        {
            // Another scheme's credentials (Basic, …) are not ours to judge; a malformed Bearer is.
            return header.StartsWith("Bearer", StringComparison.OrdinalIgnoreCase)
                ? Refuse("(unknown)", WritAuthCodes.MalformedAuthorization, "send exactly one 'Authorization: Bearer <JWT-SVID>' header")
                : AuthenticateResult.NoResult();
        }
        var token = header[BearerPrefix.Length..].Trim();
        if (token.Length == 0 || token.AsSpan().IndexOfAny(", \t") >= 0)
        {
            // Two tokens folded into one header line, or a token with spaces: not one JWT-SVID.
            return Refuse("(unknown)", WritAuthCodes.MalformedAuthorization, "send exactly one 'Authorization: Bearer <JWT-SVID>' header");
        }
        var now = TimeProvider.GetUtcNow();
        var audiences = Options.AdditionalAudiences.Prepend(Options.Audience!).ToArray();
        var validation = JwtSvidValidator.Validate(token, new JwtBundles(Options.Bundles!), audiences, now, Options.Validation);
        if (!validation.IsValid)
        {
            var subject = JwtSvidValidator.TryReadUnverified(token, out var unverified, out _) ? unverified.Id + " (unverified)" : "(unknown)";
            return Refuse(subject, WritAuthCodes.InvalidJwtSvid, validation.Error!);
        }
        var svid = validation.Svid!;
        var id = svid.Id.ToString();
        if (svid.Jti is { } jti && Options.Revocations?.IsJtiRevoked(jti) == true)
        {
            return Refuse(id, WritAuthCodes.Revoked, $"the JWT-SVID of {id} (jti {jti}) is revoked: the caller must fetch a new JWT-SVID");
        }
        if (Options.Authorizer!(svid.Id) is { } why)
        {
            return Refuse(id, WritAuthCodes.NotAuthorized, why);
        }
        var cert = Context.Connection.ClientCertificate;
        var bound = false;
        if (svid.IsBound)
        {
            if (cert is not null)
            {
                if (!svid.IsBoundTo(cert))
                {
                    return Refuse(id, WritAuthCodes.BindingMismatch, "the token is bound (cnf x5t#S256) to another certificate than this connection's client certificate: present it with the certificate it was issued for");
                }
                bound = true;
            }
            else if (!Options.AllowBoundTokenWithoutMtls)
            {
                return Refuse(id, WritAuthCodes.BindingRequiresMtls, "the token is bound (cnf x5t#S256) to a client certificate but this connection has none: call over mTLS with that certificate");
            }
        }
        else if (!Options.AllowBearerTokens)
        {
            return Refuse(id, WritAuthCodes.BearerNotAllowed, "this service accepts only certificate-bound JWT-SVIDs presented over mTLS: fetch a bound token");
        }
        var presenter = cert is not null
            ? "x5t#S256:" + CertificateBinding.Thumbprint(cert)
            : "addr:" + (Context.Connection.RemoteIpAddress ?? IPAddress.None);
        var replay = ReplayCache.Record(JwtReplayCache.KeyOf(svid), presenter, svid.ExpiresAt + Options.Validation.Leeway, now);
        if (replay.IsReplay)
        {
            return Refuse(id, WritAuthCodes.Replayed, "this token was first presented by another client: a JWT-SVID is used by the workload it was issued to only");
        }
        var claims = new List<Claim>
        {
            new(ClaimTypes.NameIdentifier, id, ClaimValueTypes.String, ClaimsIssuer),
            new(WritClaimTypes.SpiffeId, id, ClaimValueTypes.String, ClaimsIssuer),
            new(WritClaimTypes.TrustDomain, svid.Id.TrustDomain.Name, ClaimValueTypes.String, ClaimsIssuer),
            new(WritClaimTypes.Credential, WritClaimTypes.JwtCredential, ClaimValueTypes.String, ClaimsIssuer),
            new(WritClaimTypes.Bound, bound ? "true" : "false", ClaimValueTypes.Boolean, ClaimsIssuer),
        };
        if (svid.Jti is { } j)
        {
            claims.Add(new Claim(WritClaimTypes.Jti, j, ClaimValueTypes.String, ClaimsIssuer));
        }
        var identity = new ClaimsIdentity(claims, Scheme.Name, ClaimTypes.NameIdentifier, ClaimTypes.Role);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name));
    }

    private JwtReplayCache ReplayCache => Options.ReplayCache!;

    private AuthenticateResult Refuse(string caller, string code, string reason)
    {
        AspNetCoreLog.JwtCallerRefused(Logger, Scheme.Name, caller, code, reason);
        return AuthenticateResult.Fail(new WritAuthFailure(code, reason));
    }

    /// <inheritdoc />
    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var result = await HandleAuthenticateOnceSafeAsync();
        if (result.Failure is WritAuthFailure failure)
        {
            var description = Quote(failure.OneLine);
            await ChallengeWriter.WriteAsync(Context, failure, $"Bearer error=\"invalid_token\", error_description=\"{description}\"");
            return;
        }
        // No credentials at all (RFC 6750 §3.1: no error code then).
        await ChallengeWriter.WriteAsync(Context,
            new WritAuthFailure(WritAuthCodes.MalformedAuthorization, "no JWT-SVID: send 'Authorization: Bearer <JWT-SVID>' with a token for this service's audience"),
            "Bearer");
    }

    /// <summary>An RFC 7230 quoted-string body: printable ASCII only, '"' and '\' escaped.</summary>
    private static string Quote(string text)
    {
        var sb = new System.Text.StringBuilder(text.Length);
        foreach (var c in text)
        {
            if (c is '"' or '\\')
            {
                sb.Append('\\').Append(c);
            }
            else if (c is >= ' ' and <= '~')
            {
                sb.Append(c);
            }
            else
            {
                sb.Append('?');
            }
        }
        return sb.ToString();
    }

    /// <summary>The JWT view of a bundle source: the JWT bundle of each trust domain (<see cref="IWatchedBundleSource.GetJwtBundle"/>) when the source has one.</summary>
    private sealed class JwtBundles(IBundleSource inner) : IBundleSource
    {
        public TrustBundle? GetBundle(TrustDomain td) => inner is IWatchedBundleSource watched ? watched.GetJwtBundle(td) ?? watched.GetBundle(td) : inner.GetBundle(td);
    }
}
