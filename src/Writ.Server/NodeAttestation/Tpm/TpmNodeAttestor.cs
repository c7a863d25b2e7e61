using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Protocol.Tpm;
using Writ.Server.Configuration;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Tpm.EventLog;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Writ.Tpm.Verification;

namespace Writ.Server.NodeAttestation.Tpm;

/// <summary>
/// <c>tpm</c>: TPM 2.0 node attestation with credential activation, a TPM-resident agent key and continuous PCR quotes
/// (issue #14; docs/node-attestation.md). Evidence: <see cref="TpmEvidence"/> (EK certificate and/or EK public, AK public,
/// agent key public). The server checks the EK (certificate chain to <c>tpm.ek_ca_dir</c> and/or hash in
/// <c>tpm.ek_hashes</c>), the AK and agent key attributes, makes a credential to the EK over the AK's name with a random
/// secret, and sends ONE <see cref="TpmChallenge"/> (credential, nonce, PCRs). The <see cref="TpmAnswer"/> must carry the
/// activated secret (the AK is in the EK's TPM), a quote by the AK over the nonce and PCRs whose reported values hash to
/// its digest (and that the event log, when sent, replays to), a certification of the agent key by the AK over the nonce
/// (the agent key is in the same TPM), and a signature by the agent key over
/// SHA-256("writ-tpm-agent-key" || nonce || SHA-256(CSR DER)) (the CSR's session key is vouched for by the TPM-resident key
/// now). Agent ID <c>spiffe://TD/writ/agent/tpm/EK-HASH</c>. Re-quotes: <see cref="NewRecheck"/> / <see cref="AppraiseAsync"/>.
/// </summary>
public sealed class TpmNodeAttestor(TpmOptions options, ITpmReferenceSetStore references) : IContinuousNodeAttestor
{
    public const string TypeName = "tpm";

    private const int NonceBytes = 32;
    private const int SecretBytes = 32;
    private const int MaxCertificateBytes = 8 * 1024;
    private const int MaxStructureBytes = 2 * 1024;

    private readonly TpmPcrSelection _selection = new(TpmHash.TryParseBank(options.PcrBank, out var alg) ? alg : TpmAlg.Sha256, options.PcrIndices);

    public string Type => TypeName;

    public TimeSpan RecheckInterval => options.RequoteInterval;

    public TimeSpan RecheckGrace => options.RequoteGrace;

    public DriftAction DriftAction => options.DriftAction;

    public async Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        ArgumentNullException.ThrowIfNull(challenge);
        var ev = Parse(TpmEvidence.Parser, evidence.Payload, "the TPM evidence");
        Bounded(ev.EkCertificate, MaxCertificateBytes, "ek_certificate", optional: true);
        var ek = PublicArea(ev.EkPublic, "ek_public");
        var ak = PublicArea(ev.AkPublic, "ak_public");
        var agentKey = PublicArea(ev.AgentKeyPublic, "agent_key_public");

        var (ekHash, ekIssuer) = CheckEk(ek, ev.EkCertificate.Memory, evidence.Now);
        Verify(() => TpmAttestationCheck.CheckAk(ak));
        Verify(() => TpmAttestationCheck.CheckAgentKey(agentKey));

        var nonce = RandomNumberGenerator.GetBytes(NonceBytes);
        var secret = RandomNumberGenerator.GetBytes(SecretBytes);
        var credential = Verify(() => TpmCredential.Make(ek, ak.Name(), secret));
        var request = new TpmChallenge
        {
            CredentialBlob = ByteString.CopyFrom(credential.CredentialBlob),
            EncryptedSecret = ByteString.CopyFrom(credential.EncryptedSecret),
            Nonce = ByteString.CopyFrom(nonce),
            Pcrs = SelectionProto(_selection),
        };
        var answer = Parse(TpmAnswer.Parser, await challenge(request.ToByteArray(), ct).ConfigureAwait(false), "the TPM challenge answer");

        if (!TpmCredential.SecretMatches(secret, answer.ActivatedSecret.Span))
        {
            throw Refused(TpmNodeCodes.ActivationFailed,
                "the activated secret is not the server's: the AK does not live in the TPM that holds the EK (or the credential was not activated with this EK)");
        }
        var quote = answer.Quote ?? throw Refused(TpmNodeCodes.Malformed, "the TPM answer has no quote: answer the challenge with a quote over its nonce and PCRs", WritErrorKind.InvalidArgument);
        var (values, secureBoot) = Verify(() => CheckQuote(ak, quote, nonce, _selection));
        Bounded(answer.CertifyInfo, MaxStructureBytes, "certify_info");
        Bounded(answer.CertifySignature, MaxStructureBytes, "certify_signature");
        Verify(() => TpmAttestationCheck.VerifyCertify(ak, answer.CertifyInfo.Span, answer.CertifySignature.Span, nonce, agentKey));
        CheckCsrSignature(agentKey, answer.CsrSignature, nonce, evidence.Csr.Span);

        var sets = await references.ListAsync(ct).ConfigureAwait(false);
        var matched = Satisfied(sets, _selection.Bank, values);
        var state = new TpmNodeState(ekHash, ekIssuer, ak.Bytes.ToArray(), _selection.Bank, values, matched, secureBoot);
        var agentId = SpiffeId.FromSegments(evidence.TrustDomain, "writ", "agent", TypeName, ekHash);
        return new AttestedNodeFacts(TypeName, agentId, state.Selectors(matched), [], null) { AttestorState = state.Serialize() };
    }

    public NodeRecheck NewRecheck(AttestedNode node, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(node);
        var nonce = RandomNumberGenerator.GetBytes(NonceBytes);
        var selection = node.AttestorState is { } bytes && TpmNodeState.TryParse(bytes) is { } state ? StateSelection(state) : _selection;
        var payload = new TpmRecheck { Nonce = ByteString.CopyFrom(nonce), Pcrs = SelectionProto(selection) }.ToByteArray();
        return new NodeRecheck(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)), payload, nonce, now);
    }

    public async Task<NodeAppraisal> AppraiseAsync(AttestedNode node, NodeRecheck recheck, ReadOnlyMemory<byte> answer, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(recheck);
        if (node.AttestorState is not { } stored || TpmNodeState.TryParse(stored) is not { } state)
            return NodeAppraisal.Drifted(TpmNodeCodes.StateInvalid, "the node's TPM attestor state is missing or unreadable: evict the node and let it attest again");
        Dictionary<int, string> values;
        bool? secureBoot;
        try
        {
            var ak = TpmPublic.Parse(state.AkPublic);
            var reply = Parse(TpmRecheckAnswer.Parser, answer, "the TPM re-quote answer");
            var quote = reply.Quote ?? throw Refused(TpmNodeCodes.Malformed, "the re-quote answer has no quote", WritErrorKind.InvalidArgument);
            (values, secureBoot) = CheckQuote(ak, quote, recheck.Expected.Span, StateSelection(state));
        }
        catch (TpmVerificationException e)
        {
            return NodeAppraisal.Drifted(e.Code, e.Message);
        }
        catch (WritException e)
        {
            return NodeAppraisal.Drifted(e.Code, e.Message);
        }
        catch (TpmFormatException e)
        {
            return NodeAppraisal.Drifted(TpmNodeCodes.StateInvalid, $"the node's stored AK does not parse ({e.Message}): evict the node and let it attest again");
        }

        var sets = await references.ListAsync(ct).ConfigureAwait(false);
        if (Drift(state, values, sets) is { } reason)
            return NodeAppraisal.Drifted(TpmNodeCodes.PcrDrift, reason);
        var next = state with { Pcrs = values, SecureBoot = secureBoot ?? state.SecureBoot };
        return NodeAppraisal.Ok(next.Selectors(Satisfied(sets, state.Bank, values)), next.Serialize());
    }

    /// <summary>
    /// A re-attestation (agent restart or renewal) is held to the same baseline as a re-quote: its freshly quoted PCRs may
    /// differ from the stored ones only inside a reference set matched at attestation, else the node drifts instead of
    /// getting a new baseline. PCRs or a bank the stored state does not have (the configuration changed) are not compared.
    /// </summary>
    public async Task<NodeAppraisal?> AppraiseReattestationAsync(AttestedNode node, AttestedNodeFacts facts, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(facts);
        if (node.AttestorState is not { } stored || TpmNodeState.TryParse(stored) is not { } state
            || facts.AttestorState is not { } fresh || TpmNodeState.TryParse(fresh) is not { } now
            || !string.Equals(state.Bank, now.Bank, StringComparison.Ordinal))
        {
            return null;
        }
        var values = now.Pcrs.Where(p => state.Pcrs.ContainsKey(p.Key)).ToDictionary(p => p.Key, p => p.Value);
        var sets = await references.ListAsync(ct).ConfigureAwait(false);
        return Drift(state, values, sets) is { } reason ? NodeAppraisal.Drifted(TpmNodeCodes.PcrDrift, $"on attesting again: {reason}") : null;
    }

    /// <summary>Why <paramref name="values"/> are drift from <paramref name="state"/>'s PCRs, or null when every change is allowed.</summary>
    private static string? Drift(TpmNodeState state, IReadOnlyDictionary<int, string> values, IReadOnlyList<TpmReferenceSet> sets)
    {
        var attestedSets = sets.Where(s => state.AttestedSets.Contains(s.Name, StringComparer.Ordinal)).ToList();
        foreach (var (index, now) in values.OrderBy(v => v.Key))
        {
            var before = state.Pcrs.TryGetValue(index, out var b) ? b : "";
            if (string.Equals(before, now, StringComparison.Ordinal))
                continue;
            // A change is allowed only inside a set matched at attestation that names this PCR and is still satisfied.
            var allowedBy = attestedSets.FirstOrDefault(s => TpmReferenceMatcher.Covers(s, state.Bank, index) && Satisfied([s], state.Bank, values).Count == 1);
            if (allowedBy is null)
            {
                return $"PCR {state.Bank}:{index} changed from {Short(before)} to {Short(now)}, outside the node's reference sets ({(state.AttestedSets.Count == 0 ? "none matched at attestation" : string.Join(", ", state.AttestedSets))}): check the node; once its PCRs are back to their reference values re-admit it ('writ agent readmit'), or, for an intended change, evict it ('writ agent evict') so it attests afresh";
            }
        }
        return null;
    }

    /// <summary>
    /// The EK: its attributes, the certificate (when sent) certifies this very key, and trust by allow-list or by chain.
    /// Returns the EK hash and, when the certificate chained to a configured CA, its issuer's key id (AKI).
    /// </summary>
    private (string EkHash, string? Issuer) CheckEk(TpmPublic ek, ReadOnlyMemory<byte> certificateDer, DateTimeOffset now)
    {
        const TpmaObject ekRequired = TpmaObject.Restricted | TpmaObject.Decrypt | TpmaObject.FixedTpm | TpmaObject.FixedParent;
        if ((ek.Attributes & (ekRequired | TpmaObject.SignEncrypt)) != ekRequired)
        {
            throw Refused(TpmNodeCodes.EkAttributes,
                $"ek_public has attributes {ek.Attributes}: an endorsement key is a restricted decryption key with fixedTPM and fixedParent; send the TPM's EK (TCG default template)");
        }
        // The credential's 32-byte secret must fit the EK's name digest (a SHA-1 name would fail MakeCredential).
        if (ek.NameAlg == TpmAlg.Sha1)
            throw Refused(TpmNodeCodes.EkAttributes, "ek_public has a SHA-1 name algorithm: send the TPM's EK made from a SHA-256 or stronger template (TCG default template)");
        var ekHash = Verify(ek.EkHash);
        X509Certificate2? certificate = null;
        try
        {
            if (!certificateDer.IsEmpty)
            {
                try
                {
                    certificate = X509CertificateLoader.LoadCertificate(certificateDer.Span);
                }
                catch (CryptographicException)
                {
                    throw Refused(TpmNodeCodes.Malformed, "ek_certificate is not a DER X.509 certificate: send the certificate from the TPM's EK certificate NV index", WritErrorKind.InvalidArgument);
                }
                if (!ek.HasSameKey(certificate))
                    throw Refused(TpmNodeCodes.EkCertificateMismatch, "the EK certificate certifies another key than ek_public: send the certificate of this TPM's EK");
            }
            string? chainProblem = null;
            if (certificate is not null && options.EkCaCertificates.Count > 0)
            {
                chainProblem = ChainProblem(certificate, now, out var issuer);
                if (chainProblem is null)
                    return (ekHash, issuer);
            }
            if (options.EkHashes.Contains(ekHash))
                return (ekHash, null);
            var why = options.EkCaCertificates.Count == 0 ? "it is not in tpm.ek_hashes"
                : certificate is null ? "it is not in tpm.ek_hashes and no EK certificate was sent"
                : $"it is not in tpm.ek_hashes and its certificate does not chain to a CA in tpm.ek_ca_dir ({chainProblem})";
            throw Refused(TpmNodeCodes.EkUntrusted, $"the TPM's EK {ekHash} is not trusted: {why}; add its manufacturer CA to tpm.ek_ca_dir or its hash to tpm.ek_hashes");
        }
        finally
        {
            certificate?.Dispose();
        }
    }

    /// <summary>Null when <paramref name="ek"/> chains to a CA of <c>tpm.ek_ca_dir</c> at <paramref name="now"/>; else why not.</summary>
    private string? ChainProblem(X509Certificate2 ek, DateTimeOffset now, out string? issuerKeyId)
    {
        issuerKeyId = null;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = now.UtcDateTime;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        foreach (var ca in options.EkCaCertificates)
        {
            if (ca.SubjectName.RawData.AsSpan().SequenceEqual(ca.IssuerName.RawData))
                chain.ChainPolicy.CustomTrustStore.Add(ca);
            else
                chain.ChainPolicy.ExtraStore.Add(ca);
        }
        chain.Build(ek);
        // EK certificates mark their subject alternative name (TPM manufacturer, model, version as a directoryName)
        // critical; a platform that does not process it reports it, so it alone is accepted when every critical
        // extension is one an EK certificate is known to carry. Anything else (expired, untrusted root, partial chain,
        // bad signature, another unhandled critical extension) refuses the chain.
        var problems = chain.ChainStatus.Where(s => s.Status != X509ChainStatusFlags.NoError
            && !(s.Status == X509ChainStatusFlags.HasNotSupportedCriticalExtension && OnlyKnownCriticalExtensions(ek))).ToList();
        if (problems.Count > 0)
            return string.Join("; ", problems.Select(p => p.Status.ToString()).Distinct());
        if (chain.ChainElements.Count < 2)
            return "the certificate is itself a CA of the directory, not an EK certificate";
        issuerKeyId = ek.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().FirstOrDefault()?.KeyIdentifier is { } aki
            ? Convert.ToHexStringLower(aki.Span)
            : chain.ChainElements.Count > 1 ? chain.ChainElements[1].Certificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>().FirstOrDefault()?.SubjectKeyIdentifier?.ToLowerInvariant() : null;
        return null;
    }

    private static readonly HashSet<string> KnownCriticalExtensions = new(StringComparer.Ordinal)
    {
        "2.5.29.17",   // subjectAltName (TPM manufacturer attributes)
        "2.5.29.15",   // keyUsage
        "2.5.29.19",   // basicConstraints
        "2.5.29.37",   // extKeyUsage (tcg-kp-EKCertificate)
        "2.5.29.32",   // certificatePolicies
        "2.5.29.9",    // subjectDirectoryAttributes (TPM specification)
    };

    private static bool OnlyKnownCriticalExtensions(X509Certificate2 c) =>
        c.Extensions.Where(e => e.Critical).All(e => e.Oid?.Value is { } oid && KnownCriticalExtensions.Contains(oid));

    /// <summary>
    /// The quote by <paramref name="ak"/> over <paramref name="nonce"/> and exactly <paramref name="selection"/>, its values,
    /// and the event log (when sent) replaying to them. Returns the PCR values as hex and the log's secure boot state.
    /// </summary>
    private static (Dictionary<int, string> Values, bool? SecureBoot) CheckQuote(TpmPublic ak, TpmQuote quote, ReadOnlySpan<byte> nonce, TpmPcrSelection selection)
    {
        Bounded(quote.Attest, MaxStructureBytes, "quote.attest");
        Bounded(quote.Signature, MaxStructureBytes, "quote.signature");
        if (quote.PcrValues.Count > TpmPcrSelection.MaxPcrs)
            throw Refused(TpmNodeCodes.Malformed, $"the quote reports {quote.PcrValues.Count} PCR values; at most {TpmPcrSelection.MaxPcrs}", WritErrorKind.InvalidArgument);
        var values = new List<TpmPcrValue>(quote.PcrValues.Count);
        foreach (var v in quote.PcrValues)
        {
            if (!TpmHash.TryParseBank(v.Bank, out var bankAlg) || v.Index >= TpmPcrSelection.MaxPcrs || v.Digest.Length > 64)
                throw Refused(TpmNodeCodes.Malformed, $"a reported PCR value names bank '{Printable(v.Bank)}' index {v.Index}: report sha1/sha256/sha384 PCRs 0-23", WritErrorKind.InvalidArgument);
            values.Add(new TpmPcrValue(bankAlg, (int)v.Index, v.Digest.Memory));
        }
        TpmAttestationCheck.VerifyQuote(ak, quote.Attest.Span, quote.Signature.Span, nonce, [selection], values);
        var hex = values.ToDictionary(v => v.Index, v => Convert.ToHexStringLower(v.Digest.Span));

        bool? secureBoot = null;
        if (!quote.EventLog.IsEmpty)
        {
            if (quote.EventLog.Length > TcgEventLog.MaxLogBytes)
                throw Refused(TpmNodeCodes.Malformed, $"the event log is {quote.EventLog.Length} bytes, more than {TcgEventLog.MaxLogBytes}", WritErrorKind.InvalidArgument);
            IReadOnlyDictionary<int, byte[]> replayed;
            try
            {
                var log = TcgEventLog.Parse(quote.EventLog.Span);
                replayed = log.Replay(selection.Bank);
                // The Secure Boot state is measured into PCR 7: believe the log's word only when PCR 7 was quoted and the
                // log replays to it (checked below), never from a log whose PCR 7 the TPM did not vouch for.
                secureBoot = selection.Indices.Contains(7) && hex.ContainsKey(7) && log.Replay(selection.Bank).ContainsKey(7) ? log.SecureBoot : null;
            }
            catch (TpmFormatException e)
            {
                throw Refused(TpmNodeCodes.EventLog, $"the event log is not a TCG event log Writ accepts: {e.Message}");
            }
            foreach (var (index, digest) in replayed)
            {
                if (hex.TryGetValue(index, out var quoted) && !string.Equals(quoted, Convert.ToHexStringLower(digest), StringComparison.Ordinal))
                {
                    throw Refused(TpmNodeCodes.EventLog,
                        $"the event log replays PCR {selection.Bank}:{index} to {Short(Convert.ToHexStringLower(digest))}, but the TPM quoted {Short(quoted)}: the log is not the one measured into this TPM");
                }
            }
        }
        return (hex, secureBoot);
    }

    private static void CheckCsrSignature(TpmPublic agentKey, ByteString signature, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> csr)
    {
        Bounded(signature, MaxStructureBytes, "csr_signature");
        var digest = TpmAgentKeyBinding.Digest(nonce, csr);
        bool ok;
        try
        {
            ok = !csr.IsEmpty && TpmtSignature.Parse(signature.Span).VerifyDigest(agentKey, digest);
        }
        catch (TpmFormatException e)
        {
            throw Refused(TpmNodeCodes.CsrSignature, $"csr_signature is not a TPMT_SIGNATURE Writ accepts ({e.Message}): sign with the TPM-resident agent key");
        }
        if (!ok)
        {
            throw Refused(TpmNodeCodes.CsrSignature,
                "csr_signature is not a signature by the certified agent key over this nonce and CSR: sign SHA-256(\"writ-tpm-agent-key\" || nonce || SHA-256(CSR)) with the TPM-resident agent key");
        }
    }

    /// <summary>The names of the reference sets the node's PCR values (hex, of <paramref name="bank"/>) satisfy.</summary>
    private static IReadOnlyList<string> Satisfied(IReadOnlyList<TpmReferenceSet> sets, string bank, IReadOnlyDictionary<int, string> values) =>
        TpmReferenceMatcher.Matching([.. values.Select(v => (bank, v.Key, Convert.FromHexString(v.Value)))], sets);

    private static TpmPcrSelection StateSelection(TpmNodeState state) =>
        new(TpmHash.TryParseBank(state.Bank, out var alg) ? alg : TpmAlg.Sha256, state.Pcrs.Keys.Order());

    private static PcrSelection SelectionProto(TpmPcrSelection s)
    {
        var p = new PcrSelection { Bank = s.Bank };
        p.Indices.AddRange(s.Indices.Select(i => (uint)i));
        return p;
    }

    private static T Parse<T>(MessageParser<T> parser, ReadOnlyMemory<byte> bytes, string what) where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(bytes.Span);
        }
        catch (InvalidProtocolBufferException)
        {
            throw Refused(TpmNodeCodes.Malformed, $"{what} is not the protobuf message the tpm attestor expects: use an agent with --node-attestor tpm", WritErrorKind.InvalidArgument);
        }
    }

    private static TpmPublic PublicArea(ByteString bytes, string field)
    {
        Bounded(bytes, MaxStructureBytes, field);
        try
        {
            return TpmPublic.Parse(bytes.Span);
        }
        catch (TpmFormatException e)
        {
            throw Refused(TpmNodeCodes.Malformed, $"{field} is not a TPMT_PUBLIC Writ accepts: {e.Message}", WritErrorKind.InvalidArgument);
        }
    }

    private static void Bounded(ByteString bytes, int max, string field, bool optional = false)
    {
        if (bytes.Length > max || (!optional && bytes.IsEmpty))
        {
            throw Refused(TpmNodeCodes.Malformed, bytes.IsEmpty ? $"{field} is missing from the TPM evidence" : $"{field} is {bytes.Length} bytes, more than the {max} it may have",
                WritErrorKind.InvalidArgument);
        }
    }

    /// <summary>Runs a verifier step, turning its refusals into the attestation's stable codes.</summary>
    private static T Verify<T>(Func<T> step)
    {
        try
        {
            return step();
        }
        catch (TpmVerificationException e)
        {
            throw Refused(e.Code, e.Message);
        }
        catch (TpmFormatException e)
        {
            throw Refused(TpmNodeCodes.Malformed, $"TPM evidence does not parse: {e.Message}", WritErrorKind.InvalidArgument);
        }
    }

    private static void Verify(Action step) => Verify(() =>
    {
        step();
        return 0;
    });

    private static WritException Refused(string code, string message, WritErrorKind kind = WritErrorKind.PermissionDenied) => new(code, kind, message);

    private static string Short(string hex) => hex.Length == 0 ? "(none)" : hex.Length > 16 ? hex[..16] + "…" : hex;

    private static string Printable(string s) => new([.. s.Take(16).Select(c => c is >= ' ' and <= '~' ? c : '?')]);
}
