using System.Text;
using System.Text.Json;
using Grpc.Core;
using Writ.Protocol.Agent;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Server.Api;

/// <summary>
/// ReportJwtReplay: an agent saw one JWT-SVID validated for two different relying parties. The server records a
/// <c>jwt.replay</c> ledger event and, when it issued that jti and has a revocation store, revokes it (so every agent's
/// ValidateJWTSVID refuses it from then on, for the first relying party too).
/// </summary>
public sealed partial class AgentApi
{
    private const int MaxReportField = 512;

    public override async Task<ReportJwtReplayResponse> ReportJwtReplay(ReportJwtReplayRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var ct = context.CancellationToken;
        var report = CheckReplayReport(request);
        var now = server.Time.GetUtcNow();
        var tokenName = report.Jti is { } j ? $"jti {j}" : $"token sha256 {report.TokenSha256}";

        // The replay itself is a fact whatever happens next: record it first.
        var data = LedgerData(w =>
        {
            w.WriteString("audience", request.Audience);
            if (request.ExpiresAtUnix > 0)
            {
                w.WriteNumber("expires_at", request.ExpiresAtUnix);
            }
            w.WriteString("first_peer", request.FirstPeer);
            if (report.Jti is not null)
            {
                w.WriteString("jti", report.Jti);
            }
            w.WriteString("second_peer", request.SecondPeer);
            if (report.TokenSha256 is not null)
            {
                w.WriteString("token_sha256", report.TokenSha256);
            }
        });
        await server.LedgerWriter.RecordAsync(
            [new LedgerEvent { At = now, Kind = "jwt.replay", Actor = caller.Id.ToString(), Subject = report.Subject.ToString(), DataJson = data }],
            [], "the replay report could not be recorded in the ledger: check the server's store, then report it again", ct).ConfigureAwait(false);
        ServerLog.JwtReplayReported(log, caller.Id.ToString(), tokenName, report.Subject.ToString(), request.FirstPeer, request.SecondPeer);

        return new ReportJwtReplayResponse { Revoked = report.Jti is { } jti && await RevokeReplayedAsync(jti, report.Subject, now, ct).ConfigureAwait(false) };
    }

    /// <summary>
    /// Revokes the jti when this server issued it (the ledger's issued-credential index knows it, for this subject, still
    /// live) — a report cannot revoke tokens the server never issued or make up an expiry. False when not revoked.
    /// </summary>
    private async Task<bool> RevokeReplayedAsync(string jti, SpiffeId subject, DateTimeOffset now, CancellationToken ct)
    {
        var issued = (await server.Store.Ledger.IssuedAsync(new IssuedFilter(Id: jti), now, ct).ConfigureAwait(false))
            .FirstOrDefault(c => c.Kind == "jwt" && c.SpiffeId == subject.ToString());
        if (issued is null)
        {
            ServerLog.JwtReplayNotRevoked(log, $"jti {jti}", "this server has no live issued JWT-SVID with that jti and subject");
            return false;
        }
        const string reason = "replayed: presented to two different relying parties";
        var record = new RevocationRecord
        {
            Jti = jti,
            SpiffeId = issued.SpiffeId,
            EntryId = issued.EntryId,
            InstanceId = issued.InstanceId,
            RevokedAt = now,
            ExpiresAt = issued.ExpiresAt,
            Reason = reason,
        };
        var audit = new LedgerEvent
        {
            At = now,
            Kind = "jwt.revoked",
            Actor = "server",
            Subject = issued.SpiffeId,
            DataJson = LedgerData(w =>
            {
                w.WriteString("jti", jti);
                w.WriteString("reason", reason);
                // audit verify holds the revocations table to this: the row must stay until the token expires.
                w.WriteString("expires_at", issued.ExpiresAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture));
            }),
        };
        // Nothing new when it was already revoked: it is still revoked.
        await server.Store.Revocations.RevokeAsync([record], [audit], ct).ConfigureAwait(false);
        ServerLog.JwtReplayRevoked(log, jti, issued.SpiffeId);
        return true;
    }

    private sealed record ReplayReport(string? Jti, string? TokenSha256, SpiffeId Subject);

    private static ReplayReport CheckReplayReport(ReportJwtReplayRequest r)
    {
        static Writ.Protocol.Errors.WritException Bad(string what) => new(AgentApiErrors.BadRequest, Writ.Protocol.Errors.WritErrorKind.InvalidArgument, what);
        static bool Printable(string s) => s.Length <= MaxReportField && !s.Any(char.IsControl);

        if (!SpiffeId.TryParse(r.SpiffeId, out var subject, out var idError))
        {
            throw Bad($"spiffe_id is not the token's SPIFFE ID: {idError}");
        }
        string? jti = null, sha = null;
        if (r.Jti.Length > 0)
        {
            if (r.Jti.Length > Spiffe.Jwt.JwtSvidValidator.MaxJtiLength || !Printable(r.Jti))
            {
                throw Bad($"jti must be at most {Spiffe.Jwt.JwtSvidValidator.MaxJtiLength} printable characters");
            }
            jti = r.Jti;
        }
        else if (r.TokenSha256.Length == 64 && r.TokenSha256.All(char.IsAsciiHexDigitLower))
        {
            sha = r.TokenSha256;
        }
        else
        {
            throw Bad("a replay report names the token by jti, or by token_sha256 (64 lowercase hex digits) when it has none");
        }
        if (r.FirstPeer.Length == 0 || r.SecondPeer.Length == 0 || !Printable(r.FirstPeer) || !Printable(r.SecondPeer) || !Printable(r.Audience))
        {
            throw Bad($"first_peer and second_peer are required and, like audience, at most {MaxReportField} printable characters");
        }
        if (r.FirstPeer == r.SecondPeer)
        {
            throw Bad("first_peer and second_peer are the same peer: that is not a replay");
        }
        return new ReplayReport(jti, sha, subject);
    }

    /// <summary>A ledger DataJson object: keys written in ordinal order by the caller, no whitespace.</summary>
    private static string LedgerData(Action<Utf8JsonWriter> writeMembers)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = false }))
        {
            w.WriteStartObject();
            writeMembers(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
