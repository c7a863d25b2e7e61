namespace Writ.Server.NodeAttestation.Tpm;

/// <summary>
/// The tpm node attestor's own stable codes (docs/errors.md, "TPM"), next to the verifier's
/// <see cref="Writ.Tpm.Verification.TpmErrorCodes"/> (quote, certification and key attribute checks).
/// </summary>
public static class TpmNodeCodes
{
    /// <summary>The evidence or an answer is not the protobuf message it must be, a field is missing or oversized, or a TPM structure does not parse.</summary>
    public const string Malformed = "WRIT-TPM-EVIDENCE-MALFORMED";

    /// <summary>The EK is in no allow-list and its certificate chains to no configured manufacturer CA.</summary>
    public const string EkUntrusted = "WRIT-TPM-EK-UNTRUSTED";

    /// <summary>The EK certificate certifies another key than the EK public area sent.</summary>
    public const string EkCertificateMismatch = "WRIT-TPM-EK-CERT-MISMATCH";

    /// <summary>The EK public area lacks the attributes of an endorsement key (restricted decrypt, fixedTPM, fixedParent).</summary>
    public const string EkAttributes = "WRIT-TPM-EK-ATTRIBUTES";

    /// <summary>The activated secret is not the one the server's credential carried: the AK is not in the EK's TPM.</summary>
    public const string ActivationFailed = "WRIT-TPM-ACTIVATION-FAILED";

    /// <summary>The event log does not parse or does not replay to the quoted PCR values.</summary>
    public const string EventLog = "WRIT-TPM-EVENT-LOG";

    /// <summary>The CSR signature is not by the certified TPM-resident agent key over this nonce and CSR.</summary>
    public const string CsrSignature = "WRIT-TPM-CSR-SIGNATURE";

    /// <summary>Recheck: a PCR changed outside every reference set the node matched at attestation.</summary>
    public const string PcrDrift = "WRIT-TPM-PCR-DRIFT";

    /// <summary>Recheck: the node's stored attestor state is unreadable (re-attest the node).</summary>
    public const string StateInvalid = "WRIT-TPM-STATE-INVALID";
}
