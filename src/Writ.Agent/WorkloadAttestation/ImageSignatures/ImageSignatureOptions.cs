namespace Writ.Agent.WorkloadAttestation.ImageSignatures;

/// <summary>
/// Image signature checks of the <c>k8s</c> workload attestor (<c>k8s.image_*</c> agent keys, docs/kubernetes.md): the
/// keys the identity team registered, where signatures come from, and how long a result is reused.
/// </summary>
public sealed record ImageSignatureOptions
{
    /// <summary>Directory of registered public keys (<c>k8s.image_keys_dir</c>): one PEM file per key, <c>&lt;name&gt;.pub</c>
    /// (ECDSA P-256 or Ed25519); the file name is the key name in <c>k8s:image-signed-by:&lt;name&gt;</c>. Null: no signature checks.</summary>
    public string? KeysDir { get; init; }

    /// <summary>Air-gapped clusters: a directory holding signatures instead of the registry (<c>k8s.image_signatures_dir</c>).</summary>
    public string? SignaturesDir { get; init; }

    /// <summary>PEM CA bundle registries' TLS certificates must chain to (<c>k8s.registry_ca</c>); null: the system roots.</summary>
    public string? RegistryCaPath { get; init; }

    /// <summary>How long a lookup's result is reused (<c>k8s.image_signature_cache_ttl</c>, default 10 min); a failed lookup is retried sooner.</summary>
    public TimeSpan CacheTtl { get; init; } = TimeSpan.FromMinutes(10);

    public bool Enabled => KeysDir is not null;
}
