using System.Security.Cryptography;

namespace Writ.Tpm.Verification;

/// <summary>
/// What the TPM-resident agent key signs (TpmAnswer.csr_signature) to vouch for the agent's session key: SHA-256(
/// "writ-tpm-agent-key" || nonce || SHA-256(CSR DER)). One definition for the agent, which signs it with TPM2_Sign, and
/// the server, which verifies it.
/// </summary>
public static class TpmAgentKeyBinding
{
    /// <summary>The domain separation label.</summary>
    public static ReadOnlySpan<byte> Label => "writ-tpm-agent-key"u8;

    public static byte[] Digest(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> csrDer) =>
        SHA256.HashData([.. Label, .. nonce, .. SHA256.HashData(csrDer)]);
}
