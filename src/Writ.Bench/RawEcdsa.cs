using System.Security.Cryptography;

namespace Writ.Bench;

/// <summary>
/// This machine's raw ECDSA P-256 rates through the same .NET/OpenSSL stack the server uses: SHA-256 + sign, SHA-256 +
/// verify, of a message the size of a leaf's TBSCertificate, with keys already loaded (what <c>openssl speed</c> measures).
/// </summary>
public sealed class RawEcdsa : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly byte[] _message = RandomNumberGenerator.GetBytes(450);
    private readonly byte[] _signature;
    private readonly byte[] _buffer = new byte[80];

    public RawEcdsa()
    {
        _signature = _key.SignData(_message, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
    }

    public BenchOp Sign => BenchOp.Sync("ecdsa_p256_sign", () =>
        _key.SignData(_message, _buffer, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));

    public BenchOp Verify => BenchOp.Sync("ecdsa_p256_verify", () =>
    {
        if (!_key.VerifyData(_message, _signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence))
        {
            throw new InvalidOperationException("a valid ECDSA signature did not verify: the crypto library is broken");
        }
    });

    public void Dispose() => _key.Dispose();
}
