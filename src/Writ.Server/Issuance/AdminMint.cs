using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Writ.Protocol.Errors;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Server.Issuance;

/// <summary>An X.509-SVID minted by an admin: the chain (leaf first) and the decision that allowed it.</summary>
public sealed record AdminX509Minted(IReadOnlyList<X509Certificate2> Chain, DateTimeOffset ExpiresAt, string DecisionId);

/// <summary>A JWT-SVID minted by an admin and the decision that allowed it.</summary>
public sealed record AdminJwtMinted(string Token, DateTimeOffset ExpiresAt, string Jti, string DecisionId);

/// <summary>
/// Admin minting (<c>writ x509 mint</c>, <c>writ jwt mint</c>) on the one issuance path: principal the admin caller
/// (<c>Writ::Admin</c>), action <c>AdminMintX509Svid</c> / <c>AdminMintJwtSvid</c>, resource the identity. A built-in
/// permit allows it (today's behaviour); a forbid of the identity team refuses it with <see cref="IssuanceErrors.MintDenied"/>,
/// an <c>issuance.denied</c> record and no credential. Admin refusals are not rate-limited: the admin socket admits
/// only the server's own uid and root.
/// </summary>
public sealed partial class IssuancePipeline
{
    /// <summary>Decides, signs and records an admin X.509-SVID; the CSR is checked first (a bad one is a <see cref="Registration.ValidationException"/>, no decision).</summary>
    public async Task<AdminX509Minted> MintAdminX509Async(string caller, SpiffeId id, ReadOnlyMemory<byte> csr, TimeSpan requested, IReadOnlyList<string> dnsNames, CancellationToken ct)
    {
        var key = Issuer.VerifyCsr(csr.Span, id);
        var (d, now) = await DecideAdminAsync(caller, WritCedar.AdminMintX509Svid, id, dnsNames, [], requested, "x509", ct).ConfigureAwait(false);
        var ttl = IssuanceDecider.Ttl(requested, d.MaxTtl);
        var chain = server.Ca.SignX509Svid(id, key, ttl, dnsNames);
        var leaf = chain[0];
        var exp = new DateTimeOffset(leaf.NotAfter.ToUniversalTime());
        await RecordAsync([Event("x509.issued", caller, id.ToString(), d, IssuanceDecider.RecordData(d, "x509", caller, id.ToString(), null, null, new JsonObject
        {
            ["expires_at"] = exp.ToUnixTimeSeconds(),
            ["minted_by"] = caller,
            ["requested_ttl_seconds"] = (long)requested.TotalSeconds,
            ["serial"] = leaf.SerialNumber,
            ["ttl_seconds"] = (long)ttl.TotalSeconds,
        }), now)],
        [new IssuedCredential { Kind = "x509", Id = leaf.SerialNumber, SpiffeId = id.ToString(), AgentId = "admin", DecisionId = d.Id, IssuedAt = now, ExpiresAt = exp }], ct).ConfigureAwait(false);
        ServerLog.AdminX509Minted(log, id.ToString(), leaf.SerialNumber, exp);
        return new AdminX509Minted(chain, exp, d.Id);
    }

    /// <summary>Decides, signs and records an admin JWT-SVID (unbound; recorded by jti, never the token).</summary>
    public async Task<AdminJwtMinted> MintAdminJwtAsync(string caller, SpiffeId id, IReadOnlyList<string> audience, TimeSpan requested, CancellationToken ct)
    {
        var (d, now) = await DecideAdminAsync(caller, WritCedar.AdminMintJwtSvid, id, [], audience, requested, "jwt", ct).ConfigureAwait(false);
        var ttl = IssuanceDecider.Ttl(requested, d.MaxTtl);
        var (token, exp, jti) = server.Ca.MintJwtSvidWithId(id, audience, ttl, null);
        await RecordAsync([Event("jwt.issued", caller, id.ToString(), d, IssuanceDecider.RecordData(d, "jwt", caller, id.ToString(), null, null, new JsonObject
        {
            ["audience"] = new JsonArray([.. audience.Select(a => (JsonNode)a)]),
            ["bound"] = false,
            ["expires_at"] = exp.ToUnixTimeSeconds(),
            ["jti"] = jti,
            ["minted_by"] = caller,
            ["requested_ttl_seconds"] = (long)requested.TotalSeconds,
            ["ttl_seconds"] = (long)(exp - now).TotalSeconds,
        }), now)],
        [new IssuedCredential { Kind = "jwt", Id = jti, SpiffeId = id.ToString(), AgentId = "admin", DecisionId = d.Id, IssuedAt = now, ExpiresAt = exp }], ct).ConfigureAwait(false);
        ServerLog.AdminJwtMinted(log, id.ToString(), string.Join(",", audience), exp);
        return new AdminJwtMinted(token, exp, jti, d.Id);
    }

    /// <summary>The Cedar decision of an admin mint; a refusal is recorded and thrown as <see cref="IssuanceErrors.MintDenied"/>.</summary>
    private async Task<(IssuanceDecision Decision, DateTimeOffset Now)> DecideAdminAsync(string caller, Writ.Policy.Ast.EntityUid action, SpiffeId id,
        IReadOnlyList<string> dnsNames, IReadOnlyList<string> audience, TimeSpan requested, string kind, CancellationToken ct)
    {
        var policy = await server.Policy.CurrentAsync(ct).ConfigureAwait(false);
        var now = server.Time.GetUtcNow();
        var query = WritCedar.Query(WritCedar.Admin(caller), action, WritCedar.Identity(IdentityFacts.OfMint(id, dnsNames)),
            WritCedar.Context(audience, (long)requested.TotalSeconds, now.ToUnixTimeSeconds(), bound: kind == "x509"));
        var d = IssuanceDecider.Evaluate(policy, query);
        if (!d.Allowed)
        {
            ServerLog.IssuanceDenied(log, d.Id, d.Action, id.ToString(), caller, d.Reason);
            await RecordAsync([Event("issuance.denied", caller, id.ToString(), d, IssuanceDecider.RecordData(d, kind, caller, id.ToString(), null, null, new JsonObject
            {
                ["minted_by"] = caller,
                ["requested_ttl_seconds"] = (long)requested.TotalSeconds,
            }), now)], [], ct).ConfigureAwait(false);
            throw new WritException(IssuanceErrors.MintDenied, WritErrorKind.PermissionDenied, "admin mint " + d.DeniedDetail);
        }
        return (d, now);
    }
}
