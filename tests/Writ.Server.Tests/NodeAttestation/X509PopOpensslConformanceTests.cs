using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Protocol.X509Pop;
using Writ.Server.NodeAttestation;
using Writ.Server.NodeAttestation.X509Pop;
using Writ.Server.Storage;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>
/// The conformance suite for <c>x509pop</c> against a machine PKI nobody here wrote: CA, intermediate and node
/// certificates made by the <c>openssl</c> CLI (EC keys in SEC1 PEM, RSA keys in PKCS#8), and every challenge answered by
/// <c>openssl dgst -sign</c> (DER ECDSA; RSA-PSS with a 32-byte salt).
/// </summary>
public sealed class X509PopOpensslConformanceTests : NodeAttestorConformance
{
    private OpensslPki _pki = null!;
    private int _nodes;

    protected override bool SingleUse => false;

    private DateTimeOffset Now => H.Ca.Time.GetUtcNow();

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time)
    {
        _pki = OpensslPki.CreateAsync(Path.Combine(H.Ca.Dir, "pki"), Now.AddDays(-1), Now.AddDays(30)).GetAwaiter().GetResult();
        return TrustingRootOf(_pki);
    }

    private static X509PopNodeAttestor TrustingRootOf(OpensslPki pki)
    {
        var options = new X509PopOptions(pki.RootPem, X509PopAgentPath.TryParse(X509PopAgentPath.DefaultTemplate, out var p, out _) ? p! : throw new InvalidOperationException());
        return new X509PopNodeAttestor(options.LoadCaBundle(), options.AgentPath);
    }

    /// <summary>Alternately an EC node under an openssl intermediate and an RSA node under the root.</summary>
    protected override async Task<AgentEvidence> ValidEvidenceAsync()
    {
        var n = Interlocked.Increment(ref _nodes);
        return n % 2 == 0 ? await NodeAsync(_pki, $"rsa-node{n}", rsa: true) : await NodeAsync(_pki, $"ec-node{n}", rsa: false, issuer: await _pki.IntermediateAsync($"issuing{n}"));
    }

    protected override async Task<AgentEvidence> ForeignTrustDomainEvidenceAsync() =>
        await NodeAsync(await OpensslPki.CreateAsync(Path.Combine(H.Ca.Dir, "other-pki"), Now.AddDays(-1), Now.AddDays(30)), "foreign-node", rsa: false);

    protected override async Task<AgentEvidence?> ExpiredEvidenceAsync() =>
        await NodeAsync(await OpensslPki.CreateAsync(Path.Combine(H.Ca.Dir, "old-pki"), Now.AddDays(-30), Now.AddHours(-1)), "old-node", rsa: false);

    protected override async Task<AgentEvidence?> NotYetValidEvidenceAsync() =>
        await NodeAsync(await OpensslPki.CreateAsync(Path.Combine(H.Ca.Dir, "future-pki"), Now.AddHours(1), Now.AddDays(30)), "future-node", rsa: false);

    /// <summary>A node of <paramref name="pki"/>: its PEM chain file as evidence, openssl signing the answers with its key file.</summary>
    private static async Task<AgentEvidence> NodeAsync(OpensslPki pki, string cn, bool rsa, string issuer = "root")
    {
        var (certPath, keyPath) = await pki.NodeAsync(cn, rsa, issuer);
        var chain = new X509Certificate2Collection();
        chain.ImportFromPem(await File.ReadAllTextAsync(certPath));
        var evidence = new X509PopEvidence();
        evidence.Chain.AddRange(chain.Select(c => ByteString.CopyFrom(c.RawData)));
        return new AgentEvidence(evidence.ToByteArray(), c =>
        {
            var challenge = X509PopChallenge.Parser.ParseFrom(c.Span);
            var message = X509PopProof.Message(challenge.Nonce.Span, challenge.CsrSha256.Span);
            var signature = pki.SignAsync(keyPath, message, rsa).GetAwaiter().GetResult();
            return new X509PopAnswer { Signature = ByteString.CopyFrom(signature) }.ToByteArray();
        });
    }

    [Fact]
    public async Task An_openssl_node_gets_the_selectors_of_its_openssl_certificate()
    {
        var outcome = await AttestAsync(X509PopNodeAttestor.TypeName, await NodeAsync(_pki, "db-1.fleet.example", rsa: false));
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        var node = Assert.Single(await H.Store.Nodes.ListAsync(Ct));
        using var root = X509CertificateLoader.LoadCertificateFromFile(_pki.RootPem);
        var selectors = node.Selectors.Select(s => s.ToString()).ToList();
        Assert.Contains($"x509pop:ca:{Convert.ToHexStringLower(SHA1.HashData(root.RawData))}", selectors);
        Assert.Contains("x509pop:subject:cn:db-1.fleet.example", selectors);
        Assert.Contains("x509pop:san:dns:db-1.fleet.example", selectors);
    }
}
