using Writ.Tpm.Marshalling;

namespace Writ.Tpm.Commands;

/// <summary>A key made by TPM2_Create: its TPMT_PUBLIC and its TPM2B_PRIVATE contents (wrapped by the parent; useless outside that TPM).</summary>
public sealed record TpmKeyBlob(byte[] Public, byte[] Private);

/// <summary>A loaded object: its transient handle, TPMT_PUBLIC and name.</summary>
public sealed record TpmLoadedObject(uint Handle, byte[] Public, byte[] Name);

/// <summary>A TPMS_ATTEST the TPM made (quote, certification) and its TPMT_SIGNATURE, both as marshalled bytes.</summary>
public sealed record TpmSignedAttest(byte[] Attest, byte[] Signature);

/// <summary>An NV index's public area (the parts the client uses).</summary>
public sealed record TpmNvPublic(uint Index, ushort NameAlg, uint Attributes, ushort DataSize)
{
    public const uint AuthRead = 0x00040000;
    public const uint OwnerRead = 0x00020000;
}
