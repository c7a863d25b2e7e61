using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Issuance;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.Bench;

/// <summary>Stage costs of one issuance, in microseconds per call (measured with <c>--breakdown</c>).</summary>
public sealed record IssuanceBreakdown(
    [property: JsonPropertyName("csr_verify_us")] double CsrVerify,
    [property: JsonPropertyName("issuer_verify_csr_us")] double IssuerVerifyCsr,
    [property: JsonPropertyName("sign_leaf_us")] double SignLeaf,
    [property: JsonPropertyName("sign_leaf_certificate_request_us")] double SignLeafCertificateRequest,
    [property: JsonPropertyName("sign_leaf_der_us")] double SignLeafDer,
    [property: JsonPropertyName("csr_verify_certificate_request_us")] double CsrVerifyCertificateRequest,
    [property: JsonPropertyName("certificate_load_us")] double CertificateLoad,
    [property: JsonPropertyName("ec_public_key_import_us")] double EcPublicKeyImport,
    [property: JsonPropertyName("ecdsa_p256_sign_us")] double Sign,
    [property: JsonPropertyName("ecdsa_p256_verify_us")] double Verify,
    [property: JsonPropertyName("issuance_us")] double Issuance,
    [property: JsonPropertyName("issuance_with_parse_us")] double IssuanceWithParse,
    [property: JsonPropertyName("issuance_der_out_us")] double IssuanceDerOut,
    [property: JsonPropertyName("der_out_ratio")] double DerOutRatio)
{
    /// <summary>
    /// The figures from measured operations, each looked up by its op's name (not its position, so inserting an op
    /// cannot shift another's figure into a field): microseconds per call; <c>der_out_ratio</c> is the raw sign + verify
    /// limit over the DER-out issuance. Throws when an op is missing.
    /// </summary>
    public static IssuanceBreakdown From(IEnumerable<BenchSample> samples)
    {
        var us = samples.ToDictionary(x => x.Name, x => x.MicrosecondsPerOp, StringComparer.Ordinal);
        double Us(string name) => us.TryGetValue(name, out var v)
            ? BenchTiming.Round(v, 2)
            : throw new InvalidOperationException($"the breakdown did not measure {name}");
        var derOut = Us("issuance_der_out");
        return new IssuanceBreakdown(
            Us("csr_verify"), Us("issuer_verify_csr"), Us("sign_leaf"), Us("sign_leaf_certificate_request"), Us("sign_leaf_der"),
            Us("csr_verify_certificate_request"), Us("certificate_load"), Us("ec_import"), Us("ecdsa_p256_sign"), Us("ecdsa_p256_verify"),
            Us("issuance"), Us("issuance_with_parse"), Us("issuance_der_out"),
            derOut > 0 ? BenchTiming.Round((us["ecdsa_p256_sign"] + us["ecdsa_p256_verify"]) / us["issuance_der_out"], 3) : 0);
    }
}

public sealed record IssuanceResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("x509_per_second")] double X509PerSecond,
    [property: JsonPropertyName("ecdsa_p256_sign_per_second")] double SignPerSecond,
    [property: JsonPropertyName("ecdsa_p256_verify_per_second")] double VerifyPerSecond,
    [property: JsonPropertyName("limit_per_second")] double LimitPerSecond,
    [property: JsonPropertyName("ratio")] double Ratio,
    [property: JsonPropertyName("goal_ratio")] double GoalRatio,
    [property: JsonPropertyName("breakdown")] IssuanceBreakdown? Breakdown);

/// <summary>
/// `writ bench issuance`: CSR in → signed chain out through the server's own signing path — <see cref="WritCa"/> over a
/// temporary SQLite store and the memory key manager, <see cref="Issuer.SignX509"/> (which verifies the CSR) — on one
/// thread, against this machine's raw ECDSA P-256 sign and verify rates measured in the same run.
/// </summary>
public static class IssuanceBench
{
    public const double GoalRatio = 0.7;
    private const int Keys = 64;

    public static async Task<IssuanceResult> RunAsync(TimeSpan seconds, bool breakdown, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("writ-bench-");
        try
        {
            await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(dir.FullName, "writ.db"), TimeProvider.System, ct).ConfigureAwait(false);
            var td = TrustDomain.Parse("bench.writ");
            var ca = new WritCa(td, new CaOptions(), new MemoryKeyManager(), store, TimeProvider.System, NullLogger<WritCa>.Instance);
            await ca.InitializeAsync(ct).ConfigureAwait(false);
            var issuer = new Issuer(ca, TimeSpan.FromHours(1), TimeSpan.FromMinutes(5), TimeSpan.FromHours(24));

            // Requesters' keys and CSRs are made beforehand: that is the workload's work, not the server's.
            var ids = new SpiffeId[Keys];
            var csrs = new byte[Keys][];
            var keys = new PublicKey[Keys];
            for (var i = 0; i < Keys; i++)
            {
                using var k = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                ids[i] = SpiffeId.Parse($"{td.IdString}/ns/bench/sa/workload-{i}");
                csrs[i] = Csr.Create(k);
                keys[i] = new PublicKey(k);
            }
            var ttl = TimeSpan.FromHours(1);
            var n = 0;
            var issue = BenchOp.Sync("issuance", () =>
            {
                var i = n++ % Keys;
                // The agent API's path: CSR check, sign, and the DER chain as it goes on the wire.
                var (leaf, above) = issuer.SignX509Der(ids[i], csrs[i], ttl, []);
                var bytes = leaf.Der.Length;
                foreach (var c in above)
                {
                    bytes += c.Length;
                }
                if (bytes == 0)
                {
                    throw new InvalidOperationException("the CA returned an empty chain");
                }
            });
            using var raw = new RawEcdsa();
            var s = await BenchTiming.ThroughputAsync([raw.Sign, raw.Verify, issue], seconds, ct).ConfigureAwait(false);
            var (sign, verify, x509) = (s[0].PerSecond, s[1].PerSecond, s[2].PerSecond);
            var limit = BenchTiming.Serial(sign, verify);

            IssuanceBreakdown? parts = null;
            if (breakdown)
            {
                parts = await BreakdownAsync(ca, issuer, ids, csrs, keys, raw, seconds, ct).ConfigureAwait(false);
            }
            return new IssuanceResult("issuance", seconds.TotalSeconds, 1, BenchTiming.Round(x509), BenchTiming.Round(sign),
                BenchTiming.Round(verify), BenchTiming.Round(limit), BenchTiming.Round(limit > 0 ? x509 / limit : 0, 3), GoalRatio, parts);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            dir.Delete(recursive: true);
        }
    }

    private static async Task<IssuanceBreakdown> BreakdownAsync(WritCa ca, Issuer issuer, SpiffeId[] ids, byte[][] csrs, PublicKey[] keys,
        RawEcdsa raw, TimeSpan seconds, CancellationToken ct)
    {
        var n = 0;
        var ttl = TimeSpan.FromHours(1);
        var leafDer = ca.SignX509Svid(ids[0], keys[0], ttl)[0].RawData;
        var spki = keys[0].ExportSubjectPublicKeyInfo();
        // The reference (CertificateRequest) encoder and the DER-out variant need the CA key, which only the key manager
        // holds, so they use a CA of the same kind made here.
        using var refKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var refCa = X509Authorities.CreateSelfSignedCa(ca.TrustDomain, refKey, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1));
        var ops = new[]
        {
            BenchOp.Sync("csr_verify", () => Csr.TryVerify(csrs[n++ % Keys], out _, out _)),
            BenchOp.Sync("issuer_verify_csr", () => Issuer.VerifyCsr(csrs[n % Keys], ids[n++ % Keys])),
            BenchOp.Sync("sign_leaf", () => ca.SignX509Svid(ids[n % Keys], keys[n++ % Keys], ttl)),
            BenchOp.Sync("certificate_load", () => X509CertificateLoader.LoadCertificate(leafDer).Dispose()),
            BenchOp.Sync("ec_import", () =>
            {
                using var e = ECDsa.Create();
                e.ImportSubjectPublicKeyInfo(spki, out _);
            }),
            raw.Sign,
            raw.Verify,
            BenchOp.Sync("issuance", () => issuer.SignX509Der(ids[n % Keys], csrs[n++ % Keys], ttl, [])),
            BenchOp.Sync("issuance_with_parse", () => issuer.SignX509(ids[n % Keys], csrs[n++ % Keys], ttl, [])),
            // The same CSR check and signing with the DER going out as signed (no X509Certificate2 parse).
            BenchOp.Sync("issuance_der_out", () =>
            {
                var i = n++ % Keys;
                var key = Issuer.VerifyCsr(csrs[i], ids[i]);
                _ = X509SvidMinter.SignLeafDer(refCa, refKey, ids[i], key, DateTimeOffset.UtcNow, ttl).Der;
            }),
        };
        var each = TimeSpan.FromSeconds(Math.Max(0.5, seconds.TotalSeconds / 3));
        var s = await BenchTiming.ThroughputAsync(ops, each, ct).ConfigureAwait(false);
        var reference = await BenchTiming.ThroughputAsync(
            [BenchOp.Sync("sign_leaf_certificate_request", () =>
                X509SvidMinter.SignLeafWithCertificateRequest(refCa, refKey, ids[n % Keys], keys[n++ % Keys], DateTimeOffset.UtcNow, ttl)),
             BenchOp.Sync("sign_leaf_der", () =>
                X509SvidMinter.SignLeafDer(refCa, refKey, ids[n % Keys], keys[n++ % Keys], DateTimeOffset.UtcNow, ttl)),
             BenchOp.Sync("csr_verify_certificate_request", () =>
             {
                 // What Csr.TryVerify did before its fast path (and still does for RSA or unusual requests).
                 var req = CertificateRequest.LoadSigningRequest(csrs[n++ % Keys], HashAlgorithmName.SHA256, out _,
                     CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
                 using var ec = req.PublicKey.GetECDsaPublicKey();
                 _ = ec?.ExportParameters(false);
             })],
            each, ct).ConfigureAwait(false);
        // der_out_ratio: if the server sent the DER it signed instead of parsing it back, the ratio to the limit measured
        // in the same slices.
        return IssuanceBreakdown.From(s.Concat(reference));
    }
}
