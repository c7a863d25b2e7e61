using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Server.NodeAttestation;
using Writ.Server.NodeAttestation.X509Pop;
using Writ.Server.Storage;
using Writ.Spiffe.X509;
using static Writ.Server.Tests.NodeAttestation.X509PopTestPki;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>
/// The node attestor conformance suite for <c>x509pop</c> with a machine PKI made in the test, plus the attacks on it:
/// each refused with its code, and nothing stored.
/// </summary>
public class X509PopNodeAttestorConformanceTests : NodeAttestorConformance
{
    private const string Type = X509PopNodeAttestor.TypeName;

    private X509Certificate2 _root = null!;
    private int _nodes;

    protected override bool SingleUse => false;

    private DateTimeOffset Now => H.Ca.Time.GetUtcNow();

    private X509PopAgentPath DefaultPath => AgentPath(X509PopAgentPath.DefaultTemplate);

    private static X509PopAgentPath AgentPath(string template) =>
        X509PopAgentPath.TryParse(template, out var p, out var error) ? p! : throw new ArgumentException(error, nameof(template));

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time)
    {
        _root = CaCert("fleet-root", Now.AddDays(-30), Now.AddDays(365));
        return NewAttestor(DefaultPath);
    }

    /// <summary>An attestor trusting the root only (its public certificate, as a CA bundle would hold it).</summary>
    private X509PopNodeAttestor NewAttestor(X509PopAgentPath path) => new([X509CertificateLoader.LoadCertificate(_root.RawData)], path);

    private string NextName() => $"node{Interlocked.Increment(ref _nodes)}";

    protected override Task<AgentEvidence> ValidEvidenceAsync() => Task.FromResult(Make(Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30))));

    /// <summary>A node certificate of another organisation's CA (another trust domain's machine PKI).</summary>
    protected override Task<AgentEvidence> ForeignTrustDomainEvidenceAsync()
    {
        using var other = CaCert("other-root", Now.AddDays(-30), Now.AddDays(365));
        return Task.FromResult(Make(Node(other, NextName(), Now.AddDays(-1), Now.AddDays(30))));
    }

    protected override Task<AgentEvidence?> ExpiredEvidenceAsync() => Task.FromResult<AgentEvidence?>(Make(Node(_root, NextName(), Now.AddDays(-30), Now.AddHours(-1))));

    protected override Task<AgentEvidence?> NotYetValidEvidenceAsync() => Task.FromResult<AgentEvidence?>(Make(Node(_root, NextName(), Now.AddHours(1), Now.AddDays(30))));

    /// <summary>The evidence of a node holding <paramref name="leaf"/>'s key, sending <paramref name="intermediates"/> after it.</summary>
    private static AgentEvidence Make(X509Certificate2 leaf, params X509Certificate2[] intermediates) =>
        new(Evidence([leaf, .. intermediates]), Answer((AsymmetricAlgorithm?)leaf.GetECDsaPrivateKey() ?? leaf.GetRSAPrivateKey()!));

    private async Task<AttestOutcome> RefusedAsync(AgentEvidence evidence, string code, int nodesBefore = 0)
    {
        var outcome = await AttestAsync(Type, evidence);
        Assert.False(outcome.Attested, $"attested {outcome.AgentId}, expected {code}");
        Assert.True(code == outcome.Code, $"expected {code}, got {outcome.Code}: {outcome.Message}");
        Assert.DoesNotContain('\n', outcome.Message!);
        Assert.Equal(nodesBefore, (await H.Store.Nodes.ListAsync(Ct)).Count);
        return outcome;
    }

    [Fact]
    public async Task A_node_attests_through_an_intermediate_with_its_sha1_fingerprint_id_and_certificate_selectors()
    {
        using var intermediate = CaCert("fleet-issuing", Now.AddDays(-30), Now.AddDays(365), _root);
        using var leaf = Node(intermediate, "web-7", Now.AddDays(-1), Now.AddDays(30), dns: ["web-7.fleet.example", "web-7.internal"]);
        var outcome = await AttestAsync(Type, Make(leaf, intermediate));
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        Assert.Equal($"spiffe://example.org/writ/agent/x509pop/{Convert.ToHexStringLower(SHA1.HashData(leaf.RawData))}", outcome.AgentId);
        var node = Assert.Single(await H.Store.Nodes.ListAsync(Ct));
        Assert.Equal(
            new[]
            {
                $"x509pop:ca:{Convert.ToHexStringLower(SHA1.HashData(_root.RawData))}",
                "x509pop:san:dns:web-7.fleet.example",
                "x509pop:san:dns:web-7.internal",
                $"x509pop:serialnumber:{leaf.SerialNumber.ToLowerInvariant()}",
                "x509pop:subject:cn:web-7",
            },
            node.Selectors.Select(s => s.ToString()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_bundle_must_hold_self_signed_root_CAs_only()
    {
        // The chain builder anchors only at roots, so an intermediate in the bundle is refused at start-up rather than
        // trusted in name and refusing every node.
        using var intermediate = CaCert("fleet-machines", Now.AddDays(-30), Now.AddDays(365), _root);
        using var node = Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30));
        foreach (var (cert, why) in new[] { (intermediate, "not a self-signed root CA"), (node, "not a CA certificate") })
        {
            var file = System.IO.Path.Combine(H.Ca.Dir, "bundle.pem");
            await File.WriteAllTextAsync(file, _root.ExportCertificatePem() + "\n" + cert.ExportCertificatePem() + "\n", Ct);
            var e = Assert.Throws<Writ.Protocol.StartupRefusedException>(() => new X509PopOptions(file, DefaultPath).LoadCaBundle());
            Assert.Equal(X509PopCodes.CaBundle, e.Code);
            Assert.Contains(why, e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_RSA_node_key_proves_itself_with_PSS()
    {
        using var rsa = RSA.Create(2048);
        using var leaf = Node(_root, "rsa-node", Now.AddDays(-1), Now.AddDays(30), key: rsa);
        var outcome = await AttestAsync(Type, Make(leaf));
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
    }

    [Fact]
    public async Task Attack_a_certificate_from_another_CA_is_refused() =>
        await RefusedAsync(await ForeignTrustDomainEvidenceAsync(), X509PopCodes.Untrusted);

    [Fact]
    public async Task Attack_a_certificate_whose_issuer_claims_a_trusted_CA_name_but_not_its_key_is_refused()
    {
        // Same subject name as the trusted root, another key: only the real CA's signature counts.
        using var impostor = CaCert("fleet-root", Now.AddDays(-30), Now.AddDays(365));
        await RefusedAsync(Make(Node(impostor, NextName(), Now.AddDays(-1), Now.AddDays(30))), X509PopCodes.Untrusted);
    }

    [Fact]
    public async Task Attack_an_expired_or_not_yet_valid_certificate_is_refused()
    {
        await RefusedAsync((await ExpiredEvidenceAsync())!, X509PopCodes.Expired);
        await RefusedAsync((await NotYetValidEvidenceAsync())!, X509PopCodes.NotYetValid);
    }

    [Fact]
    public async Task Attack_a_chain_whose_intermediate_is_not_a_CA_is_refused()
    {
        // A trusted node's certificate (basicConstraints CA:FALSE) "issues" a certificate for another node.
        using var notCa = CaCert("node-pretending", Now.AddDays(-30), Now.AddDays(365), _root, isCa: false);
        await RefusedAsync(Make(Node(notCa, NextName(), Now.AddDays(-1), Now.AddDays(30)), notCa), X509PopCodes.Untrusted);
    }

    [Fact]
    public async Task Attack_a_chain_through_an_expired_intermediate_is_refused()
    {
        using var old = CaCert("fleet-issuing-old", Now.AddDays(-60), Now.AddDays(-1), _root);
        await RefusedAsync(Make(Node(old, NextName(), Now.AddDays(-10), Now.AddDays(30)), old), X509PopCodes.Expired);
    }

    [Fact]
    public async Task Attack_a_signature_by_another_key_is_refused()
    {
        // The attacker has a copy of a node's certificate (it is public) but not its key.
        using var stolen = Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30));
        using var attackerKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        await RefusedAsync(new AgentEvidence(Evidence(stolen), Answer(attackerKey)), X509PopCodes.BadSignature);
    }

    [Fact]
    public async Task Attack_a_replayed_answer_for_an_old_nonce_is_refused()
    {
        // The attacker recorded a node's answer to an earlier challenge (here: an attempt a policy denied).
        using var leaf = Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30));
        var honest = Make(leaf);
        byte[]? recorded = null;
        await H.PushPolicyAsync(NodeAttestationHarness.DefaultPolicy, ("no-nodes.cedar", """
            forbid (principal is Writ::Node, action == Writ::Action::"AttestNode", resource);
            """));
        await RefusedAsync(honest with { Answer = c => recorded = honest.Answer!(c) }, NodeAttestationCodes.Denied);
        await H.PushPolicyAsync(NodeAttestationHarness.DefaultPolicy);
        Assert.NotNull(recorded);

        await RefusedAsync(honest with { Answer = _ => recorded }, X509PopCodes.BadSignature);
        Assert.True((await AttestAsync(Type, honest)).Attested, "the node's own fresh answer must still attest");
    }

    [Fact]
    public async Task Attack_a_CSR_swapped_after_signing_is_refused()
    {
        // The key holder signed for its own agent CSR; the request carries another agent key's CSR.
        using var leaf = Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30));
        using var signedFor = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var signedCsrDigest = SHA256.HashData(Csr.Create(signedFor));
        var swapped = new AgentEvidence(Evidence(leaf), Answer(leaf.GetECDsaPrivateKey()!, _ => signedCsrDigest));
        await RefusedAsync(swapped, X509PopCodes.BadSignature);
    }

    [Fact]
    public async Task Attack_a_leaf_not_allowed_digital_signature_or_client_auth_or_that_is_a_CA_is_refused()
    {
        await RefusedAsync(Make(Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30), keyUsage: X509KeyUsageFlags.KeyEncipherment)), X509PopCodes.LeafUsage);
        await RefusedAsync(Make(Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30), keyUsage: X509KeyUsageFlags.None)), X509PopCodes.LeafUsage);
        await RefusedAsync(Make(Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30), eku: [ServerAuth])), X509PopCodes.LeafUsage);
        // Whoever holds an intermediate CA's key proves nothing about a node.
        using var intermediate = CaCert("fleet-issuing", Now.AddDays(-30), Now.AddDays(365), _root);
        await RefusedAsync(Make(intermediate), X509PopCodes.LeafUsage);
    }

    [Fact]
    public async Task Attack_an_oversized_chain_is_refused()
    {
        H.Use(NodeAttestationLimits.Default, Attestor);   // room for the chain, so the attestor's own bound is what refuses
        var chain = new List<X509Certificate2> { CaCert("i0", Now.AddDays(-30), Now.AddDays(365), _root) };
        for (var i = 1; i < X509PopNodeAttestor.MaxChainCertificates; i++)
        {
            chain.Insert(0, CaCert($"i{i}", Now.AddDays(-30), Now.AddDays(365), chain[0]));
        }
        using var leaf = Node(chain[0], NextName(), Now.AddDays(-1), Now.AddDays(30));
        await RefusedAsync(Make(leaf, [.. chain]), X509PopCodes.ChainTooLarge);
        var huge = new Writ.Protocol.X509Pop.X509PopEvidence { Chain = { ByteString.CopyFrom(new byte[X509PopNodeAttestor.MaxCertificateBytes + 1]) } };
        await RefusedAsync(new AgentEvidence(huge.ToByteArray()), X509PopCodes.ChainTooLarge);
        foreach (var c in chain)
        {
            c.Dispose();
        }
    }

    [Fact]
    public async Task Malformed_evidence_and_unsupported_keys_are_refused()
    {
        await RefusedAsync(new AgentEvidence([0xff, 0xff, 0xff]), X509PopCodes.Malformed);
        await RefusedAsync(new AgentEvidence([]), X509PopCodes.Malformed);
        await RefusedAsync(new AgentEvidence([0x0a, 0x03, 0x30, 0x01, 0x00]), X509PopCodes.Malformed);
        using var small = RSA.Create(1024);
        await RefusedAsync(Make(Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30), key: small)), X509PopCodes.KeyUnsupported);
        using var p521 = ECDsa.Create(ECCurve.NamedCurves.nistP521);
        await RefusedAsync(new AgentEvidence(Evidence(Node(_root, NextName(), Now.AddDays(-1), Now.AddDays(30), key: p521)), _ => []), X509PopCodes.KeyUnsupported);
    }

    [Fact]
    public async Task The_agent_path_template_names_the_agent_and_a_CN_that_makes_no_path_is_refused()
    {
        H.Use(TestLimits, NewAttestor(AgentPath("cn/{subject_cn}/{fingerprint_sha256}")));
        using var leaf = Node(_root, "db-3.fleet", Now.AddDays(-1), Now.AddDays(30));
        var outcome = await AttestAsync(Type, Make(leaf));
        Assert.Equal($"spiffe://example.org/writ/agent/x509pop/cn/db-3.fleet/{Convert.ToHexStringLower(SHA256.HashData(leaf.RawData))}", outcome.AgentId);

        await RefusedAsync(Make(Node(_root, "two words", Now.AddDays(-1), Now.AddDays(30), dns: ["two.fleet.example"])), X509PopCodes.AgentId, nodesBefore: 1);
        await RefusedAsync(Make(Node(_root, "..", Now.AddDays(-1), Now.AddDays(30), dns: ["dots.fleet.example"])), X509PopCodes.AgentId, nodesBefore: 1);
    }

    [Fact]
    public async Task Attack_a_node_of_another_bundle_CA_with_colliding_template_values_cannot_take_over_the_agent_id()
    {
        // Serial numbers and CNs are unique per CA only: a node of a second CA of the bundle with the same CN must not
        // re-attest as (and so supersede) the first node.
        using var partner = CaCert("partner-root", Now.AddDays(-30), Now.AddDays(365));
        H.Use(TestLimits, new X509PopNodeAttestor([X509CertificateLoader.LoadCertificate(_root.RawData), X509CertificateLoader.LoadCertificate(partner.RawData)],
            AgentPath("{subject_cn}")));
        using var owner = Node(_root, "web-1", Now.AddDays(-1), Now.AddDays(30));
        var first = await AttestAsync(Type, Make(owner));
        Assert.True(first.Attested, $"{first.Code}: {first.Message}");
        var stored = Assert.Single(await H.Store.Nodes.ListAsync(Ct));

        using var impostor = Node(partner, "web-1", Now.AddDays(-1), Now.AddDays(30));
        var taken = await AttestAsync(Type, Make(impostor));
        Assert.False(taken.Attested, $"a node of another CA took over {taken.AgentId}");
        Assert.Equal(NodeAttestationCodes.NodeExists, taken.Code);
        Assert.Equal(stored.SerialNumber, Assert.Single(await H.Store.Nodes.ListAsync(Ct)).SerialNumber);

        var again = await AttestAsync(Type, Make(owner));
        Assert.True(again.Attested, $"the node itself attests again: {again.Code}: {again.Message}");
    }

    [Theory]
    [InlineData("node", "no placeholder")]
    [InlineData("{fingerprint}", "unknown placeholder")]
    [InlineData("/{fingerprint_sha1}", "valid SPIFFE ID path")]
    [InlineData("{fingerprint_sha1}/", "valid SPIFFE ID path")]
    [InlineData("a b/{serialnumber}", "valid SPIFFE ID path")]
    [InlineData("../{serialnumber}", "valid SPIFFE ID path")]
    public void Templates_that_cannot_name_agents_apart_are_refused(string template, string why)
    {
        Assert.False(X509PopAgentPath.TryParse(template, out _, out var error));
        Assert.Contains(why, error, StringComparison.Ordinal);
    }
}

/// <summary>The same suite and attacks through the real gRPC AttestAgent stream.</summary>
public sealed class X509PopNodeAttestorEndToEndTests : X509PopNodeAttestorConformanceTests
{
    private protected override Task OnStartedAsync() => H.StartGrpcAsync();

    private protected override Task<AttestOutcome> AttestAsync(string type, AgentEvidence evidence) => AttestOverGrpcAsync(H.Client!, type, evidence);

    [Fact]
    public async Task Attack_an_attest_stream_without_params_is_refused_with_a_ledger_record()
    {
        using var call = H.Client!.AttestAgent(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(new Writ.Protocol.Agent.AttestAgentRequest { ChallengeResponse = ByteString.CopyFrom([1, 2, 3]) }, Ct);
        var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await call.ResponseStream.MoveNext(Ct));
        Assert.StartsWith(NodeAttestationCodes.BadRequest + ": ", e.Status.Detail, StringComparison.Ordinal);
        var refusals = await H.Store.Ledger.ListAsync(0, 1000, Writ.Server.Ledger.LedgerEvents.NodeAttestationRefused, null, Ct);
        Assert.Contains(refusals, r => r.DataJson.Contains($"\"code\":\"{NodeAttestationCodes.BadRequest}\"", StringComparison.Ordinal));
    }
}
