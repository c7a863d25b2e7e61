using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Writ.Server.Keys;

namespace Writ.Server.Ca.Rotation;

/// <summary>JWT signing authorities: a key and its public key (SPKI) under a random <c>kid</c>.</summary>
internal sealed class JwtAuthorityKind(CaOptions options, IKeyManager keys, ILogger log) : IAuthorityKind<JwtAuthorityRecord>
{
    public async Task<JwtAuthorityRecord> CreateAsync(AuthorityStatus status, DateTimeOffset now, CancellationToken ct)
    {
        var keyId = "jwt-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var key = await keys.GenerateAsync(keyId, options.JwtKeyType, ct).ConfigureAwait(false);
        var kid = CaCertificates.Base64Url(RandomNumberGenerator.GetBytes(24));
        return new JwtAuthorityRecord(keyId, kid, Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()), status, now, now + options.JwtKeyTtl);
    }

    public Task<bool> MayPrepareSuccessorAsync(JwtAuthorityRecord active, CancellationToken ct) => Task.FromResult(true);

    public void Created(JwtAuthorityRecord authority) => ServerLog.JwtKeyCreatedActive(log, authority.Kid, authority.NotAfter);

    public void Prepared(JwtAuthorityRecord authority, DateTimeOffset activatesAt) => ServerLog.JwtKeyPrepared(log, authority.Kid, activatesAt);

    public void Activated(JwtAuthorityRecord authority) => ServerLog.JwtKeyActivated(log, authority.Kid, authority.NotAfter);

    public void Pruned(JwtAuthorityRecord authority) => ServerLog.JwtKeyPruned(log, authority.Kid, authority.NotAfter);
}
