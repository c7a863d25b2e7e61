namespace Writ.Agent.WorkloadAttestation.ImageSignatures;

/// <summary>
/// Which registered keys signed a container image (cosign "simple signing": a signed JSON payload naming the image
/// digest), looked up in the registry over the OCI distribution API (the <c>sha256-&lt;hex&gt;.sig</c> tag) or in a local
/// directory for air-gapped clusters. Used by the <c>k8s</c> workload attestor for <c>k8s:image-signed-by:&lt;key name&gt;</c>.
/// </summary>
public interface IImageSignatureVerifier
{
    /// <summary>
    /// The names of the registered keys with a valid signature over <paramref name="imageDigest"/> (<c>sha256:&lt;64 hex&gt;</c>)
    /// for <paramref name="imageReference"/> (the image as the pod names it, e.g. <c>registry.example/team/app:1.2</c>; its
    /// registry and repository say where the signature lives). Never throws for an unreachable registry or a bad
    /// signature: an unsigned or wrongly signed image has no signers, and a lookup that could not be made says why in
    /// <see cref="ImageSignatureResult.Error"/> (logged by the caller, retried later).
    /// </summary>
    ValueTask<ImageSignatureResult> SignersAsync(string imageReference, string imageDigest, CancellationToken ct);
}

/// <summary>The signers found (sorted, distinct) and, when the lookup could not be completed, why.</summary>
public sealed record ImageSignatureResult(IReadOnlyList<string> Signers, string? Error)
{
    public static ImageSignatureResult None { get; } = new([], null);
}
