using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Serialization;
using Envoy.Service.Auth.V3;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.Authz;
using Writ.Agent.Sync;
using Writ.Agent.Telemetry;
using Writ.Policy.Ast;
using Writ.Policy.Json;
using Writ.Protocol;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Bench;

public sealed record AuthzRun(
    [property: JsonPropertyName("service")] string Service,
    [property: JsonPropertyName("target_rps")] int TargetRps,
    [property: JsonPropertyName("achieved_rps")] double AchievedRps,
    [property: JsonPropertyName("requests")] int Requests,
    [property: JsonPropertyName("errors")] int Errors,
    [property: JsonPropertyName("p50_ms")] double P50,
    [property: JsonPropertyName("p99_ms")] double P99,
    [property: JsonPropertyName("p999_ms")] double P999,
    [property: JsonPropertyName("max_ms")] double Max);

public sealed record AuthzBenchResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("runs")] IReadOnlyList<AuthzRun> Runs,
    [property: JsonPropertyName("added_p99_ms")] double AddedP99,
    [property: JsonPropertyName("decide_p50_us")] double DecideP50Us,
    [property: JsonPropertyName("decide_p99_us")] double DecideP99Us,
    [property: JsonPropertyName("goal_p99_ms")] double GoalP99);

/// <summary>
/// `writ bench authz`: the agent's ext_authz service (<see cref="ExtAuthzService"/> with a real <see cref="CallDecider"/>: a
/// caller certificate verified to a bundle, 1,000 revocations, a call policy) and a no-op Authorization service (answers OK
/// at once), each on its own Unix socket in this process, driven by Envoy's generated client over a few HTTP/2 channels with
/// open-loop load: requests are sent on a fixed schedule at the target rate, whether or not earlier ones have answered, and
/// each latency counts from its scheduled time (a stall is not hidden by sending less). Both services are warmed up
/// (2 s each) before the no-op run and then the decision service's are measured.
/// </summary>
public static class AuthzBench
{
    public const double GoalP99Ms = 1.0;
    private const string Caller = "spiffe://bench.example/web";
    private const string Resource = "spiffe://bench.example/api";

    public static async Task<AuthzBenchResult> RunAsync(int rate, TimeSpan duration, int channels, TextWriter progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(progress);
        var dir = Directory.CreateTempSubdirectory("wab-").FullName;
        try
        {
            using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using var ca = NewCa(caKey);
            using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using var leaf = NewLeaf(ca, leafKey);
            var state = new AgentState(new TrustBundle(TrustDomain.Parse("bench.example"), [ca], []));
            state.Revocations.Add(Enumerable.Range(0, 1000).Select(_ => new Revocation
            {
                SerialHex = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)), Reason = "bench",
            }));
            if (!PolicySet.TryParse($$"""
                @id("web-calls-api")
                permit(principal, action == Writ::Action::"call", resource)
                  when { principal.spiffe_id == "{{Caller}}" && resource.spiffe_id == "{{Resource}}" && context.path like "/v1/*" };
                @id("no-admin")
                forbid(principal, action == Writ::Action::"call", resource) when { context.path like "/admin*" };
                """, out var set, out var errors) || !state.TrySetCallPolicy(new CallPolicy { Version = 1, PolicySetJson = PolicyJson.ToJson(set!) }, out _))
            {
                throw new BenchFailedException("the bench's call policy does not parse: " + string.Join("; ", errors ?? []));
            }
            var options = new AuthzOptions { Headers = ["x-team"] };
            var decider = new CallDecider(state, new IssuedCredentials(), options, TimeProvider.System, WritAgentMetrics.Unhosted, NullLogger.Instance);
            var real = new ExtAuthzService(decider, options);

            var check = new CheckRequest
            {
                Attributes = new AttributeContext
                {
                    Source = new AttributeContext.Types.Peer { Certificate = Uri.EscapeDataString(leaf.ExportCertificatePem()), Principal = Caller },
                    Request = new AttributeContext.Types.Request
                    {
                        Http = new AttributeContext.Types.HttpRequest { Method = "GET", Path = "/v1/items", Host = "api.internal" },
                    },
                },
            };
            check.Attributes.Request.Http.Headers["x-team"] = "blue";
            check.Attributes.Request.Http.Headers["user-agent"] = "bench";
            check.Attributes.ContextExtensions[ExtAuthzService.ResourceExtension] = Resource;
            if (real.Decide(check).Status.Code != 0)
            {
                throw new BenchFailedException("the decision service denies the bench's request: " + real.Decide(check).DeniedResponse.Body.Trim());
            }

            // The decision alone, in this thread (no gRPC, no socket): what the service adds per request.
            progress.WriteLine("decision alone: 1 s in one thread");
            var alone = new List<long>(100_000);
            var until = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
            while (Stopwatch.GetTimestamp() < until || alone.Count < 100)
            {
                var t = Stopwatch.GetTimestamp();
                real.Decide(check);
                alone.Add(Stopwatch.GetTimestamp() - t);
            }
            alone.Sort();
            double Us(double p) => BenchTiming.Round(alone[Math.Clamp((int)Math.Ceiling(p / 100 * alone.Count) - 1, 0, alone.Count - 1)] * 1e6 / Stopwatch.Frequency);

            var noopSocket = Path.Combine(dir, "noop.sock");
            var authzSocket = Path.Combine(dir, "authz.sock");
            await using var noopHost = await ServeAsync(noopSocket, new NoopAuthorization(), ct).ConfigureAwait(false);
            await using var authzHost = await ServeAsync(authzSocket, real, ct).ConfigureAwait(false);
            var runs = new List<AuthzRun>();
            var services = new[] { ("no-op", noopSocket), ("ext_authz", authzSocket) };
            foreach (var (name, socket) in services)
            {
                progress.WriteLine($"{name}: warming up, 2 s at {rate}/s");
                await LoadAsync(name, socket, check, rate, TimeSpan.FromSeconds(2), channels, ct).ConfigureAwait(false);   // both warm before either is measured
            }
            foreach (var (name, socket) in services)
            {
                progress.WriteLine($"{name}: {rate}/s for {duration.TotalSeconds:0.#} s over {channels} channel(s)");
                runs.Add(await LoadAsync(name, socket, check, rate, duration, channels, ct).ConfigureAwait(false));
            }
            return new AuthzBenchResult("authz", runs, BenchTiming.Round(runs[1].P99 - runs[0].P99, 3), Us(50), Us(99), GoalP99Ms);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private sealed class NoopAuthorization : Authorization.AuthorizationBase
    {
        private static readonly CheckResponse Ok = new() { Status = new Google.Rpc.Status { Code = 0 }, OkResponse = new OkHttpResponse() };

        public override Task<CheckResponse> Check(CheckRequest request, ServerCallContext context) => Task.FromResult(Ok);
    }

    private static async Task<WebApplication> ServeAsync<TService>(string socket, TService service, CancellationToken ct) where TService : class
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(service);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.ListenUnixSocket(socket, lo => lo.Protocols = HttpProtocols.Http2);
        });
        var app = builder.Build();
        app.MapGrpcService<TService>();
        await app.StartAsync(ct).ConfigureAwait(false);
        return app;
    }

    /// <summary>Open-loop load: a warm-up second, then <paramref name="duration"/> at <paramref name="rate"/> requests per second.</summary>
    private static async Task<AuthzRun> LoadAsync(string name, string socket, CheckRequest check, int rate, TimeSpan duration, int channels, CancellationToken ct)
    {
        var open = Enumerable.Range(0, channels).Select(_ => WorkloadApiChannel.ForSocket(socket)).ToList();
        try
        {
            var clients = open.Select(c => new Authorization.AuthorizationClient(c)).ToList();
            await SendScheduleAsync(clients, check, rate, TimeSpan.FromSeconds(1), null, ct).ConfigureAwait(false);   // warm-up: connections, JIT, caches
            var count = (int)Math.Max(1, rate * duration.TotalSeconds);
            var latencies = new long[count];
            var started = Stopwatch.GetTimestamp();
            var errors = await SendScheduleAsync(clients, check, rate, duration, latencies, ct).ConfigureAwait(false);
            var elapsed = Stopwatch.GetElapsedTime(started);
            var sorted = latencies.Where(l => l > 0).Order().ToArray();
            if (sorted.Length == 0)
            {
                throw new BenchFailedException($"the {name} service answered no request");
            }
            double Pct(double p) => Ms(sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)]);
            return new AuthzRun(name, rate, BenchTiming.Round(sorted.Length / elapsed.TotalSeconds), count, errors, Pct(50), Pct(99), Pct(99.9), Ms(sorted[^1]));
        }
        finally
        {
            foreach (var c in open)
            {
                c.Dispose();
            }
        }
    }

    /// <summary>Sends request i at start + i/rate (round-robin over the clients) and records its latency from that time; returns the errors.</summary>
    private static async Task<int> SendScheduleAsync(IReadOnlyList<Authorization.AuthorizationClient> clients, CheckRequest check, int rate, TimeSpan duration,
        long[]? latencies, CancellationToken ct)
    {
        var count = (int)Math.Max(1, rate * duration.TotalSeconds);
        var interval = (double)Stopwatch.Frequency / rate;
        var start = Stopwatch.GetTimestamp();
        var inFlight = new List<Task>(count);
        var errors = 0;
        for (var i = 0; i < count; i++)
        {
            var due = start + (long)(i * interval);
            while (Stopwatch.GetTimestamp() < due)
            {
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.FromMilliseconds(2))
                {
                    await Task.Delay(wait - TimeSpan.FromMilliseconds(1), ct).ConfigureAwait(false);
                }
                else
                {
                    Thread.Yield();
                }
            }
            var index = i;
            inFlight.Add(OneAsync(clients[i % clients.Count], check, due, latencies, index, () => Interlocked.Increment(ref errors), ct));
        }
        await Task.WhenAll(inFlight).ConfigureAwait(false);
        return errors;
    }

    private static async Task OneAsync(Authorization.AuthorizationClient client, CheckRequest check, long due, long[]? latencies, int index, Action failed, CancellationToken ct)
    {
        try
        {
            var r = await client.CheckAsync(check, cancellationToken: ct).ConfigureAwait(false);
            var took = Stopwatch.GetTimestamp() - due;
            if (r.Status.Code != 0)
            {
                failed();
            }
            else if (latencies is not null)
            {
                latencies[index] = Math.Max(1, took);
            }
        }
        catch (RpcException)
        {
            failed();
        }
    }

    private static double Ms(long ticks) => BenchTiming.Round(ticks * 1000.0 / Stopwatch.Frequency, 3);

    private static X509Certificate2 NewCa(ECDsa key)
    {
        var req = new CertificateRequest("CN=bench ca", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(2));
    }

    private static X509Certificate2 NewLeaf(X509Certificate2 ca, ECDsa key)
    {
        var req = new CertificateRequest("CN=web", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(Caller));
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        return req.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1), RandomNumberGenerator.GetBytes(16).Select((b, i) => i == 0 ? (byte)(b & 0x7f | 0x01) : b).ToArray());
    }
}
