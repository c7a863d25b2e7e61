using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Writ.Protocol.Ci;
using Writ.Protocol.Errors;
using Writ.Server.Hosting;
using Writ.Server.Storage;
using Writ.Spiffe.X509;

namespace Writ.Server.Ci;

/// <summary>
/// The CI API (<c>writ.ci.v1.CiService</c>) on the agent API port. Login needs only server-authenticated TLS; MintJwtSvid
/// and Logout are authenticated by the session's X.509-SVID as TLS client certificate: checked against the bundle and
/// the deny list, and it must be the SVID of a live CI session (looked up by serial) — an agent's or a workload's SVID
/// is refused.
/// </summary>
public sealed class CiApi(ServerContext server, CiLogins logins) : CiService.CiServiceBase
{
    public override async Task<LoginResponse> Login(LoginRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        var r = await logins.LoginAsync(request.Token, request.Csr.Memory, [.. request.Audiences], request.SpiffeId, context.Peer, context.CancellationToken).ConfigureAwait(false);
        var response = new LoginResponse
        {
            SessionId = r.Session.Id,
            SpiffeId = r.Session.SpiffeId,
            EntryId = r.Entry.Id,
            BundlePem = ByteString.CopyFromUtf8(server.Ca.Bundle.ToPem()),
            ExpiresAtUnix = r.X509ExpiresAt.ToUnixTimeSeconds(),
            X509DecisionId = r.X509DecisionId,
            SessionExpiresAtUnix = r.Session.ExpiresAt.ToUnixTimeSeconds(),
        };
        response.CertChain.AddRange(r.Chain.Select(ByteString.CopyFrom));
        response.JwtSvids.AddRange(r.Jwts.Select(Proto));
        return response;
    }

    public override async Task<CiMintJwtSvidResponse> MintJwtSvid(CiMintJwtSvidRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var (session, leafSha256) = await AuthenticateAsync(context).ConfigureAwait(false);
        var jwt = await logins.MintJwtAsync(session, [.. request.Audiences], request.TtlSeconds, leafSha256, context.CancellationToken).ConfigureAwait(false);
        return new CiMintJwtSvidResponse { Svid = Proto(jwt) };
    }

    public override async Task<LogoutResponse> Logout(LogoutRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        var (session, _) = await AuthenticateAsync(context).ConfigureAwait(false);
        if (request.SessionId.Length > 0 && !string.Equals(request.SessionId, session.Id, StringComparison.Ordinal))
        {
            throw await RefuseAsync(context, session.SpiffeId, session.Serial, new WritException(CiCodes.NotYourSession, WritErrorKind.PermissionDenied,
                $"the SVID presented belongs to CI session {session.Id}, not to session '{CiTokens.Printable(request.SessionId)}': a job may end only its own session")).ConfigureAwait(false);
        }
        var revoked = await logins.LogoutAsync(session, context.CancellationToken).ConfigureAwait(false);
        return new LogoutResponse { SessionId = session.Id, Revoked = revoked };
    }

    private static CiJwtSvid Proto(CiJwt j) => new()
    {
        Audience = string.Join(" ", j.Audience),
        Token = j.Token,
        ExpiresAtUnix = j.ExpiresAt.ToUnixTimeSeconds(),
        DecisionId = j.DecisionId,
    };

    private async Task<(CiSession Session, byte[] LeafSha256)> AuthenticateAsync(ServerCallContext context)
    {
        var cert = context.GetHttpContext().Connection.ClientCertificate;
        if (cert is null)
        {
            throw await RefuseAsync(context, null, null, new WritException(CiCodes.NoCertificate, WritErrorKind.Unauthenticated,
                "this call needs the CI session's X.509-SVID as TLS client certificate: log in first ('writ ci login --write DIR') and pass --dir DIR")).ConfigureAwait(false);
        }
        var serial = cert.SerialNumber;
        var validation = X509SvidValidator.Validate([cert, .. server.Ca.Intermediates], server.Ca.Bundle, server.Time.GetUtcNow());
        if (!validation.IsValid || validation.Id is null)
        {
            throw await RefuseAsync(context, null, serial, new WritException(CiCodes.CertificateRefused, WritErrorKind.Unauthenticated,
                $"the client certificate was refused: {validation.Error}")).ConfigureAwait(false);
        }
        var id = validation.Id.ToString();
        if (server.Revocations.IsSerialRevoked(serial))
        {
            throw await RefuseAsync(context, id, serial, new WritException(CiCodes.Revoked, WritErrorKind.Unauthenticated,
                $"the SVID of {id} (serial {serial}) is revoked: log in again with a new job token")).ConfigureAwait(false);
        }
        var session = await server.Store.CiSessions.GetBySerialAsync(serial, context.CancellationToken).ConfigureAwait(false);
        if (session is null || !string.Equals(session.SpiffeId, id, StringComparison.Ordinal))
        {
            throw await RefuseAsync(context, id, serial, new WritException(CiCodes.NotCiSvid, WritErrorKind.PermissionDenied,
                $"{id} (serial {serial}) is not the SVID of a CI session: only the X.509-SVID 'writ ci login' returned may call the CI API")).ConfigureAwait(false);
        }
        if (!session.IsLive(server.Time.GetUtcNow()))
        {
            throw await RefuseAsync(context, id, serial, new WritException(CiCodes.SessionEnded, WritErrorKind.Unauthenticated,
                $"CI session {session.Id} has ended ({session.EndReason ?? "its job token expired"}): log in again with a new job token")).ConfigureAwait(false);
        }
        return (session, SHA256.HashData(cert.RawData));
    }

    private async Task<WritException> RefuseAsync(ServerCallContext context, string? spiffeId, string? serial, WritException e)
    {
        await logins.Refusals.CallRefusedAsync(context.Method, spiffeId, serial, context.Peer, e).ConfigureAwait(false);
        return e;
    }
}
