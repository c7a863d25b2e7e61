namespace Writ.Agent.Authz;

/// <summary>Stable codes of request-time denials (docs/errors.md, "Request-time decisions").</summary>
public static class AuthzCodes
{
    /// <summary>Neither a client certificate nor a JWT-SVID came with the request.</summary>
    public const string NoCredential = "WRIT-AUTHZ-NO-CREDENTIAL";

    /// <summary>The caller's certificate or JWT-SVID is not a valid SVID of a trusted trust domain (or is malformed).</summary>
    public const string BadCredential = "WRIT-AUTHZ-BAD-CREDENTIAL";

    /// <summary>A certificate-bound JWT-SVID presented without any certificate (a copied token looks just like this).</summary>
    public const string BoundJwtWithoutCertificate = "WRIT-AUTHZ-JWT-NEEDS-CERTIFICATE";

    /// <summary>The principal Envoy names is not the SPIFFE ID of the certificate it forwarded.</summary>
    public const string PrincipalMismatch = "WRIT-AUTHZ-PRINCIPAL-MISMATCH";

    /// <summary>The caller's credential (serial or JWT id) was revoked.</summary>
    public const string Revoked = "WRIT-AUTHZ-REVOKED";

    /// <summary>The caller is a local workload instance that exited.</summary>
    public const string InstanceGone = "WRIT-AUTHZ-INSTANCE-GONE";

    /// <summary>The caller is a local workload instance whose evidence changed since the credential was issued.</summary>
    public const string InstanceDrifted = "WRIT-AUTHZ-INSTANCE-DRIFTED";

    /// <summary>No call policy has reached the agent yet.</summary>
    public const string NoPolicy = "WRIT-AUTHZ-NO-POLICY";

    /// <summary>The destination is not named (nor configured) or is not a SPIFFE ID.</summary>
    public const string NoResource = "WRIT-AUTHZ-NO-RESOURCE";

    /// <summary>Cedar denied the call (no permit, or a forbid).</summary>
    public const string Denied = "WRIT-AUTHZ-DENIED";

    /// <summary>The request lacks what a decision needs (Envoy's attributes).</summary>
    public const string Malformed = "WRIT-AUTHZ-MALFORMED";
}
