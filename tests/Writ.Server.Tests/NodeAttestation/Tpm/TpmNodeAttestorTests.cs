using System.Security.Cryptography;
using Google.Protobuf;
using Writ.Protocol.Errors;
using Writ.Protocol.Tpm;
using Writ.Server.Configuration;
using Writ.Server.NodeAttestation;
using Writ.Server.NodeAttestation.Tpm;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Tpm.EventLog;
using Writ.Tpm.Structures;
using Writ.Tpm.Verification;

namespace Writ.Server.Tests.NodeAttestation.Tpm;

/// <summary>
/// tpm attestation against real swtpms: the facts of an honest node, every attack of issue #14 refused with its stable code
/// and nothing stored, and the re-quotes (unchanged, drifted, inside a reference set).
/// </summary>
public sealed class TpmNodeAttestorTests(TpmCaFixture cas) : IClassFixture<TpmCaFixture>, IAsyncLifetime
{
    private readonly List<TpmTestAgent> _agents = [];
    private NodeAttestationHarness _h = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _h = await NodeAttestationHarness.CreateAsync(TpmCaFixture.ClockStart);

    public async ValueTask DisposeAsync()
    {
        foreach (var a in _agents)
            await a.DisposeAsync();
        await _h.DisposeAsync();
    }

    private async Task<TpmTestAgent> AgentAsync(Writ.Tests.Shared.SwtpmCa? ca = null)
    {
        var agent = await TpmTestAgent.StartAsync(ca ?? cas.Ca);
        _agents.Add(agent);
        return agent;
    }

    private TpmNodeAttestor Attestor(TpmOptions? options = null) => new(options ?? cas.Options(), _h.Store.TpmReferenceSets);

    /// <summary>Runs the attestor directly (the facts, or the refusal's code).</summary>
    private async Task<(AttestedNodeFacts? Facts, string? Code, string? Message)> RunAsync(TpmNodeAttestor attestor, TpmEvidence evidence, byte[] csr,
        Func<TpmChallenge, Task<TpmAnswer>> answer)
    {
        try
        {
            var facts = await attestor.AttestAsync(new NodeEvidence(evidence.ToByteArray(), TrustDomain.Parse("example.org"), TpmCaFixture.ClockStart) { Csr = csr },
                async (c, _) => (await answer(TpmChallenge.Parser.ParseFrom(c.Span))).ToByteArray(), Ct);
            return (facts, null, null);
        }
        catch (WritException e)
        {
            return (null, e.Code, e.Message);
        }
    }

    /// <summary>Attests through the service (policy, store), so a refusal can be checked to have stored nothing.</summary>
    private async Task<(string? AgentId, string? Code, string? Message)> AttestAsync(TpmNodeAttestor attestor, TpmEvidence evidence, byte[] csr,
        Func<TpmChallenge, Task<TpmAnswer>> answer)
    {
        _h.Use(NodeAttestationLimits.Default, attestor);
        try
        {
            var r = await _h.Server.NodeAttestation.AttestAsync(TpmNodeAttestor.TypeName, evidence.ToByteArray(), csr,
                async (c, _) => (await answer(TpmChallenge.Parser.ParseFrom(c.Span))).ToByteArray(), "test", Ct);
            return (r.AgentId.ToString(), null, null);
        }
        catch (WritException e)
        {
            return (null, e.Code, e.Message);
        }
    }

    private async Task AssertRefusedAsync(string code, (string? AgentId, string? Code, string? Message) outcome)
    {
        Assert.True(outcome.AgentId is null, $"attested {outcome.AgentId}, expected {code}");
        Assert.Equal(code, outcome.Code);
        Assert.DoesNotContain('\n', outcome.Message!);
        Assert.Empty(await _h.Store.Nodes.ListAsync(Ct));
    }

    [Fact]
    public void The_server_registers_tpm_only_when_ek_trust_is_configured()
    {
        Assert.DoesNotContain("tpm", NodeAttestationService.ConfiguredRegistry(_h.Store, _h.Server.Options).Types);
        var registry = NodeAttestationService.ConfiguredRegistry(_h.Store, _h.Server.Options with { Tpm = cas.Options() });
        var tpm = Assert.IsType<TpmNodeAttestor>(registry.Get("tpm"));
        Assert.True(((INodeAttestor)tpm).Reattestable);
        Assert.Equal(TimeSpan.FromSeconds(60), tpm.RecheckInterval);
        Assert.Contains("join_token", registry.Types);
    }

    [Fact]
    public async Task An_honest_tpm_node_gets_its_ek_id_and_selectors()
    {
        var agent = await AgentAsync();
        var (facts, code, message) = await RunAsync(Attestor(), agent.Evidence(), agent.Csr, c => agent.AnswerAsync(c));
        Assert.True(facts is not null, $"{code}: {message}");
        var ekHash = TpmPublic.Parse(agent.EkPublic).EkHash();
        Assert.Equal($"spiffe://example.org/writ/agent/tpm/{ekHash}", facts.AgentId.ToString());
        var selectors = facts.Selectors.Select(s => s.ToString()).ToList();
        Assert.Contains($"tpm:ek_hash:{ekHash}", selectors);
        Assert.Contains(selectors, s => s.StartsWith("tpm:ek_issuer:", StringComparison.Ordinal));
        Assert.Equal(9, selectors.Count(s => s.StartsWith("tpm:pcr:sha256:", StringComparison.Ordinal)));
        Assert.Contains($"tpm:pcr:sha256:14:{new string('0', 64)}", selectors);
        Assert.DoesNotContain(selectors, s => s.StartsWith("tpm:secure_boot:", StringComparison.Ordinal));   // no event log
        Assert.NotNull(facts.AttestorState);
    }

    [Fact]
    public async Task An_ek_outside_the_allow_list_is_refused_and_one_inside_is_trusted_without_an_issuer()
    {
        var agent = await AgentAsync();
        var ekHash = TpmPublic.Parse(agent.EkPublic).EkHash();
        await AssertRefusedAsync(TpmNodeCodes.EkUntrusted,
            await AttestAsync(Attestor(cas.Options(trustCaDirectory: false, new string('a', 64))), agent.Evidence(), agent.Csr, c => agent.AnswerAsync(c)));

        var (facts, code, message) = await RunAsync(Attestor(cas.Options(trustCaDirectory: false, ekHash)), agent.Evidence(ekCertificate: []), agent.Csr, c => agent.AnswerAsync(c));
        Assert.True(facts is not null, $"{code}: {message}");
        Assert.DoesNotContain(facts.Selectors, s => s.Value.StartsWith("ek_issuer:", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_ek_certificate_from_another_manufacturer_is_refused()
    {
        var agent = await AgentAsync(cas.OtherCa);
        await AssertRefusedAsync(TpmNodeCodes.EkUntrusted, await AttestAsync(Attestor(), agent.Evidence(), agent.Csr, c => agent.AnswerAsync(c)));
    }

    [Fact]
    public async Task An_ek_certificate_with_an_unknown_critical_extension_is_refused_and_one_without_is_trusted()
    {
        var agent = await AgentAsync();
        using var rsa = TpmPublic.Parse(agent.EkPublic).CreateRsa();
        var from = TpmCaFixture.ClockStart.AddDays(-1);
        var unknown = cas.EkCertificate(rsa, from, TpmCaFixture.ClockStart.AddYears(1), new System.Security.Cryptography.X509Certificates.X509Extension("1.3.6.1.4.1.99999.1", [0x05, 0x00], critical: true));
        var outcome = await AttestAsync(Attestor(), agent.Evidence(ekCertificate: unknown), agent.Csr, c => agent.AnswerAsync(c));
        await AssertRefusedAsync(TpmNodeCodes.EkUntrusted, outcome);
        Assert.Contains("HasNotSupportedCriticalExtension", outcome.Message, StringComparison.Ordinal);

        var plain = cas.EkCertificate(rsa, from, TpmCaFixture.ClockStart.AddYears(1));
        var (facts, code, message) = await RunAsync(Attestor(), agent.Evidence(ekCertificate: plain), agent.Csr, c => agent.AnswerAsync(c));
        Assert.True(facts is not null, $"{code}: {message}");
    }

    [Fact]
    public async Task A_trusted_ek_certificate_of_another_tpm_is_refused()
    {
        var agent = await AgentAsync();
        var other = await AgentAsync();
        await AssertRefusedAsync(TpmNodeCodes.EkCertificateMismatch,
            await AttestAsync(Attestor(), agent.Evidence(ekCertificate: other.EkCertificate), agent.Csr, c => agent.AnswerAsync(c)));
    }

    [Fact]
    public async Task Keys_that_are_not_an_ek_or_an_agent_key_are_refused()
    {
        var agent = await AgentAsync();
        await AssertRefusedAsync(TpmNodeCodes.EkAttributes, await AttestAsync(Attestor(), agent.Evidence(ekPublic: agent.AkPublic), agent.Csr, c => agent.AnswerAsync(c)));
        // The AK (restricted) as the agent key: it could never sign the CSR digest, and is not what the agent's SVID key must be.
        await AssertRefusedAsync(TpmErrorCodes.AgentKeyAttributes, await AttestAsync(Attestor(), agent.Evidence(agentKeyPublic: agent.AkPublic), agent.Csr, c => agent.AnswerAsync(c)));
        await AssertRefusedAsync(TpmErrorCodes.AkAttributes, await AttestAsync(Attestor(), agent.Evidence(akPublic: agent.AgentKeyPublic), agent.Csr, c => agent.AnswerAsync(c)));
    }

    [Fact]
    public async Task A_trusted_ek_resent_with_a_sha1_name_is_refused_not_a_server_failure()
    {
        // Attack: the real EK key (its certificate still matches) with nameAlg SHA-1: MakeCredential cannot hold the 32-byte
        // secret in a 20-byte digest; that must be a refusal, not an internal error logged with a stack trace per attempt.
        var agent = await AgentAsync();
        var ekPublic = agent.EkPublic.ToArray();
        ekPublic[2] = 0x00;
        ekPublic[3] = 0x04;
        await AssertRefusedAsync(TpmNodeCodes.EkAttributes, await AttestAsync(Attestor(), agent.Evidence(ekPublic: ekPublic), agent.Csr, c => agent.AnswerAsync(c)));
    }

    [Fact]
    public async Task An_ak_from_another_tpm_fails_credential_activation()
    {
        var trusted = await AgentAsync();
        var attacker = await AgentAsync(cas.OtherCa);
        // The trusted TPM's EK, the attacker TPM's AK and agent key: everything the attacker signs is genuine, but the
        // credential is sealed to the trusted EK, so the attacker's TPM cannot release the secret.
        var evidence = trusted.Evidence(akPublic: attacker.AkPublic, agentKeyPublic: attacker.AgentKeyPublic);
        await AssertRefusedAsync(TpmNodeCodes.ActivationFailed, await AttestAsync(Attestor(), evidence, attacker.Csr, c => attacker.AnswerAsync(c)));
    }

    [Fact]
    public async Task A_copied_agent_identity_on_another_tpm_is_useless()
    {
        // Everything a tpm agent keeps or sends (public areas, the EK certificate) copied to a machine with another TPM.
        var original = await AgentAsync();
        var swapped = await AgentAsync();
        await AssertRefusedAsync(TpmNodeCodes.ActivationFailed, await AttestAsync(Attestor(), original.Evidence(), swapped.Csr, c => swapped.AnswerAsync(c)));
        // Even handed the secret (say the original machine answered the activation for it), its quote and certification
        // are not by the original AK.
        await AssertRefusedAsync(TpmErrorCodes.QuoteSignature, await AttestAsync(Attestor(), original.Evidence(), swapped.Csr, async c =>
        {
            var a = await swapped.AnswerAsync(c);
            a.ActivatedSecret = ByteString.CopyFrom(await original.ActivateAsync(c));
            return a;
        }));
    }

    [Fact]
    public async Task A_replayed_quote_is_refused()
    {
        var agent = await AgentAsync();
        TpmQuote? old = null;
        var (facts, _, _) = await RunAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            old = a.Quote;
            return a;
        });
        Assert.NotNull(facts);
        await AssertRefusedAsync(TpmErrorCodes.QuoteNonce, await AttestAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            a.Quote = old;
            return a;
        }));
    }

    [Fact]
    public async Task A_quote_over_other_pcrs_or_with_other_values_is_refused()
    {
        var agent = await AgentAsync();
        await AssertRefusedAsync(TpmErrorCodes.QuotePcrs, await AttestAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            var fewer = new PcrSelection { Bank = "sha256", Indices = { 0, 1, 2, 3, 4, 5, 6, 7 } };
            a.Quote = await agent.QuoteAsync(c.Nonce.ToByteArray(), fewer);
            return a;
        }));
        await AssertRefusedAsync(TpmErrorCodes.QuoteDigest, await AttestAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            a.Quote.PcrValues[^1].Digest = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32));
            return a;
        }));
    }

    [Fact]
    public async Task An_event_log_must_replay_to_the_quote_and_then_gives_secure_boot()
    {
        var agent = await AgentAsync();
        var forged = new TcgEventLogWriter(PcrBank.Sha256).AddSecureBoot(true).Add(14, TcgEventType.EventTag, "what the node booted"u8).ToArray();
        await AssertRefusedAsync(TpmNodeCodes.EventLog, await AttestAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            a.Quote.EventLog = ByteString.CopyFrom(forged);
            return a;
        }));

        // Measure exactly what the log says into the TPM: now it replays.
        var log = new TcgEventLogWriter(PcrBank.Sha256).AddSecureBoot(true).Add(14, TcgEventType.EventTag, "what the node booted"u8);
        foreach (var e in log.Events)
            await agent.Tpm.Tpm2Async("tpm2_pcrextend", [$"{e.PcrIndex}:sha256={Convert.ToHexStringLower(e.Digests[PcrBank.Sha256])}"], Ct);
        var (facts, code, message) = await RunAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            a.Quote.EventLog = ByteString.CopyFrom(log.ToArray());
            return a;
        });
        Assert.True(facts is not null, $"{code}: {message}");
        Assert.Contains(new Writ.Protocol.Evidence.Selector("tpm", "secure_boot:on"), facts.Selectors);
    }

    [Fact]
    public async Task A_certification_of_another_tpms_key_is_refused()
    {
        var agent = await AgentAsync();
        var other = await AgentAsync();
        // The agent key of another TPM in the evidence; the node's AK can only certify its own key.
        await AssertRefusedAsync(TpmErrorCodes.CertifyName, await AttestAsync(Attestor(), agent.Evidence(agentKeyPublic: other.AgentKeyPublic), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            a.CsrSignature = ByteString.CopyFrom(await other.SignCsrAsync(c.Nonce.ToByteArray(), agent.Csr));
            return a;
        }));
        // ... and the other TPM's certification of it is not signed by the node's AK.
        await AssertRefusedAsync(TpmErrorCodes.CertifySignature, await AttestAsync(Attestor(), agent.Evidence(agentKeyPublic: other.AgentKeyPublic), agent.Csr, async c =>
        {
            var a = (await agent.AnswerAsync(c)).With(await other.CertifyAsync(c.Nonce.ToByteArray()));
            a.CsrSignature = ByteString.CopyFrom(await other.SignCsrAsync(c.Nonce.ToByteArray(), agent.Csr));
            return a;
        }));
    }

    [Fact]
    public async Task A_csr_not_signed_by_the_tpm_resident_agent_key_is_refused()
    {
        var agent = await AgentAsync();
        var other = await AgentAsync();
        await AssertRefusedAsync(TpmNodeCodes.CsrSignature, await AttestAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            a.CsrSignature = ByteString.CopyFrom(await other.SignCsrAsync(c.Nonce.ToByteArray(), agent.Csr));
            return a;
        }));
        // The agent key's signature over another CSR (a key the attacker holds) does not cover this one.
        await AssertRefusedAsync(TpmNodeCodes.CsrSignature, await AttestAsync(Attestor(), agent.Evidence(), agent.Csr, async c =>
        {
            var a = await agent.AnswerAsync(c);
            a.CsrSignature = ByteString.CopyFrom(await agent.SignCsrAsync(c.Nonce.ToByteArray(), other.Csr));
            return a;
        }));
    }

    [Fact]
    public async Task Oversized_or_malformed_fields_are_refused_before_any_challenge()
    {
        var agent = await AgentAsync();
        var challenged = false;
        Task<TpmAnswer> Answer(TpmChallenge c)
        {
            challenged = true;
            return agent.AnswerAsync(c);
        }
        await AssertRefusedAsync(TpmNodeCodes.Malformed, await AttestAsync(Attestor(), agent.Evidence(akPublic: new byte[3000]), agent.Csr, Answer));
        await AssertRefusedAsync(TpmNodeCodes.Malformed, await AttestAsync(Attestor(), agent.Evidence(ekCertificate: new byte[9000]), agent.Csr, Answer));
        await AssertRefusedAsync(TpmNodeCodes.Malformed, await AttestAsync(Attestor(), agent.Evidence(agentKeyPublic: [.. agent.AgentKeyPublic, 0]), agent.Csr, Answer));
        await AssertRefusedAsync(TpmNodeCodes.Malformed, await AttestAsync(Attestor(), agent.Evidence(ekCertificate: [0x30, 0x03, 1, 2, 3]), agent.Csr, Answer));
        Assert.False(challenged);
        // An answer that is no TpmAnswer.
        _h.Use(NodeAttestationLimits.Default, Attestor());
        var e = await Assert.ThrowsAsync<WritException>(() => _h.Server.NodeAttestation.AttestAsync(TpmNodeAttestor.TypeName, agent.Evidence().ToByteArray(), agent.Csr,
            (_, _) => Task.FromResult<ReadOnlyMemory<byte>>(new byte[] { 0xff, 0xff, 0xff }), "test", Ct));
        Assert.Equal(TpmNodeCodes.Malformed, e.Code);
        Assert.Empty(await _h.Store.Nodes.ListAsync(Ct));
    }

    // ---- re-quotes ----

    private async Task<(TpmNodeAttestor Attestor, AttestedNode Node)> AttestedAsync(TpmTestAgent agent)
    {
        var attestor = Attestor();
        var (facts, code, message) = await RunAsync(attestor, agent.Evidence(), agent.Csr, c => agent.AnswerAsync(c));
        Assert.True(facts is not null, $"{code}: {message}");
        return (attestor, new AttestedNode
        {
            SpiffeId = facts.AgentId.ToString(), AttestationType = "tpm", SerialNumber = "01", ExpiresAt = TpmCaFixture.ClockStart.AddHours(1),
            Selectors = facts.Selectors, AttestorState = facts.AttestorState,
        });
    }

    private static async Task<NodeAppraisal> RequoteAsync(TpmNodeAttestor attestor, AttestedNode node, TpmTestAgent agent)
    {
        var recheck = attestor.NewRecheck(node, TpmCaFixture.ClockStart);
        return await attestor.AppraiseAsync(node, recheck, await agent.RecheckAnswerAsync(recheck.Payload), Ct);
    }

    private static string Extended(string oldHex, string data) =>
        Convert.ToHexStringLower(SHA256.HashData([.. Convert.FromHexString(oldHex), .. SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(data))]));

    [Fact]
    public async Task A_requote_with_unchanged_pcrs_is_healthy_and_a_replayed_one_drifts()
    {
        var agent = await AgentAsync();
        var (attestor, node) = await AttestedAsync(agent);
        var ok = await RequoteAsync(attestor, node, agent);
        Assert.True(ok.Healthy, $"{ok.DriftCode}: {ok.DriftReason}");
        Assert.Equal(node.Selectors, ok.Selectors);
        Assert.NotNull(ok.AttestorState);

        var first = attestor.NewRecheck(node, TpmCaFixture.ClockStart);
        var answer = await agent.RecheckAnswerAsync(first.Payload);
        var second = attestor.NewRecheck(node, TpmCaFixture.ClockStart);
        Assert.NotEqual(first.Expected.ToArray(), second.Expected.ToArray());
        var replayed = await attestor.AppraiseAsync(node, second, answer, Ct);
        Assert.False(replayed.Healthy);
        Assert.Equal(TpmErrorCodes.QuoteNonce, replayed.DriftCode);
    }

    [Fact]
    public async Task A_pcr_extended_outside_any_reference_set_drifts_naming_the_pcr()
    {
        var agent = await AgentAsync();
        var (attestor, node) = await AttestedAsync(agent);
        await agent.Tpm.ExtendPcrAsync(14, "an unexpected module", Ct);
        var drift = await RequoteAsync(attestor, node, agent);
        Assert.False(drift.Healthy);
        Assert.Equal(TpmNodeCodes.PcrDrift, drift.DriftCode);
        Assert.Contains("PCR sha256:14 ", drift.DriftReason, StringComparison.Ordinal);
        // Another TPM answering for the node (a swapped TPM) cannot sign with the node's AK.
        var other = await AgentAsync();
        var swapped = await RequoteAsync(attestor, node, other);
        Assert.Equal(TpmErrorCodes.QuoteSignature, swapped.DriftCode);
    }

    [Fact]
    public async Task A_pcr_change_inside_a_reference_set_matched_at_attestation_is_healthy()
    {
        var zero = new string('0', 64);
        var updated = Extended(zero, "kernel 6.12.1");
        await _h.Store.TpmReferenceSets.CreateAsync(new TpmReferenceSet("lab", [new TpmPcrReference("sha256", 14, zero), new TpmPcrReference("sha256", 14, updated)], default), Ct);
        var agent = await AgentAsync();
        var (attestor, node) = await AttestedAsync(agent);
        Assert.Contains(new Writ.Protocol.Evidence.Selector("tpm", "pcr_set:lab"), node.Selectors);

        await agent.Tpm.ExtendPcrAsync(14, "kernel 6.12.1", Ct);
        var ok = await RequoteAsync(attestor, node, agent);
        Assert.True(ok.Healthy, $"{ok.DriftCode}: {ok.DriftReason}");
        Assert.Contains(new Writ.Protocol.Evidence.Selector("tpm", $"pcr:sha256:14:{updated}"), ok.Selectors);
        Assert.Contains(new Writ.Protocol.Evidence.Selector("tpm", "pcr_set:lab"), ok.Selectors);

        node = node with { Selectors = ok.Selectors, AttestorState = ok.AttestorState };
        await agent.Tpm.ExtendPcrAsync(14, "something else", Ct);
        var drift = await RequoteAsync(attestor, node, agent);
        Assert.Equal(TpmNodeCodes.PcrDrift, drift.DriftCode);
    }

    [Fact]
    public async Task Attesting_again_after_a_pcr_changed_outside_the_reference_sets_drifts_instead_of_resetting_the_baseline()
    {
        // Attack: the node's boot state changes (PCR 14 extended), then the agent restarts before the next re-quote: the
        // fresh attestation must not become the node's new baseline.
        var agent = await AgentAsync();
        var attestor = Attestor();
        var first = await AttestAsync(attestor, agent.Evidence(), agent.Csr, c => agent.AnswerAsync(c));
        Assert.True(first.AgentId is not null, $"{first.Code}: {first.Message}");
        var again = await AttestAsync(attestor, agent.Evidence(), agent.Csr, c => agent.AnswerAsync(c));
        Assert.True(again.AgentId is not null, $"an unchanged node attests again: {again.Code}: {again.Message}");

        await agent.Tpm.ExtendPcrAsync(14, "an unexpected module", Ct);
        var reset = await AttestAsync(attestor, agent.Evidence(), agent.Csr, c => agent.AnswerAsync(c));
        Assert.True(reset.AgentId is null, "a re-attestation with a drifted PCR was accepted as the new baseline");
        Assert.Equal(NodePostureCodes.NodeDrifted, reset.Code);
        Assert.Contains("PCR sha256:14 ", reset.Message, StringComparison.Ordinal);
        var node = Assert.Single(await _h.Store.Nodes.ListAsync(Ct));
        Assert.Equal(NodeStatus.Drifted, node.Status);
    }
}
