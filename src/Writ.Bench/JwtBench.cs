using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Jwt;

namespace Writ.Bench;

public sealed record JwtResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("jwt_mint_per_second")] double MintPerSecond,
    [property: JsonPropertyName("jwt_validate_per_second")] double ValidatePerSecond,
    [property: JsonPropertyName("ecdsa_p256_sign_per_second")] double SignPerSecond,
    [property: JsonPropertyName("ecdsa_p256_verify_per_second")] double VerifyPerSecond,
    [property: JsonPropertyName("mint_ratio")] double MintRatio,
    [property: JsonPropertyName("validate_ratio")] double ValidateRatio);

/// <summary>
/// `writ bench jwt`: JWT-SVID mint through the server's CA (<see cref="WritCa.MintJwtSvid"/>, ES256) and validation against
/// its bundle (<see cref="JwtSvidValidator"/>: signature, audience, expiry), one thread, against raw ECDSA P-256 sign/verify.
/// </summary>
public static class JwtBench
{
    public static async Task<JwtResult> RunAsync(TimeSpan seconds, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("writ-bench-");
        try
        {
            await using var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(dir.FullName, "writ.db"), TimeProvider.System, ct).ConfigureAwait(false);
            var td = TrustDomain.Parse("bench.writ");
            var ca = new WritCa(td, new CaOptions(), new MemoryKeyManager(), store, TimeProvider.System, NullLogger<WritCa>.Instance);
            await ca.InitializeAsync(ct).ConfigureAwait(false);
            var id = SpiffeId.Parse(td.IdString + "/ns/bench/sa/workload");
            string[] audience = ["https://api.bench.writ"];
            var ttl = TimeSpan.FromMinutes(5);
            var bundle = ca.Bundle;
            var tokens = Enumerable.Range(0, 64).Select(_ => ca.MintJwtSvid(id, audience, ttl).Token).ToArray();
            var n = 0;
            var mint = BenchOp.Sync("jwt_mint", () => ca.MintJwtSvid(id, audience, ttl));
            var validate = BenchOp.Sync("jwt_validate", () =>
            {
                var r = JwtSvidValidator.Validate(tokens[n++ % tokens.Length], bundle, audience, DateTimeOffset.UtcNow);
                if (!r.IsValid)
                {
                    throw new InvalidOperationException($"a freshly minted JWT-SVID did not validate: {r.Error}");
                }
            });
            using var raw = new RawEcdsa();
            var s = await BenchTiming.ThroughputAsync([raw.Sign, raw.Verify, mint, validate], seconds, ct).ConfigureAwait(false);
            var (sign, verify, m, v) = (s[0].PerSecond, s[1].PerSecond, s[2].PerSecond, s[3].PerSecond);
            return new JwtResult("jwt", seconds.TotalSeconds, 1, BenchTiming.Round(m), BenchTiming.Round(v), BenchTiming.Round(sign),
                BenchTiming.Round(verify), BenchTiming.Round(sign > 0 ? m / sign : 0, 3), BenchTiming.Round(verify > 0 ? v / verify : 0, 3));
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            dir.Delete(recursive: true);
        }
    }
}
