using System.Security.Cryptography;
using Writ.Tpm.Device;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;

namespace Writ.Tpm.Commands;

/// <summary>
/// The TPM 2.0 commands Writ's agent needs, marshalled by hand over one open <see cref="ITpmTransport"/>. Open one per
/// operation (<see cref="Open"/>) and dispose it after; whoever creates a transient object or session flushes it in a
/// finally (<see cref="FlushQuietly"/>), since a TPM without a resource manager (swtpm) keeps them across connections.
/// Objects with an empty auth value are used with the password session (TPM_RS_PW); the EK through a policy session
/// that satisfies PolicySecret(TPM_RH_ENDORSEMENT) (<see cref="StartEkPolicySession"/>).
/// </summary>
public sealed class Tpm2 : IDisposable
{
    private const byte ContinueSession = 0x01;
    private const byte SessionPolicy = 0x01;
    private const int MaxRetries = 50;
    private readonly ITpmTransport _transport;

    public Tpm2(ITpmTransport transport) => _transport = transport;

    public static Tpm2 Open(TpmAddress address) => new(TpmDevice.Open(address));

    public void Dispose() => _transport.Dispose();

    private readonly record struct Response(uint[] Handles, byte[] Parameters);

    /// <summary>One command: header, handles, the authorization area (one session per entry), parameters; then the response checked and split.</summary>
    private Response Run(uint cc, ReadOnlySpan<uint> handles, ReadOnlySpan<uint> sessions, Action<TpmWriter>? parameters, int responseHandles = 0)
    {
        var w = new TpmWriter();
        w.WriteUInt16(sessions.Length > 0 ? TpmSt.Sessions : TpmSt.NoSessions).WriteUInt32(0).WriteUInt32(cc);
        foreach (var h in handles)
        {
            w.WriteUInt32(h);
        }
        if (sessions.Length > 0)
        {
            var auth = new TpmWriter();
            foreach (var s in sessions)
            {
                auth.WriteUInt32(s).WriteUInt16(0).WriteUInt8(ContinueSession).WriteUInt16(0);   // empty nonce and auth/HMAC
            }
            w.WriteUInt32((uint)auth.Length).WriteBytes(auth.AsSpan());
        }
        parameters?.Invoke(w);
        w.PatchUInt32(2, (uint)w.Length);
        byte[] response;
        uint rc;
        var tries = 0;
        do
        {
            // TPM_RC_RETRY, _YIELDED, _TESTING: the TPM asks for the same command again (swtpm does after key creation).
            response = _transport.Execute(w.AsSpan());
            rc = response.Length >= TpmDevice.HeaderSize ? System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(response.AsSpan(6)) : 0;
        }
        while (rc is TpmRc.Retry or TpmRc.Yielded or TpmRc.Testing && ++tries < MaxRetries);
        var r = new TpmReader(response);
        var tag = r.ReadUInt16();
        var size = r.ReadUInt32();
        r.ReadUInt32();
        if (size != response.Length)
        {
            throw new TpmFormatException($"{TpmCc.Name(cc)}: the response says {size} bytes but has {response.Length}");
        }
        if (rc != TpmRc.Success)
        {
            throw new TpmException(cc, rc);
        }
        var outHandles = new uint[responseHandles];
        for (var i = 0; i < responseHandles; i++)
        {
            outHandles[i] = r.ReadUInt32();
        }
        byte[] p = tag switch
        {
            TpmSt.Sessions => r.ReadBytes((int)Math.Min(r.ReadUInt32(), int.MaxValue)).ToArray(),   // then the response auth area, unused
            TpmSt.NoSessions => r.ReadBytes(r.Remaining).ToArray(),
            _ => throw new TpmFormatException($"{TpmCc.Name(cc)}: unknown response tag 0x{tag:x4}"),
        };
        return new Response(outHandles, p);
    }

    // ---- capabilities and public areas ----

    /// <summary>TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES) for one property; null when the TPM does not report it.</summary>
    public uint? GetTpmProperty(uint property)
    {
        var p = Run(TpmCc.GetCapability, [], [], w => w.WriteUInt32(TpmCap.TpmProperties).WriteUInt32(property).WriteUInt32(1)).Parameters;
        var r = new TpmReader(p);
        r.ReadUInt8();   // moreData
        if (r.ReadUInt32() != TpmCap.TpmProperties)
        {
            throw new TpmFormatException("TPM2_GetCapability answered another capability");
        }
        var count = r.ReadUInt32();
        for (var i = 0; i < count; i++)
        {
            var pt = r.ReadUInt32();
            var value = r.ReadUInt32();
            if (pt == property)
            {
                return value;
            }
        }
        return null;
    }

    /// <summary>TPM2_GetCapability(TPM_CAP_HANDLES) from <paramref name="first"/> within its handle type (e.g. every transient object).</summary>
    public List<uint> GetHandles(uint first)
    {
        var handles = new List<uint>();
        var next = first;
        while (true)
        {
            var p = Run(TpmCc.GetCapability, [], [], w => w.WriteUInt32(TpmCap.Handles).WriteUInt32(next).WriteUInt32(256)).Parameters;
            var r = new TpmReader(p);
            var more = r.ReadUInt8() != 0;
            r.ReadUInt32();
            var count = r.ReadUInt32();
            if (count > 256)
            {
                throw new TpmFormatException($"TPM2_GetCapability returned {count} handles");
            }
            for (var i = 0; i < count; i++)
            {
                var h = r.ReadUInt32();
                if ((h & 0xFF000000) == (first & 0xFF000000))
                {
                    handles.Add(h);
                }
                next = h + 1;
            }
            if (!more || count == 0 || handles.Count > 4096)
            {
                return handles;
            }
        }
    }

    /// <summary>TPM2_ReadPublic: the object's TPMT_PUBLIC and name.</summary>
    public TpmLoadedObject ReadPublic(uint handle)
    {
        var r = new TpmReader(Run(TpmCc.ReadPublic, [handle], [], null).Parameters);
        var pub = r.ReadSized().ToArray();
        var name = r.ReadSized().ToArray();
        return new TpmLoadedObject(handle, pub, name);
    }

    /// <summary>TPM2_NV_ReadPublic; null when the index is not defined.</summary>
    public TpmNvPublic? NvReadPublic(uint index)
    {
        byte[] p;
        try
        {
            p = Run(TpmCc.NvReadPublic, [index], [], null).Parameters;
        }
        catch (TpmException e) when (e.BaseCode == TpmRc.Handle)
        {
            return null;
        }
        var outer = new TpmReader(p);
        var r = new TpmReader(outer.ReadSized());
        var nv = new TpmNvPublic(r.ReadUInt32(), r.ReadUInt16(), r.ReadUInt32(), 0);
        r.ReadSized();   // authPolicy
        return nv with { DataSize = r.ReadUInt16() };
    }

    /// <summary>
    /// The whole contents of an NV index (TPM2_NV_Read in chunks of TPM_PT_NV_BUFFER_MAX), authorized by the index
    /// itself or by the owner with an empty password; null when the index is not defined.
    /// </summary>
    public byte[]? ReadNv(uint index)
    {
        var nv = NvReadPublic(index);
        if (nv is null)
        {
            return null;
        }
        var auth = (nv.Attributes & TpmNvPublic.AuthRead) != 0 ? index : TpmHandle.Owner;
        var chunk = (int)Math.Clamp(GetTpmProperty(TpmCap.PtNvBufferMax) ?? 512, 64, 4096);
        var data = new byte[nv.DataSize];
        for (var offset = 0; offset < data.Length;)
        {
            var n = Math.Min(chunk, data.Length - offset);
            var at = offset;
            var p = Run(TpmCc.NvRead, [auth, index], [TpmHandle.PasswordSession], w => w.WriteUInt16((ushort)n).WriteUInt16((ushort)at)).Parameters;
            var r = new TpmReader(p);
            var got = r.ReadSized();
            if (got.Length != n)
            {
                throw new TpmFormatException($"TPM2_NV_Read returned {got.Length} bytes of NV index 0x{index:x8} where {n} were asked");
            }
            got.CopyTo(data.AsSpan(offset));
            offset += n;
        }
        return data;
    }

    // ---- objects ----

    /// <summary>TPM2_CreatePrimary in <paramref name="hierarchy"/> (empty hierarchy auth) from a TPMT_PUBLIC template.</summary>
    public TpmLoadedObject CreatePrimary(uint hierarchy, byte[] template)
    {
        var resp = Run(TpmCc.CreatePrimary, [hierarchy], [TpmHandle.PasswordSession], w => WriteCreateParameters(w, template), responseHandles: 1);
        var handle = resp.Handles[0];
        try
        {
            var r = new TpmReader(resp.Parameters);
            var pub = r.ReadSized().ToArray();
            r.ReadSized();   // creationData
            r.ReadSized();   // creationHash
            SkipTicket(ref r);
            var name = r.ReadSized().ToArray();
            return new TpmLoadedObject(handle, pub, name);
        }
        catch
        {
            FlushQuietly(handle);
            throw;
        }
    }

    /// <summary>TPM2_Create: a new key under <paramref name="parent"/>, authorized by <paramref name="parentSession"/>.</summary>
    public TpmKeyBlob Create(uint parent, uint parentSession, byte[] template)
    {
        var r = new TpmReader(Run(TpmCc.Create, [parent], [parentSession], w => WriteCreateParameters(w, template)).Parameters);
        var priv = r.ReadSized().ToArray();
        var pub = r.ReadSized().ToArray();
        return new TpmKeyBlob(pub, priv);
    }

    /// <summary>TPM2_Load of a blob made by <see cref="Create"/> under the same parent. The caller flushes the handle.</summary>
    public TpmLoadedObject Load(uint parent, uint parentSession, TpmKeyBlob blob)
    {
        var resp = Run(TpmCc.Load, [parent], [parentSession], w => w.WriteSized(blob.Private).WriteSized(blob.Public), responseHandles: 1);
        var r = new TpmReader(resp.Parameters);
        return new TpmLoadedObject(resp.Handles[0], blob.Public, r.ReadSized().ToArray());
    }

    /// <summary>TPM2_FlushContext.</summary>
    public void FlushContext(uint handle) => Run(TpmCc.FlushContext, [], [], w => w.WriteUInt32(handle));

    /// <summary>Flushes, ignoring failures: for finally blocks, where the original error matters more.</summary>
    public void FlushQuietly(uint handle)
    {
        try
        {
            FlushContext(handle);
        }
        catch (Exception e) when (e is TpmException or TpmDeviceException or TpmFormatException)
        {
        }
    }

    // ---- sessions ----

    /// <summary>TPM2_StartAuthSession: an unsalted, unbound policy session with SHA-256 and no parameter encryption.</summary>
    public uint StartPolicySession()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var resp = Run(TpmCc.StartAuthSession, [TpmHandle.Null, TpmHandle.Null], [], w => w
            .WriteSized(nonce)
            .WriteSized([])                 // encryptedSalt
            .WriteUInt8(SessionPolicy)
            .WriteUInt16(TpmAlg.Null)       // symmetric: none
            .WriteUInt16(TpmAlg.Sha256), responseHandles: 1);
        return resp.Handles[0];
    }

    /// <summary>TPM2_PolicySecret(<paramref name="authHandle"/> with an empty password) on a policy session.</summary>
    public void PolicySecret(uint authHandle, uint policySession) =>
        Run(TpmCc.PolicySecret, [authHandle, policySession], [TpmHandle.PasswordSession], w => w
            .WriteSized([])                 // nonceTPM
            .WriteSized([])                 // cpHashA
            .WriteSized([])                 // policyRef
            .WriteUInt32(0));               // expiration

    /// <summary>
    /// A policy session satisfying the TCG default EK policy (PolicySecret(TPM_RH_ENDORSEMENT)); good for one command.
    /// The caller flushes it.
    /// </summary>
    public uint StartEkPolicySession()
    {
        var session = StartPolicySession();
        try
        {
            PolicySecret(TpmHandle.Endorsement, session);
            return session;
        }
        catch
        {
            FlushQuietly(session);
            throw;
        }
    }

    // ---- attestation ----

    /// <summary>
    /// TPM2_ActivateCredential: <paramref name="activate"/> (the AK, empty auth) and <paramref name="ek"/> (through
    /// <paramref name="ekSession"/>) recover the secret of a credential made for them (TPM2B_ID_OBJECT and
    /// TPM2B_ENCRYPTED_SECRET contents).
    /// </summary>
    public byte[] ActivateCredential(uint activate, uint ek, uint ekSession, ReadOnlySpan<byte> credentialBlob, ReadOnlySpan<byte> encryptedSecret)
    {
        var blob = credentialBlob.ToArray();
        var secret = encryptedSecret.ToArray();
        var p = Run(TpmCc.ActivateCredential, [activate, ek], [TpmHandle.PasswordSession, ekSession], w => w.WriteSized(blob).WriteSized(secret)).Parameters;
        var r = new TpmReader(p);
        return r.ReadSized().ToArray();
    }

    /// <summary>TPM2_Quote by <paramref name="signer"/> (its own scheme) over <paramref name="pcrs"/> with <paramref name="qualifyingData"/>.</summary>
    public TpmSignedAttest Quote(uint signer, ReadOnlySpan<byte> qualifyingData, IReadOnlyList<TpmPcrSelection> pcrs)
    {
        var data = qualifyingData.ToArray();
        var p = Run(TpmCc.Quote, [signer], [TpmHandle.PasswordSession], w =>
        {
            w.WriteSized(data).WriteUInt16(TpmAlg.Null);
            TpmPcrSelection.WriteList(w, pcrs);
        }).Parameters;
        return ReadSignedAttest(p);
    }

    /// <summary>TPM2_Certify: <paramref name="signer"/> attests that <paramref name="obj"/> is loaded in this TPM.</summary>
    public TpmSignedAttest Certify(uint obj, uint signer, ReadOnlySpan<byte> qualifyingData)
    {
        var data = qualifyingData.ToArray();
        var p = Run(TpmCc.Certify, [obj, signer], [TpmHandle.PasswordSession, TpmHandle.PasswordSession], w => w.WriteSized(data).WriteUInt16(TpmAlg.Null)).Parameters;
        return ReadSignedAttest(p);
    }

    /// <summary>TPM2_Sign of a digest by an unrestricted key (its own scheme; no hash-check ticket needed): the TPMT_SIGNATURE.</summary>
    public byte[] Sign(uint key, ReadOnlySpan<byte> digest)
    {
        var d = digest.ToArray();
        return Run(TpmCc.Sign, [key], [TpmHandle.PasswordSession], w => w
            .WriteSized(d)
            .WriteUInt16(TpmAlg.Null)
            .WriteUInt16(TpmSt.Hashcheck).WriteUInt32(TpmHandle.Null).WriteSized([])).Parameters;
    }

    /// <summary>TPM2_PCR_Extend of PCR <paramref name="index"/> in one bank by <paramref name="digest"/> (the platform's password auth, empty).</summary>
    public void PcrExtend(int index, ushort hash, ReadOnlySpan<byte> digest)
    {
        var d = digest.ToArray();
        Run(TpmCc.PcrExtend, [(uint)index], [TpmHandle.PasswordSession], w => w.WriteUInt32(1).WriteUInt16(hash).WriteBytes(d));
    }

    /// <summary>
    /// TPM2_PCR_Read of every requested PCR: a TPM returns at most 8 per call, so this asks again for the rest, and starts
    /// over when the PCR update counter changes in between (the values must come from one moment).
    /// </summary>
    public List<TpmPcrValue> PcrRead(IReadOnlyList<TpmPcrSelection> pcrs)
    {
        for (var attempt = 0; ; attempt++)
        {
            var values = new List<TpmPcrValue>();
            var remaining = pcrs.Select(s => (Hash: s.HashAlg, Indices: new SortedSet<int>(s.Indices))).Where(s => s.Indices.Count > 0).ToList();
            uint? counter = null;
            var changed = false;
            while (remaining.Count > 0 && !changed)
            {
                var p = Run(TpmCc.PcrRead, [], [], w => TpmPcrSelection.WriteList(w, remaining.Select(s => new TpmPcrSelection(s.Hash, s.Indices)).ToList())).Parameters;
                var r = new TpmReader(p);
                var update = r.ReadUInt32();
                changed = counter is { } c && c != update;
                counter = update;
                var selected = TpmPcrSelection.Read(ref r);
                var digests = r.ReadUInt32();
                var got = 0;
                foreach (var s in selected)
                {
                    foreach (var i in s.Indices)
                    {
                        if (got++ >= digests)
                        {
                            throw new TpmFormatException("TPM2_PCR_Read returned fewer digests than PCRs selected");
                        }
                        var digest = r.ReadSized().ToArray();
                        var bank = remaining.FindIndex(x => x.Hash == s.HashAlg);
                        if (bank < 0 || !remaining[bank].Indices.Remove(i))
                        {
                            throw new TpmFormatException($"TPM2_PCR_Read returned PCR {s.Bank}:{i}, which was not asked for");
                        }
                        values.Add(new TpmPcrValue(s.HashAlg, i, digest));
                    }
                }
                if (got == 0)
                {
                    var missing = string.Join(", ", remaining.Select(x => $"{TpmHash.BankName(x.Hash)}:{string.Join(',', x.Indices)}"));
                    throw new TpmDeviceException($"the TPM returned no value for PCRs {missing}: is that PCR bank allocated (tpm2_pcrallocate)?");
                }
                remaining.RemoveAll(x => x.Indices.Count == 0);
            }
            if (!changed)
            {
                return [.. values.OrderBy(v => v.HashAlg).ThenBy(v => v.Index)];
            }
            if (attempt >= 4)
            {
                throw new TpmDeviceException("the PCRs kept changing while they were read: retry when the node is quiet");
            }
        }
    }

    // ---- helpers ----

    private static void WriteCreateParameters(TpmWriter w, byte[] template)
    {
        w.WriteSized(s => s.WriteSized([]).WriteSized([]));   // TPM2B_SENSITIVE_CREATE: empty userAuth, no data
        w.WriteSized(template);                              // TPM2B_PUBLIC
        w.WriteSized([]);                                    // outsideInfo
        w.WriteUInt32(0);                                    // creationPCR: none
    }

    private static void SkipTicket(ref TpmReader r)
    {
        r.ReadUInt16();
        r.ReadUInt32();
        r.ReadSized();
    }

    private static TpmSignedAttest ReadSignedAttest(byte[] parameters)
    {
        var r = new TpmReader(parameters);
        var attest = r.ReadSized().ToArray();
        var signature = r.ReadBytes(r.Remaining).ToArray();   // TPMT_SIGNATURE is the last parameter
        return new TpmSignedAttest(attest, signature);
    }
}
