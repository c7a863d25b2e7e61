using Google.Protobuf;
using Writ.Protocol.Tpm;
using Writ.Server.NodeAttestation;
using Writ.Server.NodeAttestation.Tpm;
using Writ.Server.Storage;
using Writ.Tpm.Structures;

namespace Writ.Server.Tests.NodeAttestation.Tpm;

/// <summary>
/// The node attestor conformance suite for <c>tpm</c>, in process, each "agent" a fresh manufactured swtpm answering with
/// tpm2-tools. Another trust domain's evidence is a TPM of a manufacturer this server does not trust; expired and
/// not-yet-valid evidence is an EK certificate outside its validity at the server's time.
/// </summary>
public class TpmNodeAttestorConformanceTests(TpmCaFixture cas) : NodeAttestorConformance, IClassFixture<TpmCaFixture>, IAsyncDisposable
{
    private readonly List<TpmTestAgent> _agents = [];

    protected override DateTimeOffset? ClockStart => TpmCaFixture.ClockStart;

    protected override bool SingleUse => false;

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time) => new TpmNodeAttestor(cas.Options(), store.TpmReferenceSets);

    private async Task<TpmTestAgent> AgentAsync(Writ.Tests.Shared.SwtpmCa? ca)
    {
        var agent = await TpmTestAgent.StartAsync(ca);
        _agents.Add(agent);
        return agent;
    }

    protected override async Task<AgentEvidence> ValidEvidenceAsync() => (await AgentAsync(cas.Ca)).ForConformance();

    protected override async Task<AgentEvidence> ForeignTrustDomainEvidenceAsync() => (await AgentAsync(cas.OtherCa)).ForConformance();

    protected override Task<AgentEvidence?> ExpiredEvidenceAsync() =>
        WithEkCertificateAsync(TpmCaFixture.ClockStart.AddDays(-30), TpmCaFixture.ClockStart.AddSeconds(-1));

    protected override Task<AgentEvidence?> NotYetValidEvidenceAsync() =>
        WithEkCertificateAsync(TpmCaFixture.ClockStart.AddSeconds(1), TpmCaFixture.ClockStart.AddYears(10));

    /// <summary>An honest TPM whose EK certificate, from the trusted manufacturer, is valid only in this window.</summary>
    private async Task<AgentEvidence?> WithEkCertificateAsync(DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        var agent = await AgentAsync(cas.Ca);
        using var rsa = TpmPublic.Parse(agent.EkPublic).CreateRsa();
        var evidence = agent.Evidence(ekCertificate: cas.EkCertificate(rsa, notBefore, notAfter));
        return agent.ForConformance() with { Payload = evidence.ToByteArray() };
    }

    async ValueTask IAsyncDisposable.DisposeAsync()
    {
        foreach (var a in _agents)
            await a.DisposeAsync();
        await DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

/// <summary>The same suite through the real agent API over gRPC (AttestAgent with its one challenge round).</summary>
public sealed class TpmNodeAttestorEndToEndTests(TpmCaFixture cas) : TpmNodeAttestorConformanceTests(cas)
{
    private protected override Task OnStartedAsync() => H.StartGrpcAsync();

    private protected override Task<AttestOutcome> AttestAsync(string type, AgentEvidence evidence) => AttestOverGrpcAsync(H.Client!, type, evidence);
}
