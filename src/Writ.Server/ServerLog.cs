using Microsoft.Extensions.Logging;

namespace Writ.Server;

/// <summary>Every server log event with its stable id. Ids are documented in docs/telemetry.md; never reuse one.</summary>
public static partial class ServerLog
{
    [LoggerMessage(1000, LogLevel.Information, "Writ server ready: trust domain {TrustDomain}, agent API {AgentApi}, admin socket {AdminSocket}, store {Store}")]
    public static partial void Ready(ILogger log, string trustDomain, string agentApi, string adminSocket, string store);

    [LoggerMessage(1001, LogLevel.Information, "Writ server stopping")]
    public static partial void Stopping(ILogger log);

    [LoggerMessage(1100, LogLevel.Information, "Join token {TokenId} created (expires {ExpiresAt:u}, alias {Alias})")]
    public static partial void JoinTokenCreated(ILogger log, string tokenId, DateTimeOffset expiresAt, string alias);

    [LoggerMessage(1101, LogLevel.Information, "Agent {AgentId} attested by {Type}; SVID serial {Serial}")]
    public static partial void AgentAttested(ILogger log, string agentId, string type, string serial);

    [LoggerMessage(1102, LogLevel.Warning, "Node attestation ({Type}) refused from {Peer}: {Code} {Reason}")]
    public static partial void AttestationRefused(ILogger log, string type, string peer, string code, string reason);

    [LoggerMessage(1103, LogLevel.Information, "Agent {AgentId} renewed its SVID; new serial {Serial}")]
    public static partial void AgentRenewed(ILogger log, string agentId, string serial);

    [LoggerMessage(1104, LogLevel.Warning, "Agent call {Method} refused: {Reason}")]
    public static partial void AgentRefused(ILogger log, string method, string reason);

    [LoggerMessage(1105, LogLevel.Warning, "Agent {AgentId} banned by admin")]
    public static partial void AgentBanned(ILogger log, string agentId);

    [LoggerMessage(1106, LogLevel.Warning, "Agent {AgentId} evicted by admin; it must re-attest")]
    public static partial void AgentEvicted(ILogger log, string agentId);

    [LoggerMessage(1200, LogLevel.Information, "Entries created: {Count} (first {EntryId} {SpiffeId})")]
    public static partial void EntriesCreated(ILogger log, int count, string entryId, string spiffeId);

    [LoggerMessage(1201, LogLevel.Information, "Entry {EntryId} updated ({SpiffeId})")]
    public static partial void EntryUpdated(ILogger log, string entryId, string spiffeId);

    [LoggerMessage(1202, LogLevel.Information, "Entry {EntryId} deleted")]
    public static partial void EntryDeleted(ILogger log, string entryId);

    [LoggerMessage(1300, LogLevel.Information, "X.509-SVID issued to {SpiffeId} for agent {AgentId}: serial {Serial}, expires {ExpiresAt:u}")]
    public static partial void X509Issued(ILogger log, string spiffeId, string agentId, string serial, DateTimeOffset expiresAt);

    [LoggerMessage(1301, LogLevel.Information, "JWT-SVID issued to {SpiffeId} for agent {AgentId}: audience {Audience}, expires {ExpiresAt:u}")]
    public static partial void JwtIssued(ILogger log, string spiffeId, string agentId, string audience, DateTimeOffset expiresAt);

    [LoggerMessage(1302, LogLevel.Information, "Admin minted an X.509-SVID for {SpiffeId}: serial {Serial}, expires {ExpiresAt:u}")]
    public static partial void AdminX509Minted(ILogger log, string spiffeId, string serial, DateTimeOffset expiresAt);

    [LoggerMessage(1303, LogLevel.Information, "Admin minted a JWT-SVID for {SpiffeId}: audience {Audience}, expires {ExpiresAt:u}")]
    public static partial void AdminJwtMinted(ILogger log, string spiffeId, string audience, DateTimeOffset expiresAt);

    [LoggerMessage(1400, LogLevel.Information, "Trust bundle changed: sequence {Sequence}")]
    public static partial void BundleChanged(ILogger log, long sequence);

    [LoggerMessage(1401, LogLevel.Error, "CA rotation failed: {Reason}")]
    public static partial void RotationFailed(ILogger log, Exception e, string reason);

    [LoggerMessage(1402, LogLevel.Information, "X.509 CA authority {KeyId} created and signing at once (no usable active or prepared authority); expires {NotAfter:u}")]
    public static partial void X509AuthorityCreatedActive(ILogger log, string keyId, DateTimeOffset notAfter);

    [LoggerMessage(1403, LogLevel.Information, "X.509 CA authority {KeyId} prepared and published in the bundle; it signs from about {ActivatesAt:u}")]
    public static partial void X509AuthorityPrepared(ILogger log, string keyId, DateTimeOffset activatesAt);

    [LoggerMessage(1404, LogLevel.Information, "X.509 CA authority {KeyId} now signs (expires {NotAfter:u}); the previous one stays in the bundle until pruned")]
    public static partial void X509AuthorityActivated(ILogger log, string keyId, DateTimeOffset notAfter);

    [LoggerMessage(1405, LogLevel.Information, "X.509 CA authority {KeyId} (expired {NotAfter:u}) pruned from the bundle and its key deleted")]
    public static partial void X509AuthorityPruned(ILogger log, string keyId, DateTimeOffset notAfter);

    [LoggerMessage(1406, LogLevel.Information, "JWT signing key {Kid} created and signing at once (no usable active or prepared key); expires {NotAfter:u}")]
    public static partial void JwtKeyCreatedActive(ILogger log, string kid, DateTimeOffset notAfter);

    [LoggerMessage(1407, LogLevel.Information, "JWT signing key {Kid} prepared and published in the bundle; it signs from about {ActivatesAt:u}")]
    public static partial void JwtKeyPrepared(ILogger log, string kid, DateTimeOffset activatesAt);

    [LoggerMessage(1408, LogLevel.Information, "JWT signing key {Kid} now signs (expires {NotAfter:u}); the previous one stays in the bundle until pruned")]
    public static partial void JwtKeyActivated(ILogger log, string kid, DateTimeOffset notAfter);

    [LoggerMessage(1409, LogLevel.Information, "JWT signing key {Kid} (expired {NotAfter:u}) pruned from the bundle and its key deleted")]
    public static partial void JwtKeyPruned(ILogger log, string kid, DateTimeOffset notAfter);

    [LoggerMessage(1410, LogLevel.Warning, "{Kind} CA authority {KeyId} dropped at start-up: {Reason}; a new authority is published in its place")]
    public static partial void CaAuthorityDropped(ILogger log, string kind, string keyId, string reason);

    [LoggerMessage(1411, LogLevel.Warning, "Key {KeyId} of a pruned CA authority could not be deleted from the key manager: {Reason}")]
    public static partial void CaKeyNotDeleted(ILogger log, string keyId, string reason);

    [LoggerMessage(1412, LogLevel.Warning, "Upstream CA certificate {Path} expires at {NotAfter:u}, no later than the active server CA: no successor can be prepared; renew the upstream CA before then")]
    public static partial void UpstreamCaExpiring(ILogger log, string path, DateTimeOffset notAfter);

    [LoggerMessage(1500, LogLevel.Warning, "Admin connection refused: peer uid {Uid} is not the server's uid {ServerUid} or root")]
    public static partial void AdminPeerRefused(ILogger log, int uid, int serverUid);

    [LoggerMessage(1900, LogLevel.Error, "Unhandled error {ErrorId} in {Method}")]
    public static partial void UnhandledError(ILogger log, Exception e, string method, string errorId);

    [LoggerMessage(1901, LogLevel.Error, "Store unavailable in {Method}: {Reason}")]
    public static partial void StoreUnavailable(ILogger log, string method, string reason);
}
