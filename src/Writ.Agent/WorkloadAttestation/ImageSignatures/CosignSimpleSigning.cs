using System.Security.Cryptography;
using System.Text.Json;

namespace Writ.Agent.WorkloadAttestation.ImageSignatures;

/// <summary>
/// Cosign "simple signing" (sigstore/cosign specs/SIGNATURE_SPEC.md): a signature is a JSON payload
/// <c>{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":…},"type":"cosign container image signature"},"optional":…}</c>
/// and a base64 signature over its exact bytes. A signature counts for an image only when all of these hold: the payload's
/// bytes are the ones the signature manifest's layer digest names (registry lookups), the payload parses, its type is
/// cosign's, its <c>docker-manifest-digest</c> is the digest asked about, its <c>docker-reference</c> names the same
/// registry and repository as the image, and the signature verifies under a registered key.
/// </summary>
internal static class CosignSimpleSigning
{
    /// <summary>The media type of a signature layer in the <c>sha256-&lt;hex&gt;.sig</c> manifest.</summary>
    public const string LayerMediaType = "application/vnd.dev.cosign.simplesigning.v1+json";

    /// <summary>The layer annotation holding the base64 signature.</summary>
    public const string SignatureAnnotation = "dev.cosignproject.cosign/signature";

    /// <summary>The payload's <c>critical.type</c>.</summary>
    public const string PayloadType = "cosign container image signature";

    /// <summary>Largest payload considered (cosign's are well under 1 KiB plus the signer's annotations).</summary>
    public const int MaxPayloadBytes = 64 * 1024;

    /// <summary>
    /// The registered keys that signed <paramref name="payload"/> for <paramref name="image"/> at <paramref name="digest"/>,
    /// or why the signature does not count. <paramref name="layerDigest"/>, when given, must be the payload's SHA-256.
    /// </summary>
    public static (List<string> Signers, string? Refusal) Check(
        ImageReference image, string digest, ReadOnlySpan<byte> payload, string? base64Signature, string? layerDigest, RegisteredImageKeys keys)
    {
        if (payload.Length > MaxPayloadBytes)
            return ([], $"payload larger than {MaxPayloadBytes} bytes");
        if (layerDigest is not null && !string.Equals(layerDigest, "sha256:" + Convert.ToHexStringLower(SHA256.HashData(payload)), StringComparison.Ordinal))
            return ([], "the payload's sha256 differs from the layer digest");
        string? type, manifestDigest, dockerReference;
        try
        {
            // A duplicated member would let two readers of the payload see different digests: refused.
            using var doc = JsonDocument.Parse(payload.ToArray(), new JsonDocumentOptions { MaxDepth = 16, AllowDuplicateProperties = false });
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("critical", out var critical) || critical.ValueKind != JsonValueKind.Object)
                return ([], "payload has no critical object");
            type = StringAt(critical, "type");
            manifestDigest = critical.TryGetProperty("image", out var img) && img.ValueKind == JsonValueKind.Object ? StringAt(img, "docker-manifest-digest") : null;
            dockerReference = critical.TryGetProperty("identity", out var id) && id.ValueKind == JsonValueKind.Object ? StringAt(id, "docker-reference") : null;
        }
        catch (JsonException)
        {
            return ([], "payload is not JSON");
        }
        if (type != PayloadType)
            return ([], $"payload type is not '{PayloadType}'");
        if (!string.Equals(manifestDigest, digest, StringComparison.Ordinal))
            return ([], "payload signs another image digest");
        if (dockerReference is null || !ImageReference.TryParse(dockerReference, out var signedRepository, out _) || signedRepository != image)
            return ([], "payload's docker-reference names another repository");
        if (string.IsNullOrEmpty(base64Signature))
            return ([], "no signature");
        byte[] signature;
        try
        {
            signature = Convert.FromBase64String(base64Signature);
        }
        catch (FormatException)
        {
            return ([], "signature is not base64");
        }
        var signers = keys.Verify(payload, signature);
        return signers.Count == 0 ? ([], null) : (signers, null);
    }

    private static string? StringAt(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
