using Writ.Protocol.Errors;
using Writ.Server.Ledger;
using Writ.Server.Oidc;
using Writ.Server.Storage;

namespace Writ.Server.Ci;

/// <summary>The ledger records of CI logins (docs/audit.md): ci.login, ci.logout, ci.expired, ci.login_refused, ci.call_refused.</summary>
public static class CiLedger
{
    public const string LoginKind = "ci.login";
    public const string LogoutKind = "ci.logout";
    public const string ExpiredKind = "ci.expired";
    public const string LoginRefusedKind = "ci.login_refused";
    public const string CallRefusedKind = "ci.call_refused";

    /// <summary>ci.login: subject = the SPIFFE ID issued; never the token (its SHA-256 prefix and jti name it).</summary>
    public static LedgerEvent Login(CiSession s, ValidatedToken t, DateTimeOffset x509ExpiresAt)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(t);
        return New(LoginKind, s.SpiffeId, new LedgerJson()
            .Add("entry_id", s.EntryId)
            .Add("expires_at", x509ExpiresAt)
            .Add("instance_id", "ci:" + s.Id)
            .Add("issuer", t.Issuer)
            .Add("jtis", s.Jtis.ToList())
            .Add("serial", s.Serial)
            .Add("session_id", s.Id)
            .Add("subject", CiTokens.Printable(t.Subject))
            .Add("token_expires_at", t.ExpiresAt)
            .Add("token_jti", t.Jti is null ? null : CiTokens.Printable(t.Jti))
            .Add("token_sha256", t.TokenSha256[..16]));
    }

    public static LedgerEvent Logout(CiSession s, int revoked)
    {
        ArgumentNullException.ThrowIfNull(s);
        return New(LogoutKind, s.SpiffeId, new LedgerJson()
            .Add("instance_id", "ci:" + s.Id)
            .Add("revoked", revoked)
            .Add("session_id", s.Id));
    }

    public static LedgerEvent Expired(CiSession s, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(s);
        return New(ExpiredKind, s.SpiffeId, new LedgerJson()
            .Add("ended_at", now)
            .Add("instance_id", "ci:" + s.Id)
            .Add("session_id", s.Id)
            .Add("token_expires_at", s.ExpiresAt));
    }

    /// <summary>ci.login_refused: subject "ci:&lt;issuer as the token claims it&gt;" ("ci:unknown" when unreadable); the token only as a SHA-256 prefix.</summary>
    public static LedgerEvent LoginRefused(string? claimedIssuer, string tokenSha256Prefix, string peer, WritException e, long suppressedBefore)
    {
        ArgumentNullException.ThrowIfNull(e);
        var iss = claimedIssuer is null ? null : CiTokens.Printable(claimedIssuer);
        return New(LoginRefusedKind, "ci:" + (iss ?? "unknown"), new LedgerJson()
            .Add("code", e.Code)
            .Add("issuer", iss)
            .Add("peer", Short(peer, 100))
            .Add("reason", Short(e.Message, 500))
            .Add("suppressed_before", suppressedBefore)
            .Add("token_sha256", tokenSha256Prefix));
    }

    /// <summary>ci.call_refused: a CI call over mTLS refused (no or foreign SVID, ended session, another session's logout).</summary>
    public static LedgerEvent CallRefused(string method, string? spiffeId, string? serial, string peer, WritException e, long suppressedBefore)
    {
        ArgumentNullException.ThrowIfNull(e);
        return New(CallRefusedKind, spiffeId ?? "ci:unknown", new LedgerJson()
            .Add("code", e.Code)
            .Add("method", Short(method, 100))
            .Add("peer", Short(peer, 100))
            .Add("reason", Short(e.Message, 500))
            .Add("serial", serial)
            .Add("suppressed_before", suppressedBefore));
    }

    private static string Short(string s, int max) => s.Length > max ? s[..max] : s;

    private static LedgerEvent New(string kind, string subject, LedgerJson data) => new()
    {
        At = default,
        Kind = kind,
        Actor = LedgerEvents.ServerActor,
        Subject = subject,
        DataJson = data.ToString(),
    };
}
