using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Agent.NodeAttestation;
using Writ.Protocol.X509Pop;
using Writ.Tests.Shared;

namespace Writ.Agent.Tests.NodeAttestation;

/// <summary>The agent side of x509pop on files made by openssl: what it sends, how it answers, which files it refuses.</summary>
public sealed class X509PopAttestorClientTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-x509pop-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Task<OpensslPki> PkiAsync(string name = "pki") =>
        OpensslPki.CreateAsync(Path.Combine(_dir, name), DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Sends_the_chain_leaf_first_and_answers_with_a_proof_the_server_accepts(bool rsa)
    {
        var pki = await PkiAsync();
        var issuer = await pki.IntermediateAsync("issuing");
        var (cert, key) = await pki.NodeAsync("node-a", rsa, issuer);
        using var client = X509PopAttestorClient.Load(cert, key);
        Assert.Null(client.SingleUseFingerprint);

        var evidence = X509PopEvidence.Parser.ParseFrom((await client.EvidenceAsync(Ct)).Span);
        using var leaf = X509CertificateLoader.LoadCertificate(evidence.Chain[0].Span);
        using var intermediate = X509CertificateLoader.LoadCertificate(evidence.Chain[1].Span);
        Assert.Equal(2, evidence.Chain.Count);
        Assert.Equal("CN=node-a", leaf.Subject);
        Assert.Equal("CN=issuing", intermediate.Subject);

        var challenge = new X509PopChallenge { Nonce = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32)), CsrSha256 = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32)) };
        var answer = X509PopAnswer.Parser.ParseFrom((await client.AnswerAsync(challenge.ToByteArray(), Ct)).Span);
        var message = X509PopProof.Message(challenge.Nonce.Span, challenge.CsrSha256.Span);
        Assert.True(X509PopProof.Verify(leaf, message, answer.Signature.ToByteArray()));
        // The proof is for this nonce and CSR digest only.
        Assert.False(X509PopProof.Verify(leaf, X509PopProof.Message(RandomNumberGenerator.GetBytes(32), challenge.CsrSha256.Span), answer.Signature.ToByteArray()));
    }

    [Fact]
    public async Task Refuses_a_key_of_another_certificate_missing_files_and_a_file_without_certificates()
    {
        var pki = await PkiAsync();
        var (certA, _) = await pki.NodeAsync("node-a", rsa: false);
        var (_, keyB) = await pki.NodeAsync("node-b", rsa: false);
        var (_, rsaKey) = await pki.NodeAsync("node-r", rsa: true);
        var empty = Path.Combine(_dir, "empty.pem");
        await File.WriteAllTextAsync(empty, "no pem here\n", Ct);

        Assert.Contains("is not the key of the first certificate", Refusal(certA, keyB), StringComparison.Ordinal);
        Assert.Contains("holds no unencrypted PEM private key", Refusal(certA, rsaKey), StringComparison.Ordinal);
        Assert.Contains("holds no unencrypted PEM private key", Refusal(certA, empty), StringComparison.Ordinal);
        Assert.Contains("cannot be read", Refusal(Path.Combine(_dir, "missing.pem"), keyB), StringComparison.Ordinal);
        Assert.Contains("holds no PEM CERTIFICATE", Refusal(empty, keyB), StringComparison.Ordinal);
        Assert.All(new[] { Refusal(certA, keyB), Refusal(empty, keyB) }, m => Assert.DoesNotContain('\n', m));
    }

    [Fact]
    public async Task Refuses_a_challenge_that_is_not_a_nonce_and_a_csr_digest()
    {
        var pki = await PkiAsync();
        var (cert, key) = await pki.NodeAsync("node-a", rsa: false);
        using var client = X509PopAttestorClient.Load(cert, key);
        await Assert.ThrowsAsync<AgentFatalException>(() => client.AnswerAsync(new byte[] { 0xff, 0xff }, Ct));
        var shortNonce = new X509PopChallenge { Nonce = ByteString.CopyFrom(new byte[8]), CsrSha256 = ByteString.CopyFrom(new byte[32]) };
        await Assert.ThrowsAsync<AgentFatalException>(() => client.AnswerAsync(shortNonce.ToByteArray(), Ct));
    }

    [Fact]
    public async Task Once_given_its_CSR_signs_only_a_challenge_naming_that_CSR()
    {
        var pki = await PkiAsync();
        var (cert, key) = await pki.NodeAsync("node-a", rsa: false);
        using var client = X509PopAttestorClient.Load(cert, key);
        var csr = RandomNumberGenerator.GetBytes(200);
        client.UseCsr(csr);
        var other = new X509PopChallenge { Nonce = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32)), CsrSha256 = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32)) };
        await Assert.ThrowsAsync<AgentFatalException>(() => client.AnswerAsync(other.ToByteArray(), Ct));
        var mine = other.Clone();
        mine.CsrSha256 = ByteString.CopyFrom(SHA256.HashData(csr));
        Assert.False((await client.AnswerAsync(mine.ToByteArray(), Ct)).IsEmpty);
    }

    private static string Refusal(string cert, string key) => Assert.Throws<AgentFatalException>(() => X509PopAttestorClient.Load(cert, key).Dispose()).Message;
}
