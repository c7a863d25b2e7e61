namespace Writ.Server.Storage;

/// <summary>
/// One record of the tamper-evident ledger. <see cref="Seq"/>, <see cref="PrevHash"/> and <see cref="Hash"/> are
/// assigned by the store on append: Hash = SHA-256 over PrevHash and the canonical encoding of the other fields
/// (see <c>Writ.Server.Ledger.LedgerHash</c>). Appends are serialised so the chain has no forks, also across servers.
/// </summary>
public sealed record LedgerEvent
{
    public long Seq { get; init; }
    public required DateTimeOffset At { get; init; }
    /// <summary>e.g. "x509.issued", "jwt.issued", "issuance.denied", "node.attested", "entry.created", "policy.pushed", "svid.revoked".</summary>
    public required string Kind { get; init; }
    /// <summary>Who caused it: "uid:1000" (admin caller), an agent SPIFFE ID, or "server".</summary>
    public required string Actor { get; init; }
    /// <summary>What it is about: a SPIFFE ID, an entry id, a policy version, ...</summary>
    public required string Subject { get; init; }
    /// <summary>Set for issuance decisions (issued and denied).</summary>
    public string? DecisionId { get; init; }
    /// <summary>The details as canonical JSON (sorted keys, no insignificant whitespace).</summary>
    public string DataJson { get; init; } = "{}";
    public byte[] PrevHash { get; init; } = [];
    public byte[] Hash { get; init; } = [];
}

/// <summary>The ledger's head row: the seq and hash of the last record appended (an anchor to export and compare later).</summary>
public sealed record LedgerHead(long Seq, byte[] Hash);

/// <summary>A credential the server issued, kept until it expires so revocation by entry, ID, agent or instance can find it.</summary>
public sealed record IssuedCredential
{
    /// <summary>"x509" or "jwt".</summary>
    public required string Kind { get; init; }
    /// <summary>The X.509 serial number (hex, upper case) or the JWT <c>jti</c>.</summary>
    public required string Id { get; init; }
    public required string SpiffeId { get; init; }
    public string? EntryId { get; init; }
    /// <summary>The agent it was issued through (the agent itself for agent SVIDs; "admin" for admin mints).</summary>
    public required string AgentId { get; init; }
    /// <summary>The workload instance ("pid:starttime") it was issued to, when known.</summary>
    public string? InstanceId { get; init; }
    public required string DecisionId { get; init; }
    public required DateTimeOffset IssuedAt { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }
}

/// <summary>Null members match everything; the non-null ones must all match. Expired credentials are left out unless asked for.</summary>
public sealed record IssuedFilter(string? Id = null, string? SpiffeId = null, string? EntryId = null, string? AgentId = null, string? InstanceId = null, bool IncludeExpired = false);

/// <summary>One file of a pushed policy set.</summary>
public sealed record PolicyFileRecord(string Name, string Text);

/// <summary>A version of the policy set. The active version is the highest; a rollback makes a new version.</summary>
public sealed record StoredPolicyVersion
{
    public long Version { get; init; }
    public required IReadOnlyList<PolicyFileRecord> Files { get; init; }
    /// <summary>Hex SHA-256 of the canonical text of the set.</summary>
    public required string Sha256 { get; init; }
    public required string Author { get; init; }
    public string Comment { get; init; } = "";
    public DateTimeOffset CreatedAt { get; init; }
    public long? RolledBackFrom { get; init; }
}

/// <summary>A revoked X.509-SVID (<see cref="SerialHex"/>) or JWT-SVID (<see cref="Jti"/>); exactly one of the two is set.</summary>
public sealed record RevocationRecord
{
    public string? SerialHex { get; init; }
    public string? Jti { get; init; }
    public required string SpiffeId { get; init; }
    public string? EntryId { get; init; }
    public string? InstanceId { get; init; }
    public required DateTimeOffset RevokedAt { get; init; }
    /// <summary>When the credential expires anyway; the revocation may be pruned after it.</summary>
    public required DateTimeOffset ExpiresAt { get; init; }
    public required string Reason { get; init; }
    /// <summary>Assigned by the store: the store revision of the revocation (agents resume Sync from it).</summary>
    public long Revision { get; init; }
}
