namespace Writ.Server.NodeAttestation.X509Pop;

/// <summary>The stable error codes of x509pop node attestation (listed in docs/errors.md).</summary>
public static class X509PopCodes
{
    /// <summary>The evidence or the answer is not the x509pop messages, or a certificate in it is not DER X.509.</summary>
    public const string Malformed = "WRIT-X509POP-MALFORMED";

    /// <summary>The chain has more certificates, or a certificate more bytes, than x509pop accepts.</summary>
    public const string ChainTooLarge = "WRIT-X509POP-CHAIN-TOO-LARGE";

    /// <summary>The chain does not verify to a CA of x509pop.ca_bundle (another CA, an intermediate that is no CA, a bad signature).</summary>
    public const string Untrusted = "WRIT-X509POP-UNTRUSTED";

    public const string Expired = "WRIT-X509POP-EXPIRED";

    public const string NotYetValid = "WRIT-X509POP-NOT-YET-VALID";

    /// <summary>The node certificate may not be used for this: no digitalSignature key usage, an EKU without clientAuth, a CA certificate.</summary>
    public const string LeafUsage = "WRIT-X509POP-LEAF-USAGE";

    /// <summary>The node certificate's key is not ECDSA P-256/P-384 or RSA ≥ 2048.</summary>
    public const string KeyUnsupported = "WRIT-X509POP-KEY-UNSUPPORTED";

    /// <summary>The answer is no signature by the node key over this attempt's nonce and CSR.</summary>
    public const string BadSignature = "WRIT-X509POP-BAD-SIGNATURE";

    /// <summary>x509pop.agent_path_template makes no valid SPIFFE ID from this certificate (e.g. a CN with spaces).</summary>
    public const string AgentId = "WRIT-X509POP-AGENT-ID";

    /// <summary>Start-up: x509pop.ca_bundle cannot be read or holds no CA certificate.</summary>
    public const string CaBundle = "WRIT-X509POP-CA-BUNDLE";
}
