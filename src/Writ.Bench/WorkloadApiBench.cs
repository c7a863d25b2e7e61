using System.Text.Json.Serialization;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Admin;
using Writ.Server.Hosting;
using Writ.Spiffe;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.Bench;

public sealed record LatencyFigures(
    [property: JsonPropertyName("calls")] long Calls,
    [property: JsonPropertyName("p50_us")] double P50,
    [property: JsonPropertyName("p99_us")] double P99,
    [property: JsonPropertyName("mean_us")] double Mean)
{
    public static LatencyFigures Of(BenchSample s) => new(s.Count, BenchTiming.Round(s.PercentileMicroseconds(50)),
        BenchTiming.Round(s.PercentileMicroseconds(99)), BenchTiming.Round(s.MicrosecondsPerOp));
}

public sealed record WorkloadApiResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("fetch_x509_svid")] LatencyFigures FetchX509,
    [property: JsonPropertyName("noop_stream")] LatencyFigures NoopStream,
    [property: JsonPropertyName("fetch_jwt_svid")] LatencyFigures FetchJwt,
    [property: JsonPropertyName("noop_unary")] LatencyFigures NoopUnary,
    [property: JsonPropertyName("x509_p99_ratio")] double X509P99Ratio,
    [property: JsonPropertyName("jwt_p99_ratio")] double JwtP99Ratio,
    [property: JsonPropertyName("goal_ratio")] double GoalRatio,
    [property: JsonPropertyName("breakdown")] IReadOnlyList<StageFigures>? Breakdown = null);

/// <summary>
/// `writ bench workload-api`: a server (SQLite, memory keys) and an agent in this process, one entry for this process's
/// uid; then, with the agent's cache warm, the latency of FetchX509SVID (open the stream, receive the first message,
/// cancel — what a workload does at start-up) and FetchJWTSVID over the agent's Unix socket, against the same calls to
/// a no-op Workload API service (answers at once, attests nothing) hosted by Kestrel on a second Unix socket in this
/// process and called through the same client stack.
/// </summary>
public static class WorkloadApiBench
{
    public const double GoalRatio = 2.0;
    private const string Audience = "https://api.bench.writ";

    public static async Task<WorkloadApiResult> RunAsync(TimeSpan seconds, bool breakdown, BenchHost host, TextWriter progress, CancellationToken ct)
    {
        var result = await RunAsync(seconds, host, progress, ct).ConfigureAwait(false);
        if (!breakdown)
        {
            return result;
        }
        progress.WriteLine($"breakdown: each stage for {seconds.TotalSeconds:0.#} s");
        return result with { Breakdown = await AttestationBreakdown.RunAsync(seconds, ct).ConfigureAwait(false) };
    }

    public static async Task<WorkloadApiResult> RunAsync(TimeSpan seconds, BenchHost host, TextWriter progress, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("wb-").FullName;
        try
        {
            await using var writ = await InProcessWrit.StartAsync(dir, host, ct).ConfigureAwait(false);
            var (td, admin, agent) = (writ.TrustDomain, writ.Admin, writ.Agent);
            var uid = UnixPeer.EffectiveUid;
            await admin.CallAsync(s => s.CreateEntriesAsync(new CreateEntriesRequest
            {
                Entries =
                {
                    new ProtoEntry
                    {
                        SpiffeId = SpiffeId.Parse(td.IdString + "/bench/workload").ToString(),
                        ParentId = agent.AgentId,
                        Selectors = { new ProtoSelector { Type = "unix", Value = $"uid:{uid}" } },
                        X509TtlSeconds = 3600,
                    },
                },
            }, cancellationToken: ct)).ConfigureAwait(false);

            var noopSocket = Path.Combine(dir, "noop.sock");
            await using var noop = await StartNoopAsync(noopSocket, ct).ConfigureAwait(false);
            using var real = new WorkloadSocketClient(writ.WorkloadSocket);
            using var baseline = new WorkloadSocketClient(noopSocket);
            await WaitForSvidAsync(real, ct).ConfigureAwait(false);
            progress.WriteLine($"server, agent and no-op service up in {dir}; measuring for {seconds.TotalSeconds:0.#} s per call kind");

            var ops = new[]
            {
                new BenchOp("fetch_x509_svid", () => FirstX509Async(real, ct)),
                new BenchOp("noop_stream", () => FirstX509Async(baseline, ct)),
                new BenchOp("fetch_jwt_svid", () => JwtAsync(real, ct)),
                new BenchOp("noop_unary", () => JwtAsync(baseline, ct)),
            };
            var s = await BenchTiming.LatencyAsync(ops, seconds, ct).ConfigureAwait(false);
            var (x509, noopStream, jwt, noopUnary) = (LatencyFigures.Of(s[0]), LatencyFigures.Of(s[1]), LatencyFigures.Of(s[2]), LatencyFigures.Of(s[3]));
            return new WorkloadApiResult("workload-api", seconds.TotalSeconds, x509, noopStream, jwt, noopUnary,
                BenchTiming.Round(noopStream.P99 > 0 ? x509.P99 / noopStream.P99 : 0, 2),
                BenchTiming.Round(noopUnary.P99 > 0 ? jwt.P99 / noopUnary.P99 : 0, 2), GoalRatio);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async ValueTask FirstX509Async(WorkloadSocketClient client, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadSocketClient.Headers, cancellationToken: cts.Token);
        if (!await call.ResponseStream.MoveNext(cts.Token).ConfigureAwait(false))
        {
            throw new InvalidOperationException("the X.509-SVID stream ended before its first message");
        }
        cts.Cancel();   // a workload that only needs the current SVID hangs up
    }

    private static async ValueTask JwtAsync(WorkloadSocketClient client, CancellationToken ct)
    {
        var request = new JWTSVIDRequest { Audience = { Audience } };
        await client.Client.FetchJWTSVIDAsync(request, WorkloadSocketClient.Headers, cancellationToken: ct).ConfigureAwait(false);
    }

    /// <summary>The agent learns of the entry through its sync stream and signs it: wait (with a deadline) until it is served.</summary>
    private static async Task WaitForSvidAsync(WorkloadSocketClient client, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            try
            {
                await FirstX509Async(client, deadline.Token).ConfigureAwait(false);
                await JwtAsync(client, deadline.Token).ConfigureAwait(false);
                return;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.PermissionDenied && !deadline.IsCancellationRequested)
            {
                await Task.Delay(50, deadline.Token).ConfigureAwait(false);   // entry not synced yet
            }
            catch (RpcException) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                throw new BenchFailedException("the agent did not serve an SVID within 30 s: the benchmark cannot run");
            }
        }
    }

    private static async Task<WebApplication> StartNoopAsync(string socket, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.ListenUnixSocket(socket, lo => lo.Protocols = HttpProtocols.Http2);
        });
        var app = builder.Build();
        app.MapGrpcService<NoopWorkloadApi>();
        await app.StartAsync(ct).ConfigureAwait(false);
        return app;
    }

    /// <summary>The baseline: the Workload API's shape with nothing behind it.</summary>
    private sealed class NoopWorkloadApi : SpiffeWorkloadAPI.SpiffeWorkloadAPIBase
    {
        private static readonly X509SVIDResponse X509 = new();
        private static readonly JWTSVIDResponse Jwt = new();

        public override async Task FetchX509SVID(X509SVIDRequest request, IServerStreamWriter<X509SVIDResponse> responseStream, ServerCallContext context)
        {
            await responseStream.WriteAsync(X509).ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, context.CancellationToken).ConfigureAwait(false);   // a stream stays open, like the agent's
            }
            catch (OperationCanceledException)
            {
            }
        }

        public override Task<JWTSVIDResponse> FetchJWTSVID(JWTSVIDRequest request, ServerCallContext context) => Task.FromResult(Jwt);
    }
}
