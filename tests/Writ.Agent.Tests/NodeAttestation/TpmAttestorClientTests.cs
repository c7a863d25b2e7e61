using System.Security.Cryptography;
using Google.Protobuf;
using Writ.Agent.NodeAttestation;
using Writ.Agent.Tests.TestSupport;
using Writ.Protocol;
using Writ.Protocol.Tpm;
using Writ.Tests.Shared;
using Writ.Tpm.Commands;
using Writ.Tpm.Device;
using Writ.Tpm.Marshalling;

namespace Writ.Agent.Tests.NodeAttestation;

/// <summary>
/// The agent's tpm attestor against a real swtpm, played through as the server would: tpm2_makecredential makes the
/// challenge for the evidence's EK and AK, tpm2_checkquote and .NET check what comes back.
/// </summary>
public class TpmAttestorClientTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly PcrSelection DefaultPcrs = new() { Bank = "sha256", Indices = { 0, 1, 2, 3, 4, 5, 6, 7, 14 } };

    [Fact]
    public async Task Evidence_and_the_answer_to_a_challenge_prove_the_ak_and_the_agent_key_and_bind_the_csr()
    {
        using var ca = SwtpmCa.Create();
        await using var tpm = await Swtpm.StartAsync(ca, Ct);
        using var dir = new TempDir();
        var log = dir.Combine("event-log");
        File.WriteAllBytes(log, [1, 2, 3, 4]);
        var client = new TpmAttestorClient(TpmAddress.Tcp("127.0.0.1", tpm.Port), log);
        byte[] csr = [.. "a CSR"u8];
        client.UseCsr(csr);

        var evidence = TpmEvidence.Parser.ParseFrom((await client.EvidenceAsync(Ct)).Span);

        Assert.NotEmpty(evidence.EkCertificate);
        Assert.Equal("tpm", client.Type);
        Assert.Null(client.SingleUseFingerprint);
        Assert.Equal((uint)TpmTemplates.AkAttributes, AttributesOf(evidence.AkPublic));
        Assert.Equal((uint)TpmTemplates.AgentKeyAttributes, AttributesOf(evidence.AgentKeyPublic));
        var secret = RandomNumberGenerator.GetBytes(32);
        var nonce = RandomNumberGenerator.GetBytes(32);
        var challenge = await ChallengeAsync(evidence, secret, nonce);

        var answer = TpmAnswer.Parser.ParseFrom((await client.AnswerAsync(challenge.ToByteArray(), Ct)).Span);

        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
        Assert.Equal(secret, answer.ActivatedSecret.ToByteArray());
        using var ak = TpmTools.EcdsaOf(evidence.AkPublic.ToByteArray());
        Assert.Equal(0, await TpmTools.CheckQuoteAsync(ak.ExportSubjectPublicKeyInfoPem(), answer.Quote.Attest.ToByteArray(), answer.Quote.Signature.ToByteArray(), nonce, Ct));
        Assert.Equal([0u, 1, 2, 3, 4, 5, 6, 7, 14], answer.Quote.PcrValues.Select(v => v.Index));
        Assert.All(answer.Quote.PcrValues, v => Assert.Equal("sha256", v.Bank));
        var digest = TpmTools.QuotePcrDigest(TpmTools.ReadAttest(answer.Quote.Attest.ToByteArray()).Attested);
        Assert.Equal(SHA256.HashData(answer.Quote.PcrValues.SelectMany(v => v.Digest.ToByteArray()).ToArray()), digest);
        Assert.Equal([1, 2, 3, 4], answer.Quote.EventLog.ToByteArray());
        // The agent key is certified by the AK over the nonce, and signed the CSR binding.
        var (type, extra, attested) = TpmTools.ReadAttest(answer.CertifyInfo.ToByteArray());
        Assert.Equal(TpmSt.AttestCertify, type);
        Assert.Equal(nonce, extra);
        Assert.Equal(TpmTools.NameOf(evidence.AgentKeyPublic.ToByteArray()), new TpmReader(attested).ReadSized().ToArray());
        Assert.True(ak.VerifyData(answer.CertifyInfo.ToByteArray(), TpmTools.EcdsaP1363(answer.CertifySignature.ToByteArray()), HashAlgorithmName.SHA256));
        using var agentKey = TpmTools.EcdsaOf(evidence.AgentKeyPublic.ToByteArray());
        var binding = SHA256.HashData([.. "writ-tpm-agent-key"u8, .. nonce, .. SHA256.HashData(csr)]);
        Assert.True(agentKey.VerifyHash(binding, TpmTools.EcdsaP1363(answer.CsrSignature.ToByteArray())));
        Assert.False(agentKey.VerifyHash(SHA256.HashData([.. "writ-tpm-agent-key"u8, .. nonce, .. SHA256.HashData("another CSR"u8)]),
            TpmTools.EcdsaP1363(answer.CsrSignature.ToByteArray())));
    }

    [Fact]
    public async Task A_recheck_quotes_the_current_pcrs_over_the_new_nonce()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        var client = new TpmAttestorClient(TpmAddress.Tcp("127.0.0.1", tpm.Port), null);
        var evidence = TpmEvidence.Parser.ParseFrom((await client.EvidenceAsync(Ct)).Span);
        Assert.Empty(evidence.EkCertificate);
        var first = await RecheckAsync(client);
        await tpm.ExtendPcrAsync(14, "a changed component", Ct);
        var nonce = RandomNumberGenerator.GetBytes(32);

        var second = await RecheckAsync(client, nonce);

        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
        using var ak = TpmTools.EcdsaOf(evidence.AkPublic.ToByteArray());
        Assert.Equal(0, await TpmTools.CheckQuoteAsync(ak.ExportSubjectPublicKeyInfoPem(), second.Quote.Attest.ToByteArray(), second.Quote.Signature.ToByteArray(), nonce, Ct));
        Assert.NotEqual(first.Quote.PcrValues.Single(v => v.Index == 14).Digest, second.Quote.PcrValues.Single(v => v.Index == 14).Digest);
        Assert.Equal(first.Quote.PcrValues.Single(v => v.Index == 7).Digest, second.Quote.PcrValues.Single(v => v.Index == 7).Digest);
        Assert.Empty(second.Quote.EventLog);
    }

    [Fact]
    public async Task The_evidence_of_a_copied_agent_on_another_tpm_is_that_tpms_and_the_first_tpms_challenge_cannot_be_answered()
    {
        // Whatever a copy of the agent's data dir holds, the agent on another machine has only that machine's TPM: its EK
        // (and so its agent ID, spiffe://<td>/writ/agent/tpm/<EK hash>) is another, and a challenge made for the first
        // TPM's EK and AK cannot be activated there. (The key blobs are in memory only; see NodeIdentityTpmTests.)
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        await using var other = await Swtpm.StartAsync(null, Ct);
        var node = new TpmAttestorClient(TpmAddress.Tcp("127.0.0.1", tpm.Port), null);
        var copy = new TpmAttestorClient(TpmAddress.Tcp("127.0.0.1", other.Port), null);
        copy.UseCsr("csr"u8.ToArray());
        var evidence = TpmEvidence.Parser.ParseFrom((await node.EvidenceAsync(Ct)).Span);
        var copyEvidence = TpmEvidence.Parser.ParseFrom((await copy.EvidenceAsync(Ct)).Span);
        Assert.NotEqual(evidence.EkPublic, copyEvidence.EkPublic);

        // The server's challenge for the node's EK, replayed to the copy (with the copy's own AK name it still fails).
        var challenge = await ChallengeAsync(new TpmEvidence(evidence) { AkPublic = copyEvidence.AkPublic }, RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));
        var e = await Assert.ThrowsAsync<StartupRefusedException>(() => copy.AnswerAsync(challenge.ToByteArray(), Ct));

        Assert.Equal(TpmAttestorClient.TpmErrorCode, e.Code);
        Assert.Contains("TPM2_ActivateCredential failed", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public async Task An_unreachable_tpm_is_one_clear_line_with_a_code()
    {
        int port;
        using (var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            l.Start();
            port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        }
        var client = new TpmAttestorClient(TpmAddress.Tcp("127.0.0.1", port), null);
        var e = await Assert.ThrowsAsync<StartupRefusedException>(() => client.EvidenceAsync(Ct));
        Assert.Equal(TpmAttestorClient.TpmErrorCode, e.Code);
        Assert.Equal($"cannot reach the TPM at tcp://127.0.0.1:{port}: connection refused (is the TPM simulator running on that port?)", e.Message);
    }

    [Fact]
    public void The_event_log_defaults_to_the_kernels_only_for_a_device_tpm()
    {
        Assert.Null(TpmAttestorClient.EventLogFor(TpmAddress.Tcp("127.0.0.1", 2321), null));
        Assert.Equal("/x", TpmAttestorClient.EventLogFor(TpmAddress.Tcp("127.0.0.1", 2321), "/x"));
        Assert.Equal(File.Exists(TpmAttestorClient.DefaultEventLog) ? TpmAttestorClient.DefaultEventLog : null,
            TpmAttestorClient.EventLogFor(TpmAddress.Device("/dev/tpmrm0"), null));
    }

    private static async Task<TpmRecheckAnswer> RecheckAsync(TpmAttestorClient client, byte[]? nonce = null)
    {
        var recheck = new TpmRecheck { Nonce = ByteString.CopyFrom(nonce ?? RandomNumberGenerator.GetBytes(32)), Pcrs = DefaultPcrs };
        return TpmRecheckAnswer.Parser.ParseFrom((await client.AnswerRecheckAsync(recheck.ToByteArray(), Ct)).Span);
    }

    /// <summary>What the server sends: MakeCredential (here tpm2_makecredential) for the evidence's EK and AK name, a nonce, the PCRs.</summary>
    internal static async Task<TpmChallenge> ChallengeAsync(TpmEvidence evidence, byte[] secret, byte[] nonce)
    {
        var (blob, encrypted) = await TpmTools.MakeCredentialAsync(evidence.EkPublic.ToByteArray(), evidence.AkPublic.ToByteArray(), secret, Ct);
        return new TpmChallenge { CredentialBlob = ByteString.CopyFrom(blob), EncryptedSecret = ByteString.CopyFrom(encrypted), Nonce = ByteString.CopyFrom(nonce), Pcrs = DefaultPcrs };
    }

    private static uint AttributesOf(ByteString tpmtPublic)
    {
        var r = new TpmReader(tpmtPublic.Span);
        r.ReadUInt16();
        r.ReadUInt16();
        return r.ReadUInt32();
    }
}
