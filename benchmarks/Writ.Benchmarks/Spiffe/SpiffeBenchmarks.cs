using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using BenchmarkDotNet.Attributes;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Benchmarks.Spiffe;

/// <summary>A P-256 trust domain shared by the SPIFFE benchmarks: root CA, a JWT key, a leaf and a CSR.</summary>
internal sealed class BenchFixture
{
    public static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    public BenchFixture()
    {
        TrustDomain = TrustDomain.Parse("bench.writ");
        CaKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Ca = X509Authorities.CreateSelfSignedCa(TrustDomain, CaKey, Now.AddDays(-1), Now.AddDays(30));
        JwtKey = new JwtSigningKey("bench-key-1", ECDsa.Create(ECCurve.NamedCurves.nistP256));
        Bundle = new TrustBundle(TrustDomain, [Ca], [new JwtAuthority(JwtKey.KeyId, JwtKey.Key)]);
        WorkloadKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        WorkloadPublicKey = new PublicKey(WorkloadKey);
        Id = SpiffeId.Parse("spiffe://bench.writ/ns/prod/sa/web-frontend");
        Leaf = X509SvidMinter.SignLeaf(Ca, CaKey, Id, WorkloadPublicKey, Now, TimeSpan.FromHours(1));
        CsrDer = Csr.Create(WorkloadKey);
        Token = JwtSvidMinter.Mint(JwtKey, Id, ["https://api.bench.writ"], Now, Now.AddMinutes(5));
    }

    public TrustDomain TrustDomain { get; }
    public ECDsa CaKey { get; }
    public X509Certificate2 Ca { get; }
    public JwtSigningKey JwtKey { get; }
    public TrustBundle Bundle { get; }
    public ECDsa WorkloadKey { get; }
    public PublicKey WorkloadPublicKey { get; }
    public SpiffeId Id { get; }
    public X509Certificate2 Leaf { get; }
    public byte[] CsrDer { get; }
    public string Token { get; }
}

/// <summary>SPIFFE ID parsing (the hottest string operation: every entry, every token, every certificate).</summary>
[MemoryDiagnoser]
public class SpiffeIdBenchmarks
{
    [Params("spiffe://example.org/ns/prod/sa/web-frontend", "spiffe://a.very.long.trust-domain.example.com/region/eu-west-1/cluster/c42/ns/payments/sa/ledger-writer")]
    public string Text { get; set; } = "";

    [Benchmark]
    public SpiffeId? Parse() => SpiffeId.TryParse(Text, out var id, out _) ? id : null;
}

/// <summary>X.509-SVID issuance: the fast path (per-CA template) against the CertificateRequest reference, and validation.</summary>
[MemoryDiagnoser]
public class X509SvidBenchmarks
{
    private BenchFixture _f = null!;
    private byte[] _leafDer = [];

    [GlobalSetup]
    public void Setup()
    {
        _f = new BenchFixture();
        _leafDer = _f.Leaf.RawData;
    }

    [Benchmark(Baseline = true, Description = "SignLeaf via CertificateRequest")]
    public X509Certificate2 MintReference() =>
        X509SvidMinter.SignLeafWithCertificateRequest(_f.Ca, _f.CaKey, _f.Id, _f.WorkloadPublicKey, BenchFixture.Now, TimeSpan.FromHours(1));

    [Benchmark(Description = "SignLeaf (fast path)")]
    public X509Certificate2 MintFast() =>
        X509SvidMinter.SignLeaf(_f.Ca, _f.CaKey, _f.Id, _f.WorkloadPublicKey, BenchFixture.Now, TimeSpan.FromHours(1));

    [Benchmark(Description = "SignLeafDer (fast path, no parse)")]
    public byte[] MintFastDer() =>
        X509SvidMinter.SignLeafDer(_f.Ca, _f.CaKey, _f.Id, _f.WorkloadPublicKey, BenchFixture.Now, TimeSpan.FromHours(1)).Der;

    [Benchmark(Description = "Validate leaf against bundle")]
    public bool Validate() => X509SvidValidator.Validate([_f.Leaf], _f.Bundle, BenchFixture.Now).IsValid;

    [Benchmark(Description = "Load leaf DER (X509Certificate2)")]
    public X509Certificate2 Load() => X509CertificateLoader.LoadCertificate(_leafDer);

    [Benchmark(Description = "Csr.TryVerify (P-256)")]
    public bool CsrVerify() => Csr.TryVerify(_f.CsrDer, out _, out _);
}

/// <summary>JWT-SVID mint (ES256) and validation (signature, audience, expiry).</summary>
[MemoryDiagnoser]
public class JwtSvidBenchmarks
{
    private BenchFixture _f = null!;
    private static readonly string[] Audience = ["https://api.bench.writ"];

    [GlobalSetup]
    public void Setup() => _f = new BenchFixture();

    [Benchmark]
    public string Mint() => JwtSvidMinter.Mint(_f.JwtKey, _f.Id, Audience, BenchFixture.Now, BenchFixture.Now.AddMinutes(5));

    [Benchmark]
    public bool Validate() => JwtSvidValidator.Validate(_f.Token, _f.Bundle, Audience, BenchFixture.Now).IsValid;
}

/// <summary>SPIFFE bundle (JWK Set) serialization and parsing, for a bundle with 2 X.509 and 2 JWT authorities.</summary>
[MemoryDiagnoser]
public class BundleBenchmarks
{
    private TrustBundle _bundle = null!;
    private string _json = "";
    private string _pem = "";

    [GlobalSetup]
    public void Setup()
    {
        var f = new BenchFixture();
        using var k2 = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var ca2 = X509Authorities.CreateSelfSignedCa(f.TrustDomain, k2, BenchFixture.Now, BenchFixture.Now.AddDays(30));
        var jwt2 = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _bundle = new TrustBundle(f.TrustDomain, [f.Ca, ca2], [new JwtAuthority(f.JwtKey.KeyId, f.JwtKey.Key), new JwtAuthority("bench-key-2", jwt2)]);
        _json = _bundle.ToSpiffeJson();
        _pem = _bundle.ToPem();
    }

    [Benchmark]
    public string SerializeSpiffeJson() => _bundle.ToSpiffeJson();

    [Benchmark]
    public TrustBundle? ParseSpiffeJson() => TrustBundle.TryParseSpiffeJson(_bundle.TrustDomain, _json, out var b, out _) ? b : null;

    [Benchmark]
    public string SerializePem() => _bundle.ToPem();

    [Benchmark]
    public TrustBundle? ParsePem() => TrustBundle.TryParsePem(_bundle.TrustDomain, _pem, out var b, out _) ? b : null;
}
