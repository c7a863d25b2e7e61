using System.Security.Cryptography.X509Certificates;
using Writ.Tpm.Device;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;

namespace Writ.Tpm.Commands;

/// <summary>The endorsement key the agent uses: its certificate (DER, from NV) when the TPM has one, the template and its TPMT_PUBLIC.</summary>
public sealed record TpmEndorsementKey(byte[]? Certificate, uint? CertificateIndex, byte[] Template, byte[] Public);

/// <summary>What one challenge answer is made of (see <see cref="TpmOperations.AnswerChallenge"/>).</summary>
public sealed record TpmChallengeAnswer(byte[] Secret, TpmSignedAttest Quote, IReadOnlyList<TpmPcrValue> PcrValues, TpmSignedAttest Certify, byte[] Signature);

/// <summary>
/// The agent's TPM operations. Each one opens the TPM, runs its commands, flushes every transient object and session it
/// made (in a finally, also when a command fails) and closes the TPM, so other tools can use it in between and nothing
/// leaks on a TPM without a resource manager. Keys live as blobs (<see cref="TpmKeyBlob"/>) between operations and are
/// loaded under the EK again for each.
/// </summary>
public sealed class TpmOperations(TpmAddress address)
{
    /// <summary>Where the EK certificate may be (TCG EK Credential Profile), with the template of the key it certifies: RSA first.</summary>
    private static readonly (uint Index, Func<byte[]> Template)[] EkCertificates =
    [
        (TpmHandle.EkCertRsaNv, TpmTemplates.EkRsa2048),
        (TpmHandle.EkCertEccNv, TpmTemplates.EkEccP256),
        (TpmHandle.EkCertEccP256HighNv, TpmTemplates.EkEccP384High),
    ];

    public TpmAddress Address { get; } = address;

    /// <summary>
    /// The EK: the first EK certificate in NV (RSA 0x01C00002, else ECC P-256 0x01C0000A, else ECC P-384 0x01C00016 — the
    /// high-range template H-3, despite the constant's name) and the EK made from the matching default template (checked to be the certificate's key); without a certificate, the RSA (else ECC) default EK.
    /// </summary>
    public TpmEndorsementKey ReadEndorsement() => Run((tpm, _) =>
    {
        string? mismatch = null;
        foreach (var (index, template) in EkCertificates)
        {
            var der = tpm.ReadNv(index);
            if (der is null)
            {
                continue;
            }
            var t = template();
            var pub = CreateAndFlush(tpm, t);
            using var cert = LoadCertificate(der, index);
            if (TpmTemplates.SameKey(pub, cert))
            {
                return new TpmEndorsementKey(der, index, t, pub);
            }
            mismatch ??= $"the EK certificate at NV 0x{index:x8} is not for the EK of the TCG default template this agent supports";
        }
        if (mismatch is not null)
        {
            throw new TpmDeviceException($"the TPM at {Address}: {mismatch}");
        }
        TpmException? last = null;
        foreach (var t in (Func<byte[]>[])[TpmTemplates.EkRsa2048, TpmTemplates.EkEccP256])
        {
            try
            {
                var template = t();
                return new TpmEndorsementKey(null, null, template, CreateAndFlush(tpm, template));
            }
            catch (TpmException e)
            {
                last = e;
            }
        }
        throw new TpmDeviceException($"the TPM at {Address} has no EK certificate and cannot make a default EK: {last!.Message}");
    });

    /// <summary>A new key under the EK from <paramref name="template"/> (e.g. <see cref="TpmTemplates.AttestationKey"/>).</summary>
    public TpmKeyBlob CreateKey(TpmEndorsementKey ek, byte[] template) => Run((tpm, flush) =>
    {
        var ekHandle = flush(tpm.CreatePrimary(TpmHandle.Endorsement, ek.Template).Handle);
        return WithEkSession(tpm, ek, session => tpm.Create(ekHandle, session, template));
    });

    /// <summary>
    /// The tpm attestor's answer to the server's challenge, in one operation: ActivateCredential (AK + EK), a quote by
    /// the AK over <paramref name="pcrs"/> with the nonce and the PCR values it covers, Certify of the agent key by the AK
    /// over the nonce, and the agent key's signature over <paramref name="digestToSign"/>.
    /// </summary>
    public TpmChallengeAnswer AnswerChallenge(TpmEndorsementKey ek, TpmKeyBlob ak, TpmKeyBlob agentKey, ReadOnlySpan<byte> credentialBlob,
        ReadOnlySpan<byte> encryptedSecret, ReadOnlySpan<byte> nonce, IReadOnlyList<TpmPcrSelection> pcrs, ReadOnlySpan<byte> digestToSign)
    {
        var blob = credentialBlob.ToArray();
        var secret = encryptedSecret.ToArray();
        var n = nonce.ToArray();
        var digest = digestToSign.ToArray();
        return Run((tpm, flush) =>
        {
            var ekHandle = flush(tpm.CreatePrimary(TpmHandle.Endorsement, ek.Template).Handle);
            var akHandle = flush(LoadUnderEk(tpm, ek, ekHandle, ak));
            var keyHandle = flush(LoadUnderEk(tpm, ek, ekHandle, agentKey));
            var activated = WithEkSession(tpm, ek, session => tpm.ActivateCredential(akHandle, ekHandle, session, blob, secret));
            var (quote, values) = ConsistentQuote(tpm, akHandle, n, pcrs);
            var certify = tpm.Certify(keyHandle, akHandle, n);
            var signature = tpm.Sign(keyHandle, digest);
            return new TpmChallengeAnswer(activated, quote, values, certify, signature);
        });
    }

    /// <summary>A quote by the AK over <paramref name="pcrs"/> with <paramref name="nonce"/>, and the PCR values it covers (a recheck).</summary>
    public (TpmSignedAttest Quote, IReadOnlyList<TpmPcrValue> Values) Quote(TpmEndorsementKey ek, TpmKeyBlob ak, ReadOnlySpan<byte> nonce, IReadOnlyList<TpmPcrSelection> pcrs)
    {
        var n = nonce.ToArray();
        return Run((tpm, flush) =>
        {
            var ekHandle = flush(tpm.CreatePrimary(TpmHandle.Endorsement, ek.Template).Handle);
            var akHandle = flush(LoadUnderEk(tpm, ek, ekHandle, ak));
            return ConsistentQuote(tpm, akHandle, n, pcrs);
        });
    }

    /// <summary>
    /// Extends PCR <paramref name="index"/> of the SHA-256 bank by SHA-256(<paramref name="data"/>) (what a measured
    /// component does; `writ bench tpm` uses it to make a node drift).
    /// </summary>
    public void ExtendPcr(int index, ReadOnlySpan<byte> data)
    {
        var digest = System.Security.Cryptography.SHA256.HashData(data);
        Run((tpm, _) =>
        {
            tpm.PcrExtend(index, TpmAlg.Sha256, digest);
            return 0;
        });
    }

    /// <summary>PCR_Read, Quote, PCR_Read again: the values sent are the quoted ones unless a PCR changed in between (then again).</summary>
    private static (TpmSignedAttest, IReadOnlyList<TpmPcrValue>) ConsistentQuote(Tpm2 tpm, uint ak, byte[] nonce, IReadOnlyList<TpmPcrSelection> pcrs)
    {
        for (var attempt = 0; ; attempt++)
        {
            var before = tpm.PcrRead(pcrs);
            var quote = tpm.Quote(ak, nonce, pcrs);
            var after = tpm.PcrRead(pcrs);
            if (before.Zip(after).All(p => p.First.Digest.Span.SequenceEqual(p.Second.Digest.Span)) || attempt >= 4)
            {
                return (quote, after);
            }
        }
    }

    private static uint LoadUnderEk(Tpm2 tpm, TpmEndorsementKey ek, uint ekHandle, TpmKeyBlob blob) =>
        WithEkSession(tpm, ek, session => tpm.Load(ekHandle, session, blob).Handle);

    /// <summary>
    /// One command that uses the EK: through a fresh policy session satisfying PolicySecret(TPM_RH_ENDORSEMENT), flushed
    /// right after (a TPM holds only a few sessions); a high-range EK (userWithAuth) with the password session.
    /// </summary>
    private static T WithEkSession<T>(Tpm2 tpm, TpmEndorsementKey ek, Func<uint, T> command)
    {
        if (TpmTemplates.UsesAuthValue(ek.Template))
        {
            return command(TpmHandle.PasswordSession);
        }
        var session = tpm.StartEkPolicySession();
        try
        {
            return command(session);
        }
        finally
        {
            tpm.FlushQuietly(session);
        }
    }

    private static byte[] CreateAndFlush(Tpm2 tpm, byte[] template)
    {
        var ek = tpm.CreatePrimary(TpmHandle.Endorsement, template);
        tpm.FlushQuietly(ek.Handle);
        return ek.Public;
    }

    private X509Certificate2 LoadCertificate(byte[] der, uint index)
    {
        try
        {
            return X509CertificateLoader.LoadCertificate(der);
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new TpmDeviceException($"the TPM at {Address}: NV index 0x{index:x8} does not hold a DER certificate ({e.Message})", e);
        }
    }

    /// <summary>Opens the TPM, runs <paramref name="body"/> with a "flush this handle at the end" callback, flushes in reverse, closes.</summary>
    private T Run<T>(Func<Tpm2, Func<uint, uint>, T> body)
    {
        try
        {
            return RunOnce(body);
        }
        catch (TpmException e) when (!Address.IsDevice && TpmRc.Base(e.ResponseCode) is TpmRc.ObjectMemory or TpmRc.SessionMemory)
        {
            // A TCP TPM has no resource manager: objects and sessions of a process killed mid-operation (this agent's
            // previous run, say) stay loaded until someone flushes them, and the few slots run out. Nothing may keep
            // transient state across connections on such a TPM (every user opens it per operation), so reclaim the
            // slots once and retry. The kernel's /dev/tpmrm0 flushes a closed connection's handles itself.
            using (var tpm = Tpm2.Open(Address))
            {
                foreach (var first in (uint[])[0x80000000, 0x02000000, 0x03000000])
                {
                    foreach (var h in tpm.GetHandles(first))
                        tpm.FlushQuietly(h);
                }
            }
            return RunOnce(body);
        }
    }

    private T RunOnce<T>(Func<Tpm2, Func<uint, uint>, T> body)
    {
        using var tpm = Tpm2.Open(Address);
        var handles = new List<uint>();
        try
        {
            return body(tpm, h =>
            {
                handles.Add(h);
                return h;
            });
        }
        finally
        {
            for (var i = handles.Count - 1; i >= 0; i--)
            {
                tpm.FlushQuietly(handles[i]);
            }
        }
    }
}
