using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Writ.Protocol;
using Writ.Protocol.Tpm;
using Writ.Tpm.Commands;
using Writ.Tpm.Device;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Writ.Tpm.Verification;

namespace Writ.Agent.NodeAttestation;

/// <summary>
/// <c>tpm</c>: the node proves its TPM 2.0. Evidence: the EK certificate from NV (RSA 0x01C00002, else ECC) and the EK
/// public, a new attestation key (AK) and a new agent key, both ECC P-256 created under the EK inside the TPM. The answer
/// to the server's challenge: ActivateCredential (the AK lives in the TPM holding the EK), a quote by the AK over the
/// server's nonce and PCRs with the PCR values and the event log, Certify of the agent key by the AK, and the agent key's
/// signature binding the agent's CSR to the nonce. The key blobs live only in this object (never on disk) and are loaded
/// into the TPM again for each operation; the TPM is opened per operation, so other tools may use it in between.
/// </summary>
public sealed class TpmAttestorClient : IContinuousNodeAttestorClient
{
    public const string AttestationType = "tpm";

    /// <summary>The kernel's measured-boot event log (used when the TPM is a device and the file exists).</summary>
    public const string DefaultEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements";

    /// <summary>The stable code of a TPM that cannot be used (unreachable, no EK, a TPM error).</summary>
    public const string TpmErrorCode = "WRIT-AGENT-TPM";

    /// <summary>The most bytes of event log sent (real logs are tens of KiB).</summary>
    public const int MaxEventLogBytes = 4 * 1024 * 1024;

    private readonly TpmOperations _tpm;
    private readonly string? _eventLogPath;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private TpmEndorsementKey? _ek;
    private TpmKeyBlob? _ak;
    private TpmKeyBlob? _agentKey;
    private byte[]? _csr;

    public TpmAttestorClient(TpmAddress address, string? eventLogPath)
    {
        ArgumentNullException.ThrowIfNull(address);
        _tpm = new TpmOperations(address);
        _eventLogPath = eventLogPath;
    }

    /// <summary>The event log to send: <paramref name="configured"/>, else the kernel's for a device TPM when it exists, else none.</summary>
    public static string? EventLogFor(TpmAddress address, string? configured) =>
        configured is { Length: > 0 } ? configured : address.IsDevice && File.Exists(DefaultEventLog) ? DefaultEventLog : null;

    public string Type => AttestationType;

    public string Description => $"TPM at {_tpm.Address}";

    public string? SingleUseFingerprint => null;

    /// <summary>The CSR the agent sends with the evidence: its SHA-256 is what the agent key signs with the nonce.</summary>
    public void UseCsr(ReadOnlyMemory<byte> csrDer) => _csr = csrDer.ToArray();

    /// <summary>The AK's and agent key's TPMT_PUBLIC (after <see cref="EvidenceAsync"/>).</summary>
    internal (byte[] Ak, byte[] AgentKey)? Keys => _ak is null || _agentKey is null ? null : (_ak.Public, _agentKey.Public);

    public Task<ReadOnlyMemory<byte>> EvidenceAsync(CancellationToken ct) => WithTpmAsync(() =>
    {
        if (_ek is null || _ak is null || _agentKey is null)
        {
            var ek = _tpm.ReadEndorsement();
            _ak = _tpm.CreateKey(ek, TpmTemplates.AttestationKey());
            _agentKey = _tpm.CreateKey(ek, TpmTemplates.AgentKey());
            _ek = ek;
        }
        var evidence = new TpmEvidence
        {
            EkCertificate = ByteString.CopyFrom(_ek.Certificate ?? []),
            EkPublic = ByteString.CopyFrom(_ek.Public),
            AkPublic = ByteString.CopyFrom(_ak.Public),
            AgentKeyPublic = ByteString.CopyFrom(_agentKey.Public),
        };
        return (ReadOnlyMemory<byte>)evidence.ToByteArray();
    }, ct);

    public Task<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> challenge, CancellationToken ct)
    {
        var c = Parse(TpmChallenge.Parser, challenge, "challenge");
        var csr = _csr ?? throw new InvalidOperationException("the tpm attestor answers a challenge only after UseCsr (the agent's CSR)");
        var (ek, ak, agentKey) = Attested();
        var pcrs = Selections(c.Pcrs);
        var nonce = c.Nonce.ToByteArray();
        var binding = TpmAgentKeyBinding.Digest(nonce, csr);
        return WithTpmAsync(() =>
        {
            var a = _tpm.AnswerChallenge(ek, ak, agentKey, c.CredentialBlob.Span, c.EncryptedSecret.Span, nonce, pcrs, binding);
            var answer = new TpmAnswer
            {
                ActivatedSecret = ByteString.CopyFrom(a.Secret),
                Quote = QuoteMessage(a.Quote, a.PcrValues),
                CertifyInfo = ByteString.CopyFrom(a.Certify.Attest),
                CertifySignature = ByteString.CopyFrom(a.Certify.Signature),
                CsrSignature = ByteString.CopyFrom(a.Signature),
            };
            return (ReadOnlyMemory<byte>)answer.ToByteArray();
        }, ct);
    }

    public Task<ReadOnlyMemory<byte>> AnswerRecheckAsync(ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var r = Parse(TpmRecheck.Parser, payload, "recheck");
        var (ek, ak, _) = Attested();
        var pcrs = Selections(r.Pcrs);
        var nonce = r.Nonce.ToByteArray();
        return WithTpmAsync(() =>
        {
            var (quote, values) = _tpm.Quote(ek, ak, nonce, pcrs);
            return (ReadOnlyMemory<byte>)new TpmRecheckAnswer { Quote = QuoteMessage(quote, values) }.ToByteArray();
        }, ct);
    }

    private (TpmEndorsementKey, TpmKeyBlob, TpmKeyBlob) Attested() =>
        _ek is { } ek && _ak is { } ak && _agentKey is { } key ? (ek, ak, key)
            : throw new InvalidOperationException("the tpm attestor was asked to answer before it made its evidence");

    private TpmQuote QuoteMessage(TpmSignedAttest quote, IReadOnlyList<TpmPcrValue> values)
    {
        var m = new TpmQuote { Attest = ByteString.CopyFrom(quote.Attest), Signature = ByteString.CopyFrom(quote.Signature), EventLog = ReadEventLog() };
        m.PcrValues.AddRange(values.Select(v => new PcrValue { Bank = TpmHash.BankName(v.HashAlg), Index = (uint)v.Index, Digest = ByteString.CopyFrom(v.Digest.Span) }));
        return m;
    }

    private ByteString ReadEventLog()
    {
        if (_eventLogPath is null)
        {
            return ByteString.Empty;
        }
        try
        {
            using var f = new FileStream(_eventLogPath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
            var buffer = new byte[MaxEventLogBytes + 1];
            var total = 0;
            int n;
            while (total < buffer.Length && (n = f.Read(buffer, total, buffer.Length - total)) > 0)
            {
                total += n;
            }
            if (total > MaxEventLogBytes)
            {
                throw new StartupRefusedException(TpmErrorCode, $"the TPM event log {_eventLogPath} is larger than {MaxEventLogBytes} bytes: pass the right --tpm-event-log");
            }
            return ByteString.CopyFrom(buffer, 0, total);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StartupRefusedException(TpmErrorCode, $"cannot read the TPM event log {_eventLogPath}: {e.Message} (--tpm-event-log; reading the kernel's needs root)");
        }
    }

    /// <summary>The server's PCR selection, checked (a known bank, PCRs 0–23).</summary>
    private static TpmPcrSelection[] Selections(PcrSelection? s)
    {
        if (s is null || s.Indices.Count == 0)
        {
            throw new AgentFatalException("the server asked for a quote over no PCRs: check that --server names a Writ server of this version");
        }
        if (!TpmHash.TryParseBank(s.Bank, out var hash))
        {
            throw new AgentFatalException($"the server asked for a quote over an unknown PCR bank '{s.Bank}': sha1, sha256, sha384 and sha512 are known");
        }
        if (s.Indices.Any(i => i >= TpmPcrSelection.MaxPcrs))
        {
            throw new AgentFatalException($"the server asked for a quote over PCRs outside 0..{TpmPcrSelection.MaxPcrs - 1}");
        }
        return [new TpmPcrSelection(hash, s.Indices.Select(i => (int)i).Distinct())];
    }

    private static T Parse<T>(MessageParser<T> parser, ReadOnlyMemory<byte> bytes, string what) where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(bytes.Span);
        }
        catch (InvalidProtocolBufferException)
        {
            throw new AgentFatalException($"the server sent a tpm {what} that is not a TpmChallenge/TpmRecheck message: check that --server names a Writ server of this version");
        }
    }

    /// <summary>One TPM operation at a time, off the caller's thread; TPM failures become one clear line (<see cref="TpmErrorCode"/>).</summary>
    private async Task<T> WithTpmAsync<T>(Func<T> operation, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            return await Task.Run(() =>
            {
                try
                {
                    return operation();
                }
                catch (Exception e) when (e is TpmException or TpmDeviceException or TpmFormatException)
                {
                    throw new StartupRefusedException(TpmErrorCode, e is TpmDeviceException ? e.Message : $"the TPM at {_tpm.Address}: {e.Message}");
                }
            }, ct).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }
}
