using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Protocol.X509Pop;

namespace Writ.Agent.NodeAttestation;

/// <summary>
/// <c>x509pop</c> (<c>--node-attestor x509pop --x509pop-cert PATH --x509pop-key PATH</c>): the evidence is the node's
/// certificate chain from the machine PKI (the PEM file's certificates, leaf first); the server's one challenge is
/// answered with the node key's signature over its nonce and the agent CSR's digest (<see cref="X509PopProof"/>). The
/// evidence is reusable, so the agent attests again with it whenever it has no valid SVID.
/// </summary>
public sealed class X509PopAttestorClient : INodeAttestorClient, IDisposable
{
    public const string TypeName = "x509pop";

    private readonly byte[][] _chain;
    private readonly AsymmetricAlgorithm _key;
    private byte[]? _csrSha256;

    private X509PopAttestorClient(byte[][] chain, AsymmetricAlgorithm key)
    {
        _chain = chain;
        _key = key;
    }

    public string Type => TypeName;

    public string Description => "x509pop certificate";

    public string? SingleUseFingerprint => null;

    /// <summary>
    /// Reads the certificate chain (PEM, the node certificate first, then intermediates) and the node's private key (PEM
    /// PKCS#8, SEC1 EC or PKCS#1 RSA; not encrypted), which must belong to the first certificate. Refuses with a one-line
    /// <see cref="AgentFatalException"/> saying what to fix.
    /// </summary>
    public static X509PopAttestorClient Load(string certPath, string keyPath)
    {
        ArgumentNullException.ThrowIfNull(certPath);
        ArgumentNullException.ThrowIfNull(keyPath);
        var certs = new X509Certificate2Collection();
        try
        {
            certs.ImportFromPem(File.ReadAllText(certPath));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AgentFatalException($"x509pop certificate file '{certPath}' cannot be read ({e.Message})");
        }
        catch (CryptographicException)
        {
            throw new AgentFatalException($"x509pop certificate file '{certPath}' holds a CERTIFICATE block that is not a valid certificate");
        }
        try
        {
            if (certs.Count == 0)
            {
                throw new AgentFatalException($"x509pop certificate file '{certPath}' holds no PEM CERTIFICATE: give the node certificate, then its intermediates");
            }
            var leaf = certs[0];
            if (X509PopProof.UnsupportedKey(leaf) is { } why)
            {
                throw new AgentFatalException($"the node certificate in '{certPath}' cannot be used for x509pop: {why}");
            }
            string keyPem;
            try
            {
                keyPem = File.ReadAllText(keyPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new AgentFatalException($"x509pop key file '{keyPath}' cannot be read ({e.Message})");
            }
            AsymmetricAlgorithm key = leaf.GetECDsaPublicKey() is { } ec ? Own(ec, ECDsa.Create()) : leaf.GetRSAPublicKey() is { } rsa ? Own(rsa, RSA.Create())
                : throw new AgentFatalException($"the certificate in '{certPath}' has neither an EC nor an RSA key: x509pop needs ECDSA P-256/P-384 or RSA 2048+");
            try
            {
                key.ImportFromPem(keyPem);
            }
            catch (Exception e) when (e is ArgumentException or CryptographicException)
            {
                key.Dispose();
                throw new AgentFatalException($"x509pop key file '{keyPath}' holds no unencrypted PEM private key of the certificate's kind ({(leaf.GetECDsaPublicKey() is null ? "RSA" : "EC")}): " +
                    "give PKCS#8 'PRIVATE KEY', 'EC PRIVATE KEY' or 'RSA PRIVATE KEY'");
            }
            if (!key.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(leaf.PublicKey.ExportSubjectPublicKeyInfo()))
            {
                key.Dispose();
                throw new AgentFatalException($"x509pop key file '{keyPath}' is not the key of the first certificate in '{certPath}': give the node certificate's own key");
            }
            return new X509PopAttestorClient([.. certs.Select(c => c.RawData)], key);
        }
        finally
        {
            foreach (var c in certs)
            {
                c.Dispose();
            }
        }
    }

    private static AsymmetricAlgorithm Own(IDisposable publicKey, AsymmetricAlgorithm fresh)
    {
        publicKey.Dispose();
        return fresh;
    }

    /// <summary>
    /// The CSR this attestation sends (the tpm-client lane's <c>INodeAttestorClient.UseCsr</c>): once given, the agent
    /// signs only a challenge naming this CSR's digest, so a server cannot get a proof for another agent key from it.
    /// </summary>
    public void UseCsr(ReadOnlyMemory<byte> csrDer) => _csrSha256 = SHA256.HashData(csrDer.Span);

    public Task<ReadOnlyMemory<byte>> EvidenceAsync(CancellationToken ct)
    {
        var evidence = new X509PopEvidence();
        evidence.Chain.AddRange(_chain.Select(ByteString.CopyFrom));
        return Task.FromResult<ReadOnlyMemory<byte>>(evidence.ToByteArray());
    }

    public Task<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> challenge, CancellationToken ct)
    {
        X509PopChallenge c;
        try
        {
            c = X509PopChallenge.Parser.ParseFrom(challenge.Span);
        }
        catch (InvalidProtocolBufferException)
        {
            throw new AgentFatalException("the server's x509pop challenge is malformed: check that --server names a Writ server of this version");
        }
        if (c.Nonce.Length != X509PopProof.NonceSize || c.CsrSha256.Length != SHA256.HashSizeInBytes)
        {
            throw new AgentFatalException("the server's x509pop challenge has no 32-byte nonce and CSR digest: check that --server names a Writ server of this version");
        }
        if (_csrSha256 is { } mine && !c.CsrSha256.Span.SequenceEqual(mine))
        {
            throw new AgentFatalException("the server's x509pop challenge names another CSR than the one this agent sent: check that --server names the Writ server of --trust-bundle");
        }
        var signature = X509PopProof.Sign(_key, X509PopProof.Message(c.Nonce.Span, c.CsrSha256.Span));
        return Task.FromResult<ReadOnlyMemory<byte>>(new X509PopAnswer { Signature = ByteString.CopyFrom(signature) }.ToByteArray());
    }

    public void Dispose() => _key.Dispose();
}
