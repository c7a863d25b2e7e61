using Writ.Protocol.Evidence;
namespace Writ.Server.Storage;

/// <summary>A named blob of CA state (certificates, public keys, authority states), written as a whole.</summary>
public sealed record CaJournal(string Name, byte[] Data, DateTimeOffset UpdatedAt);

/// <summary>A trust bundle in SPIFFE bundle JSON form, with its sequence number.</summary>
public sealed record StoredBundle(string TrustDomain, string SpiffeBundleJson, long Sequence, DateTimeOffset UpdatedAt);

/// <summary>One server sharing the store (issue #16): its stable id, its agent API address, its start and its last heartbeat.</summary>
public sealed record ServerRecord(string ServerId, string Address, DateTimeOffset StartedAt, DateTimeOffset LastSeen)
{
    /// <summary>
    /// The random nonce of the process that started last with this id (written by <see cref="IServerStore.StartedAsync"/>,
    /// checked by every heartbeat): two live processes with one id (a copied data dir) overwrite each other's. Not listed.
    /// </summary>
    public string BootNonce { get; init; } = "";
}

/// <summary>
/// A CRL one server's X.509 authority signed (issue #16), as published in the store for the other servers to hand to their
/// agents: a relying party checks an SVID against a CRL from the SVID's own issuer.
/// </summary>
public sealed record ServerCrl(string ServerId, string AuthorityKeyId, byte[] Der, DateTimeOffset NextUpdate);

/// <summary>
/// A registration entry: workloads whose evidence includes all <see cref="Selectors"/>, attested by an agent whose
/// SPIFFE ID (or alias) is <see cref="ParentId"/>, may get <see cref="SpiffeId"/>.
/// </summary>
public sealed record RegistrationEntry
{
    /// <summary>Assigned by the store when empty (a UUID); ids given by the caller are kept.</summary>
    public string Id { get; init; } = "";
    public required string SpiffeId { get; init; }
    public required string ParentId { get; init; }
    public required IReadOnlyList<Selector> Selectors { get; init; }
    /// <summary>0 = server default.</summary>
    public int X509TtlSeconds { get; init; }
    /// <summary>0 = server default.</summary>
    public int JwtTtlSeconds { get; init; }
    public IReadOnlyList<string> DnsNames { get; init; } = [];
    public string Hint { get; init; } = "";
    public bool Admin { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    /// <summary>
    /// Foreign trust domain names (issue #16): SVIDs of this entry come with those domains' bundles, so the workload can
    /// verify peers there. Each must have a federation relationship when the entry is written.
    /// </summary>
    public IReadOnlyList<string> FederatesWith { get; init; } = [];
    /// <summary>
    /// Issue #16 item 5: how many pre-signed X.509-SVIDs of this entry its agent keeps for new instances that start while
    /// no server is reachable. 0 (the default) = none: every instance gets its own key from the server.
    /// </summary>
    public int OutagePool { get; init; }
    /// <summary>
    /// Assigned by the store: the store revision of the last write of this entry. On update, a non-zero value must
    /// equal the stored one (optimistic concurrency), 0 skips that check.
    /// </summary>
    public long Revision { get; init; }
    /// <summary>Assigned by the store on create; kept on update.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    // Records compare lists by reference; entries compare by content so tests and callers can use ==.
    public bool Equals(RegistrationEntry? other) =>
        other is not null
        && Id == other.Id && SpiffeId == other.SpiffeId && ParentId == other.ParentId
        && Selectors.SequenceEqual(other.Selectors) && X509TtlSeconds == other.X509TtlSeconds
        && JwtTtlSeconds == other.JwtTtlSeconds && DnsNames.SequenceEqual(other.DnsNames, StringComparer.Ordinal)
        && Hint == other.Hint && Admin == other.Admin && ExpiresAt == other.ExpiresAt
        && FederatesWith.SequenceEqual(other.FederatesWith, StringComparer.Ordinal) && OutagePool == other.OutagePool
        && Revision == other.Revision && CreatedAt == other.CreatedAt;

    public override int GetHashCode() => HashCode.Combine(Id, SpiffeId, ParentId, Revision);
}

/// <summary>List filter; null members match everything. <see cref="Selector"/> matches entries that contain it.</summary>
public sealed record EntryFilter(string? ParentId = null, string? SpiffeId = null, Selector? Selector = null);

/// <summary>One page of entries; <see cref="NextPageToken"/> is null on the last page.</summary>
public sealed record EntryPage(IReadOnlyList<RegistrationEntry> Entries, string? NextPageToken);

/// <summary>
/// What changed for a set of parents. <see cref="Revision"/> is the store revision the result is consistent with.
/// When <see cref="Full"/> is true the result is the complete state for those parents (the caller must drop
/// everything it had that is not in <see cref="Upserts"/>); otherwise it is a delta since the requested revision.
/// </summary>
public sealed record EntryChanges(long Revision, IReadOnlyList<RegistrationEntry> Upserts, IReadOnlyList<string> DeletedIds)
{
    public bool Full { get; init; }
}

/// <summary>
/// What changed for every parent since a revision (issue #16, the shared sync feed): live entries changed after it, and
/// the deletions after it with the parent each deleted entry had (an entry moved to another parent has a deletion for
/// its old one). <see cref="Revision"/> is the store revision the result is consistent with. When <see cref="Full"/> is
/// true the delta is not complete (the revision predates pruned deletions, or is beyond the store's) and the lists are
/// empty: the caller reads the state itself.
/// </summary>
public sealed record AllEntryChanges(long Revision, IReadOnlyList<RegistrationEntry> Upserts, IReadOnlyList<EntryDeletion> Deletions)
{
    public bool Full { get; init; }
}

/// <summary>An entry deleted from (or moved away from) <see cref="ParentId"/> at store revision <see cref="Revision"/>.</summary>
public sealed record EntryDeletion(string EntryId, string ParentId, long Revision);

/// <summary>An agent that passed node attestation.</summary>
/// <summary>A node's posture under continuous attestation.</summary>
public enum NodeStatus
{
    Active,
    Drifted,
}

public sealed record AttestedNode
{
    public required string SpiffeId { get; init; }
    /// <summary>e.g. "join_token".</summary>
    public required string AttestationType { get; init; }
    /// <summary>Current agent SVID serial number (hex).</summary>
    public required string SerialNumber { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }
    public bool Banned { get; init; }
    public IReadOnlyList<Selector> Selectors { get; init; } = [];
    /// <summary>Extra parent IDs this agent serves (node aliases).</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];
    /// <summary>Active, or drifted (continuous attestation failed: no new SVIDs until an admin readmits it).</summary>
    public NodeStatus Status { get; init; } = NodeStatus.Active;
    /// <summary>Why the node drifted (code and reason, one line); null while active.</summary>
    public string? StatusReason { get; init; }
    /// <summary>The continuous attestor's state for rechecks (<see cref="NodeAttestation.AttestedNodeFacts.AttestorState"/>); null for others.</summary>
    public byte[]? AttestorState { get; init; }
    /// <summary>Assigned by the store on create; kept on update.</summary>
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>Assigned by the store on every write.</summary>
    public DateTimeOffset UpdatedAt { get; init; }

    public bool Equals(AttestedNode? other) =>
        other is not null
        && SpiffeId == other.SpiffeId && AttestationType == other.AttestationType && SerialNumber == other.SerialNumber
        && ExpiresAt == other.ExpiresAt && Banned == other.Banned && Selectors.SequenceEqual(other.Selectors)
        && Aliases.SequenceEqual(other.Aliases, StringComparer.Ordinal)
        && Status == other.Status && StatusReason == other.StatusReason
        && (AttestorState ?? []).AsSpan().SequenceEqual(other.AttestorState ?? [])
        && CreatedAt == other.CreatedAt && UpdatedAt == other.UpdatedAt;

    public override int GetHashCode() => HashCode.Combine(SpiffeId, SerialNumber, UpdatedAt);
}

/// <summary>
/// A single-use join token. Only a hash of the secret is stored; <see cref="Id"/> is a public handle for audit and
/// admin listing, never the secret.
/// </summary>
public sealed record JoinToken(string Id, byte[] SecretHash, DateTimeOffset ExpiresAt, string? Alias, DateTimeOffset CreatedAt);

public enum JoinTokenOutcome { Consumed, Unknown, AlreadyUsed, Expired, Usable }

/// <summary>
/// Evidence a node attestor accepts only once, burnt in the transaction that stores the node
/// (<see cref="INodeStore.CreateAttestedAsync"/>). <see cref="Kind"/> names where it lives: <c>join_token</c> (the key is
/// the token's secret hash) is the one kind so far.
/// </summary>
public sealed record SingleUseEvidence(string Kind, byte[] Key)
{
    public const string JoinToken = "join_token";
}

/// <summary>What <see cref="INodeStore.CreateAttestedAsync"/> did; every outcome but Created changed nothing.</summary>
public enum NodeCreateOutcome { Created, EvidenceUnknown, EvidenceUsed, EvidenceExpired, NodeExists }

/// <summary><see cref="Token"/> is set for every outcome except <see cref="JoinTokenOutcome.Unknown"/>.</summary>
public sealed record JoinTokenConsumeResult(JoinTokenOutcome Outcome, JoinToken? Token);
