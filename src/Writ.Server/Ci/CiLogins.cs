using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Server.Hosting;
using Writ.Server.Issuance;
using Writ.Server.Oidc;
using Writ.Server.Storage;

namespace Writ.Server.Ci;

/// <summary>What a login handed out: the session, the X.509-SVID (DER chain, leaf first) and one JWT-SVID per audience.</summary>
public sealed record CiLoginResult(CiSession Session, RegistrationEntry Entry, IReadOnlyList<byte[]> Chain, DateTimeOffset X509ExpiresAt, string X509DecisionId,
    IReadOnlyList<CiJwt> Jwts);

/// <summary>One JWT-SVID of a CI session.</summary>
public sealed record CiJwt(IReadOnlyList<string> Audience, string Token, DateTimeOffset ExpiresAt, string DecisionId, string Jti);

/// <summary>
/// Agentless per-job identities (docs/ci.md). A login validates the job's OIDC token against its configured issuer,
/// claims it once (the store's unique replay key), matches the entries parented to the server
/// (<c>spiffe://&lt;td&gt;/writ/server</c>) on the token's <c>oidc:</c> selectors and issues through the one
/// <see cref="IssuancePipeline"/> with the server as the calling node (attestation <c>oidc</c>) and the workload
/// instance <c>ci:&lt;session id&gt;</c>, so Cedar decides and the ledger records as for any workload. Nothing issued
/// outlives the token; logout revokes everything issued to the session.
/// </summary>
public sealed class CiLogins
{
    /// <summary>The attestation type of the server as the "node" of CI logins (Cedar: <c>Writ::Node.attestation</c>).</summary>
    public const string Attestation = "oidc";

    public const int MaxTokenBytes = 16 * 1024;

    /// <summary>Sessions are kept this long after their token expired (the replay key must outlive any clock skew).</summary>
    public static readonly TimeSpan KeepEnded = TimeSpan.FromHours(1);

    private readonly ServerContext _server;
    private readonly IOidcTokenValidator _validator;
    private readonly IssuancePipeline _pipeline;
    private readonly ILogger _log;

    public CiLogins(ServerContext server, IOidcTokenValidator validator, IssuancePipeline pipeline, ILogger log)
    {
        _server = server ?? throw new ArgumentNullException(nameof(server));
        _validator = validator ?? throw new ArgumentNullException(nameof(validator));
        _pipeline = pipeline ?? throw new ArgumentNullException(nameof(pipeline));
        _log = log ?? throw new ArgumentNullException(nameof(log));
    }

    /// <summary>The server as the calling "node" of every CI issuance.</summary>
    public AttestedNode ServerNode => new()
    {
        SpiffeId = _server.Options.ServerId.ToString(),
        AttestationType = Attestation,
        SerialNumber = "",
        ExpiresAt = DateTimeOffset.MaxValue,
    };

    public CiRefusals Refusals => _server.CiRefusals;

    /// <summary>Login: every refusal is logged and recorded (ci.login_refused, within a flood limit), then thrown.</summary>
    public async Task<CiLoginResult> LoginAsync(string token, ReadOnlyMemory<byte> csr, IReadOnlyList<string> audiences, string? spiffeId, string peer,
        CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(token);
        ArgumentNullException.ThrowIfNull(audiences);
        try
        {
            return await LoginCoreAsync(token, csr, audiences, spiffeId, ct).ConfigureAwait(false);
        }
        catch (WritException e) when (e.Kind != WritErrorKind.Unavailable || e.Code.StartsWith("WRIT-OIDC-", StringComparison.Ordinal))
        {
            await Refusals.LoginRefusedAsync(token, peer, e).ConfigureAwait(false);
            throw;
        }
    }

    private async Task<CiLoginResult> LoginCoreAsync(string token, ReadOnlyMemory<byte> csr, IReadOnlyList<string> audiences, string? spiffeId, CancellationToken ct)
    {
        if (token.Length == 0)
            throw Bad("the login carries no token: pass the CI platform's OIDC token (--token-file or --token-env)");
        if (csr.IsEmpty)
            throw Bad("the login carries no CSR: send a PKCS#10 request signed by a key made by the job");
        IReadOnlyList<string> audience = [];
        if (audiences.Count > 0)
        {
            if (audiences.Count > _server.Options.Ci.MaxJwtAudiences)
                throw Bad($"at most {_server.Options.Ci.MaxJwtAudiences} audiences per login (ci.max_jwt_audiences), got {audiences.Count}: mint the others with 'writ ci jwt'");
            try
            {
                audience = Api.AgentApi.CheckAudience(audiences);
            }
            catch (WritException e)
            {
                throw Bad(e.Message);
            }
        }
        var (valid, issuer) = await _validator.ValidateAnyAsync(token, _server.Options.Oidc.Issuers, ct).ConfigureAwait(false);
        var now = _server.Time.GetUtcNow();
        if (valid.ExpiresAt - now < TimeSpan.FromSeconds(1))
            throw new WritException(CiCodes.TokenExpiring, WritErrorKind.Unauthenticated, "the job token expires within a second: fetch a new token and log in again");
        var sessionId = NewSessionId();
        var evidence = CiTokens.Evidence(valid, issuer, "ci:" + sessionId);
        var entry = await MatchAsync(evidence, spiffeId, now, ct).ConfigureAwait(false);
        var session = new CiSession
        {
            Id = sessionId,
            TokenKey = CiTokens.ReplayKey(valid, token),
            Issuer = valid.Issuer,
            Subject = valid.Subject,
            SpiffeId = entry.SpiffeId,
            EntryId = entry.Id,
            Selectors = evidence.Selectors,
            Facts = evidence.Facts,
            CreatedAt = now,
            ExpiresAt = valid.ExpiresAt,
        };
        await ClaimAsync(session, ct).ConfigureAwait(false);
        var jwts = new List<CiJwt>();
        string? serial = null;
        try
        {
            var batch = await _pipeline.SignX509Async(ServerNode, [new X509SvidRequest(entry.Id, csr, evidence) { NotAfter = valid.ExpiresAt }], ct).ConfigureAwait(false);
            if (batch.Issued.Count != 1)
            {
                var d = batch.Denials.Single();
                throw new WritException(d.ErrorCode == IssuanceErrors.Denied ? CiCodes.Denied : d.ErrorCode, d.Code == 3 ? WritErrorKind.InvalidArgument : WritErrorKind.PermissionDenied,
                    $"the X.509-SVID for {entry.SpiffeId} was refused{(d.DecisionId is null ? "" : $" (decision {d.DecisionId}: writ explain {d.DecisionId})")}: {d.Reason}");
            }
            var x509 = batch.Issued[0];
            serial = x509.Leaf.SerialNumber.ToUpperInvariant();
            await _server.Store.CiSessions.AttachAsync(session.Id, serial, [], ct).ConfigureAwait(false);
            session = session with { Serial = serial };
            var leafSha256 = SHA256.HashData(x509.Leaf.Der);
            foreach (var a in audience)
            {
                var minted = await MintAsync(session, entry, [a], 0, leafSha256, ct).ConfigureAwait(false);
                if (minted.Token is null)
                {
                    throw new WritException(CiCodes.Denied, WritErrorKind.PermissionDenied,
                        $"the JWT-SVID for audience '{a}' was refused (decision {minted.Decision.Id}: writ explain {minted.Decision.Id}): {minted.Decision.Reason}; nothing was handed out");
                }
                jwts.Add(new CiJwt([a], minted.Token, minted.ExpiresAt, minted.Decision.Id, minted.Jti!));
            }
            session = session with { Jtis = [.. jwts.Select(j => j.Jti)] };
            var record = CiLedger.Login(session, valid, x509.Leaf.NotAfter);
            await _server.LedgerWriter.RecordAsync([record], [], "the CI login could not be recorded in the ledger: check the server's store, then log in with a new token", ct).ConfigureAwait(false);
            ServerLog.CiLogin(_log, session.Id, entry.SpiffeId, valid.Issuer, CiTokens.Printable(valid.Subject), x509.Leaf.NotAfter);
            return new CiLoginResult(session, entry, [x509.Leaf.Der, .. x509.ChainAboveLeaf], x509.Leaf.NotAfter, x509.DecisionId, jwts);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            // All or nothing: what this login issued before the failure is revoked (not left valid unseen) and the
            // session ends, so the token cannot be tried again.
            await AbandonAsync(session, serial, [.. jwts.Select(j => j.Jti)], e is WritException { Code: CiCodes.Denied } ? "denied" : "failed").ConfigureAwait(false);
            throw;
        }
    }

    private async Task AbandonAsync(CiSession session, string? serial, IReadOnlyList<string> jtis, string reason)
    {
        try
        {
            await RevokeAsync(session, serial is null ? [] : [serial], jtis, "ci login " + reason, CancellationToken.None).ConfigureAwait(false);
            await _server.Store.CiSessions.EndAsync(session.Id, _server.Time.GetUtcNow(), reason, CancellationToken.None).ConfigureAwait(false);
        }
        catch (WritException e)
        {
            ServerLog.CiStoreFailed(_log, $"abandon session {session.Id}", e.Message);
        }
    }

    /// <summary>Another JWT-SVID for a live session (bound to the session's X.509-SVID presented on the call).</summary>
    public async Task<CiJwt> MintJwtAsync(CiSession session, IReadOnlyList<string> audiences, int ttlSeconds, byte[] leafSha256, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(session);
        IReadOnlyList<string> audience;
        try
        {
            audience = Api.AgentApi.CheckAudience(audiences, _server.Options.Ledger.MaxAudiences);
        }
        catch (WritException e)
        {
            throw Bad(e.Message);
        }
        var entry = await _server.Store.Entries.GetAsync(session.EntryId, ct).ConfigureAwait(false)
            ?? throw new WritException(CiCodes.NoEntry, WritErrorKind.PermissionDenied, $"the entry of {session.SpiffeId} was deleted: its credentials were revoked; log in again with a new token");
        var minted = await MintAsync(session, entry, audience, ttlSeconds, leafSha256, ct).ConfigureAwait(false);
        if (minted.Token is null)
        {
            throw new WritException(CiCodes.Denied, WritErrorKind.PermissionDenied,
                $"the JWT-SVID was refused (decision {minted.Decision.Id}: writ explain {minted.Decision.Id}): {minted.Decision.Reason}");
        }
        return new CiJwt(audience, minted.Token, minted.ExpiresAt, minted.Decision.Id, minted.Jti!);
    }

    private async Task<JwtOutcome> MintAsync(CiSession session, RegistrationEntry entry, IReadOnlyList<string> audience, int ttlSeconds, byte[] leafSha256, CancellationToken ct)
    {
        var now = _server.Time.GetUtcNow();
        var left = (int)Math.Min(int.MaxValue, Math.Floor((session.ExpiresAt - now).TotalSeconds));
        if (left < 1)
            throw new WritException(CiCodes.SessionEnded, WritErrorKind.Unauthenticated, $"CI session {session.Id} has expired with its job token: log in again with a new token");
        var requested = ttlSeconds > 0 ? Math.Min(ttlSeconds, left) : left;
        var evidence = new WorkloadEvidence(session.Selectors, session.Facts, "ci:" + session.Id);
        var minted = await _pipeline.MintJwtAsync(ServerNode, entry, evidence, audience, requested, leafSha256, ct).ConfigureAwait(false);
        if (minted.Token is null)
            return minted;
        if (!await _server.Store.CiSessions.AttachAsync(session.Id, null, [minted.Jti!], ct).ConfigureAwait(false))
        {
            // Logged out while this was minted: the token is revoked at once and not handed out.
            await RevokeAsync(session, [], [minted.Jti!], "ci session ended", ct).ConfigureAwait(false);
            throw new WritException(CiCodes.SessionEnded, WritErrorKind.Unauthenticated, $"CI session {session.Id} ended: log in again with a new token");
        }
        return minted;
    }

    /// <summary>Logout: everything issued to the session is revoked (pushed to agents, in the CRL and the ledger), then the session ends.</summary>
    public async Task<int> LogoutAsync(CiSession session, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(session);
        var revoked = await RevokeAsync(session, session.Serial is { } s ? [s] : [], session.Jtis, "ci logout", ct).ConfigureAwait(false);
        var now = _server.Time.GetUtcNow();
        await _server.Store.CiSessions.EndAsync(session.Id, now, "logout", ct, [CiLedger.Logout(session, revoked)]).ConfigureAwait(false);
        // A JWT-SVID minted between the revocation and the end: revoke it too.
        if (await _server.Store.CiSessions.GetAsync(session.Id, ct).ConfigureAwait(false) is { } after && after.Jtis.Except(session.Jtis, StringComparer.Ordinal).ToList() is { Count: > 0 } late)
            revoked += await RevokeAsync(session, [], late, "ci logout", ct).ConfigureAwait(false);
        ServerLog.CiLogout(_log, session.Id, session.SpiffeId, revoked);
        return revoked;
    }

    /// <summary>Ends sessions whose job token expired (their credentials expired with it) and forgets old ones.</summary>
    public async Task<int> SweepAsync(CancellationToken ct)
    {
        var now = _server.Time.GetUtcNow();
        var ended = 0;
        foreach (var s in await _server.Store.CiSessions.ExpiredOpenAsync(now, 500, ct).ConfigureAwait(false))
        {
            if (await _server.Store.CiSessions.EndAsync(s.Id, now, "expired", ct, [CiLedger.Expired(s, now)]).ConfigureAwait(false))
                ended++;
        }
        var pruned = await _server.Store.CiSessions.PruneAsync(now - KeepEnded, ct).ConfigureAwait(false);
        if (ended > 0 || pruned > 0)
            ServerLog.CiSessionsSwept(_log, ended, pruned);
        return ended;
    }

    /// <summary>The sweep as a background loop (started by the host).</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            await SweepAsync(ct).ConfigureAwait(false);
            await Task.Delay(_server.Options.Ci.SweepInterval, _server.Time, ct).ConfigureAwait(false);
        }
    }

    private async Task<int> RevokeAsync(CiSession session, IReadOnlyCollection<string> serials, IReadOnlyCollection<string> jtis, string reason, CancellationToken ct)
    {
        if (serials.Count == 0 && jtis.Count == 0)
            return 0;
        var r = await _server.Revocations.InstanceGoneAsync(_server.Options.ServerId.ToString(), "ci:" + session.Id, serials, jtis, reason, ct).ConfigureAwait(false);
        return r.Revoked.Count;
    }

    private async Task ClaimAsync(CiSession session, CancellationToken ct)
    {
        try
        {
            await _server.Store.CiSessions.CreateAsync(session, ct).ConfigureAwait(false);
        }
        catch (StoreConflictException)
        {
            var earlier = await _server.Store.CiSessions.GetByTokenKeyAsync(session.TokenKey, ct).ConfigureAwait(false);
            if (earlier?.EndedAt is not null)
            {
                throw new WritException(CiCodes.SessionEnded, WritErrorKind.Unauthenticated,
                    $"this token was replayed after its CI session {earlier.Id} ended ({earlier.EndReason}): a job token is accepted once; fetch a new one from the CI platform");
            }
            throw new WritException(CiCodes.Replayed, WritErrorKind.Unauthenticated,
                $"this token was already used for CI session {earlier?.Id ?? "(another)"}: a job token is accepted once; fetch a new one from the CI platform");
        }
    }

    /// <summary>The entry to issue: parented to the server, unexpired, every selector among the token's; one SPIFFE ID (or the one asked for).</summary>
    private async Task<RegistrationEntry> MatchAsync(WorkloadEvidence evidence, string? spiffeId, DateTimeOffset now, CancellationToken ct)
    {
        var parent = _server.Options.ServerId.ToString();
        var matches = new List<RegistrationEntry>();
        string? page = null;
        do
        {
            var p = await _server.Store.Entries.ListAsync(new EntryFilter(ParentId: parent), 1000, page, ct).ConfigureAwait(false);
            matches.AddRange(p.Entries.Where(e => (e.ExpiresAt is not { } exp || exp > now) && e.Selectors.All(evidence.Contains)));
            page = p.NextPageToken;
        }
        while (page is not null);
        if (!string.IsNullOrEmpty(spiffeId))
            matches = [.. matches.Where(e => string.Equals(e.SpiffeId, spiffeId, StringComparison.Ordinal))];
        if (matches.Count == 0)
        {
            throw new WritException(CiCodes.NoEntry, WritErrorKind.PermissionDenied,
                $"no registration entry parented to {parent}{(string.IsNullOrEmpty(spiffeId) ? "" : $" for {spiffeId}")} matches this token (issuer {evidence.Facts.GetValueOrDefault("oidc.iss")}, subject {CiTokens.Printable(evidence.Facts.GetValueOrDefault("oidc.sub") ?? "")}): create one with 'writ entry create --parent-id {parent} --selector oidc:…' for the claims this job must have");
        }
        var ids = matches.Select(e => e.SpiffeId).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        if (ids.Count > 1)
        {
            throw new WritException(CiCodes.Ambiguous, WritErrorKind.InvalidArgument,
                $"entries of {ids.Count} SPIFFE IDs match this token ({string.Join(", ", ids.Take(5))}): name one with --spiffe-id");
        }
        // The most specific entry of that ID decides (most selectors, then the lowest id: stable).
        return matches.OrderByDescending(e => e.Selectors.Count).ThenBy(e => e.Id, StringComparer.Ordinal).First();
    }

    private static string NewSessionId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    private static WritException Bad(string message) => new(CiCodes.BadRequest, WritErrorKind.InvalidArgument, message);
}
