using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Spiffe.Tests;

/// <summary>A test CA for one trust domain (root, optional intermediate), built with the library under test.</summary>
internal sealed class TestCa
{
    public static readonly DateTimeOffset Now = new(2026, 6, 1, 12, 0, 0, TimeSpan.Zero);

    public TestCa(string td, Func<AsymmetricAlgorithm>? keyFactory = null, bool intermediate = false)
    {
        TrustDomain = TrustDomain.Parse(td);
        RootKey = (keyFactory ?? (() => ECDsa.Create(ECCurve.NamedCurves.nistP256)))();
        Root = X509Authorities.CreateSelfSignedCa(TrustDomain, RootKey, Now.AddDays(-1), Now.AddDays(30));
        if (intermediate)
        {
            IntermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP384);
            Intermediate = X509Authorities.CreateIntermediateCa(TrustDomain, IntermediateKey, Root, RootKey, Now.AddHours(-1), Now.AddDays(10));
        }
    }

    public TrustDomain TrustDomain { get; }
    public AsymmetricAlgorithm RootKey { get; }
    public X509Certificate2 Root { get; }
    public AsymmetricAlgorithm? IntermediateKey { get; }
    public X509Certificate2? Intermediate { get; }

    public X509Certificate2 SigningCert => Intermediate ?? Root;
    public AsymmetricAlgorithm SigningKey => IntermediateKey ?? RootKey;

    public TrustBundle Bundle => new(TrustDomain, [Root], []);

    /// <summary>Mints a leaf for <paramref name="path"/> with a fresh P-256 key; returns the chain leaf first and the key.</summary>
    public (IReadOnlyList<X509Certificate2> Chain, ECDsa Key) Mint(string path, TimeSpan? ttl = null, DateTimeOffset? now = null)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var id = SpiffeId.Parse(TrustDomain.IdString + path);
        var leaf = X509SvidMinter.SignLeaf(SigningCert, SigningKey, id, new PublicKey(key), now ?? Now, ttl ?? TimeSpan.FromHours(1));
        IReadOnlyList<X509Certificate2> chain = Intermediate is null ? [leaf] : [leaf, Intermediate];
        return (chain, key);
    }
}
