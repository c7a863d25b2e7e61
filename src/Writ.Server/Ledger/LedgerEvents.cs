using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>
/// The ledger events of admin changes (entries, agents, join tokens, policy). At is left unset: the store stamps it when
/// the events are appended in the same transaction as the change. Nothing secret goes in: no join-token secret, no key.
/// </summary>
public static class LedgerEvents
{
    public const string EntryCreated = "entry.created";
    public const string EntryUpdated = "entry.updated";
    public const string EntryDeleted = "entry.deleted";
    public const string NodeAttested = "node.attested";
    public const string NodeRenewed = "node.renewed";
    public const string NodeBanned = "node.banned";
    public const string NodeEvicted = "node.evicted";
    public const string NodeReattested = "node.reattested";
    public const string NodeDrifted = "node.drifted";
    public const string NodeReadmitted = "node.readmitted";
    public const string NodeAttestationRefused = "node.attestation_refused";
    public const string JoinTokenCreated = "join_token.created";
    public const string WorkloadRefused = "workload.refused";
    public const string PolicyPushed = "policy.pushed";
    public const string PolicyRolledBack = "policy.rolled_back";
    public const string TpmReferenceCreated = "tpm_reference.created";
    public const string TpmReferenceDeleted = "tpm_reference.deleted";
    public const string FederationCreated = "federation.created";
    public const string FederationUpdated = "federation.updated";
    public const string FederationDeleted = "federation.deleted";
    public const string FederationBundleUpdated = "federation.bundle_updated";

    /// <summary>The actor of what the server does by itself (e.g. installing the default policy).</summary>
    public const string ServerActor = "server";

    /// <summary>entry.created / entry.updated / entry.deleted: subject = the entry id, data = the entry.</summary>
    public static LedgerEvent Entry(string kind, string actor, RegistrationEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        return New(kind, actor, entry.Id, EntryData(entry));
    }

    public static LedgerJson EntryData(RegistrationEntry e)
    {
        var data = EntryDataBase(e);
        // Only when set, so the records of entries without federation keep the shape they had before issue #16.
        data = e.FederatesWith.Count > 0 ? data.Add("federates_with", e.FederatesWith) : data;
        // Only when set (issue #16 item 5), for the same reason.
        return e.OutagePool > 0 ? data.Add("outage_pool", e.OutagePool) : data;
    }

    private static LedgerJson EntryDataBase(RegistrationEntry e) => new LedgerJson()
        .Add("admin", e.Admin)
        .Add("dns_names", e.DnsNames)
        .Add("expires_at", e.ExpiresAt)
        .Add("hint", e.Hint)
        .Add("id", e.Id)
        .Add("jwt_ttl_seconds", e.JwtTtlSeconds)
        .Add("parent_id", e.ParentId)
        .Add("selectors", e.Selectors.Select(s => s.ToString()).ToList())
        .Add("spiffe_id", e.SpiffeId)
        .Add("x509_ttl_seconds", e.X509TtlSeconds);

    /// <summary>node.banned / node.evicted / node.attested / node.renewed: subject = the agent's SPIFFE ID.</summary>
    public static LedgerEvent Node(string kind, string actor, AttestedNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return New(kind, actor, node.SpiffeId, new LedgerJson()
            .Add("attestation_type", node.AttestationType)
            .Add("banned", node.Banned)
            .Add("expires_at", node.ExpiresAt)
            .Add("serial_number", node.SerialNumber));
    }

    /// <summary>
    /// node.drifted: subject = the agent's SPIFFE ID; data = the attestation type, the stable drift code, the one-line
    /// reason and what the server did (quarantine or revoke). Actor <see cref="ServerActor"/>.
    /// </summary>
    public static LedgerEvent NodeDrift(AttestedNode node, string code, string reason, string action)
    {
        ArgumentNullException.ThrowIfNull(node);
        return New(NodeDrifted, ServerActor, node.SpiffeId, new LedgerJson()
            .Add("action", action)
            .Add("attestation_type", node.AttestationType)
            .Add("code", code)
            .Add("reason", reason)
            .Add("serial_number", node.SerialNumber));
    }

    /// <summary>
    /// node.attestation_refused: a node attestation refused for its evidence (not a Cedar denial, which is its decision's
    /// record). Subject "node_attestation:{type}"; data = the type, the stable code, the one-line reason, the peer address
    /// and how many refusals over the per-minute limit went unrecorded before this one. Actor <see cref="ServerActor"/>.
    /// </summary>
    public static LedgerEvent NodeAttestationRefusal(string type, string peer, string code, string reason, long suppressedBefore) =>
        New(NodeAttestationRefused, ServerActor, "node_attestation:" + type, new LedgerJson()
            .Add("attestation_type", type)
            .Add("code", code)
            .Add("peer", peer.Length > 100 ? peer[..100] : peer)
            .Add("reason", reason.Length > 500 ? reason[..500] : reason)
            .Add("suppressed_before", suppressedBefore));

    /// <summary>
    /// workload.refused: a workload asked its agent for an identity and got none (no entry matches its evidence). Actor =
    /// the agent; subject "instance:{id}"; data = the code and reason the workload got, its selectors (what it was found to
    /// be), the attestors that failed for it, and how many of this agent's refusals over the per-minute limit went
    /// unrecorded before this one.
    /// </summary>
    public static LedgerEvent WorkloadRefusal(string agentId, Writ.Protocol.Evidence.WorkloadEvidence evidence, string code, string reason,
        IReadOnlyList<string> attestorErrors, long suppressedBefore)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        return New(WorkloadRefused, agentId, "instance:" + evidence.InstanceId, new LedgerJson()
            .Add("attestor_errors", attestorErrors)
            .Add("code", code)
            .Add("instance_id", evidence.InstanceId)
            .Add("reason", reason)
            .Add("selectors", evidence.Selectors.Select(s => s.ToString()).ToList())
            .Add("suppressed_before", suppressedBefore));
    }

    /// <summary>node.readmitted: subject = the agent's SPIFFE ID; data = the attestation type and the drift it had.</summary>
    public static LedgerEvent NodeReadmit(string actor, AttestedNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return New(NodeReadmitted, actor, node.SpiffeId, new LedgerJson()
            .Add("attestation_type", node.AttestationType)
            .Add("drift", node.StatusReason)
            .Add("serial_number", node.SerialNumber));
    }

    /// <summary>join_token.created: subject = the SPIFFE ID an agent attested with it gets; data = public id, alias, expiry (never the secret).</summary>
    public static LedgerEvent JoinToken(string actor, JoinToken token, string agentSpiffeId)
    {
        ArgumentNullException.ThrowIfNull(token);
        return New(JoinTokenCreated, actor, agentSpiffeId, new LedgerJson()
            .Add("alias", token.Alias)
            .Add("expires_at", token.ExpiresAt)
            .Add("token_id", token.Id));
    }

    /// <summary>
    /// policy.pushed / policy.rolled_back: subject "policy:{version}", data with "version":"{version}" (the policy store
    /// fills in the number it assigns, in the same transaction).
    /// </summary>
    public static LedgerEvent Policy(string kind, string actor, StoredPolicyVersion version, int policyCount)
    {
        ArgumentNullException.ThrowIfNull(version);
        return New(kind, actor, "policy:{version}", new LedgerJson()
            .Add("author", version.Author)
            .Add("comment", version.Comment)
            .Add("files", version.Files.Select(f => f.Name).ToList())
            .Add("policies", policyCount)
            .Add("rolled_back_from", version.RolledBackFrom)
            .Add("sha256", version.Sha256)
            .Add("version", "{version}"));
    }

    /// <summary>tpm_reference.created / tpm_reference.deleted: subject "tpm_reference:{name}", data = the set's name and PCR values.</summary>
    public static LedgerEvent TpmReference(string kind, string actor, TpmReferenceSet set)
    {
        ArgumentNullException.ThrowIfNull(set);
        return New(kind, actor, "tpm_reference:" + set.Name, new LedgerJson()
            .Add("name", set.Name)
            .Add("pcrs", set.Pcrs.Select(p => p.ToString()).ToList()));
    }

    /// <summary>federation.created / updated / deleted: subject = federation:TD, data = the relationship (and the bootstrap bundle's sequence and keys).</summary>
    public static LedgerEvent Federation(string kind, string actor, FederationRelationship r, Writ.Spiffe.Bundles.TrustBundle? bundle = null)
    {
        ArgumentNullException.ThrowIfNull(r);
        var data = new LedgerJson()
            .Add("bundle_endpoint_url", r.BundleEndpointUrl)
            .Add("endpoint_spiffe_id", r.EndpointSpiffeId)
            .Add("profile", r.Profile)
            .Add("trust_domain", r.TrustDomain);
        if (bundle is not null)
        {
            data.Add("bundle_sequence", bundle.Sequence ?? 0).Add("bundle_keys", Writ.Server.Federation.FederationRules.KeyIds(bundle));
        }
        return New(kind, actor, "federation:" + r.TrustDomain, data);
    }

    /// <summary>federation.bundle_updated: a refresh stored a changed foreign bundle (old and new sequence and key ids).</summary>
    public static LedgerEvent FederationBundle(string trustDomain, long? oldSequence, IReadOnlyList<string> oldKeys, Writ.Spiffe.Bundles.TrustBundle bundle) =>
        New(FederationBundleUpdated, ServerActor, "federation:" + trustDomain, new LedgerJson()
            .Add("new_keys", Writ.Server.Federation.FederationRules.KeyIds(bundle))
            .Add("new_sequence", bundle.Sequence ?? 0)
            .Add("old_keys", oldKeys)
            .Add("old_sequence", oldSequence)
            .Add("trust_domain", trustDomain));

    private static LedgerEvent New(string kind, string actor, string subject, LedgerJson data) => new()
    {
        At = default,
        Kind = kind,
        Actor = actor,
        Subject = subject,
        DataJson = data.ToString(),
    };
}
