using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Server.Issuance;
using Writ.Server.Keys;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;
using Writ.Protocol.Evidence;

namespace Writ.Bench;

/// <summary>Where one issuance's time goes inside the pipeline (µs per issued SVID, from the batch-of-1 runs).</summary>
public sealed record PipelineStages(
    [property: JsonPropertyName("match_us")] double Match,
    [property: JsonPropertyName("policy_us")] double Policy,
    [property: JsonPropertyName("sign_us")] double Sign,
    [property: JsonPropertyName("record_json_us")] double Record,
    [property: JsonPropertyName("ledger_write_us")] double Ledger);

public sealed record PipelineRow(
    [property: JsonPropertyName("measure")] string Measure,
    [property: JsonPropertyName("svids_per_second")] double PerSecond,
    [property: JsonPropertyName("us_per_svid")] double MicrosecondsPerSvid);

public sealed record PipelineResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("store")] string Store,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("policies")] int Policies,
    [property: JsonPropertyName("rows")] IReadOnlyList<PipelineRow> Rows,
    [property: JsonPropertyName("stages")] PipelineStages Stages,
    [property: JsonPropertyName("overhead_us")] double OverheadMicroseconds,
    [property: JsonPropertyName("pipeline_to_sign_ratio")] double Ratio);

/// <summary>
/// `writ bench pipeline`: the server's whole issuance pipeline in process (SQLite store on a temp dir, memory keys, a
/// policy set of the default permits plus a few forbids that do not apply) against signing alone (CSR check + sign,
/// the agent API's signing path). Measured: one CSR per call (one ledger transaction per SVID), 16 CSRs per call (one
/// transaction per batch, as an agent renewing many instances sends), and 8 concurrent one-CSR calls.
/// </summary>
public static class PipelineBench
{
    private const int Keys = 64;
    private const int Concurrency = 8;
    private const int Batch = 16;
    private const string AgentId = "spiffe://bench.writ/writ/agent/join_token/bench";

    private const string BenchPolicy = """
        @id("bench-payments-tpm")
        forbid (principal is Writ::Workload, action, resource)
        when { resource.path like "/payments/*" } unless { principal.node.attestation == "tpm" };

        @id("bench-known-binaries")
        forbid (principal is Writ::Workload, action, resource)
        when { resource.path like "/prod/*" } unless { principal has exe_sha256 && ["00"].contains(principal.exe_sha256) };

        @id("bench-ci-short") @max_ttl("10m")
        permit (principal is Writ::Workload, action == Writ::Action::"IssueX509Svid", resource)
        when { resource.path like "/ci/*" };
        """;

    public static async Task<PipelineResult> RunAsync(TimeSpan seconds, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("writ-bench-");
        try
        {
            var db = Path.Combine(dir.FullName, "writ.db");
            await using var store = await WritStoreFactory.OpenAsync("sqlite", db, TimeProvider.System, ct).ConfigureAwait(false);
            var td = TrustDomain.Parse("bench.writ");
            var options = new ServerOptions
            {
                TrustDomain = td,
                DataDir = dir.FullName,
                Bind = new IPEndPoint(IPAddress.Loopback, 0),
                AdminSocket = Path.Combine(dir.FullName, "admin.sock"),
                StoreKind = "sqlite",
                StoreConnection = db,
                KeyManager = "memory",
                Ca = new CaOptions(),
                // The benchmark measures the pipeline, not the flood limits: one entry is issued thousands of times a second.
                Ledger = new LedgerOptions { IssuancePerAgent = 0, IssuancePerWorkload = 0, DenialsPerAgent = 0, DenialsPerWorkload = 0 },
            };
            var ca = new WritCa(td, options.Ca, new MemoryKeyManager(), store, TimeProvider.System, NullLogger<WritCa>.Instance);
            await ca.InitializeAsync(ct).ConfigureAwait(false);
            var server = new ServerContext(options, store, ca, TimeProvider.System, NullLoggerFactory.Instance);
            List<PolicyFileRecord> files = [.. WritPolicyCompiler.DefaultFiles, new("bench.cedar", BenchPolicy)];
            await store.Policies.PushAsync(new StoredPolicyVersion { Files = files, Sha256 = WritPolicyCompiler.Sha256(files), Author = "bench" }, null, [], ct).ConfigureAwait(false);
            await server.Policy.RefreshAsync(ct).ConfigureAwait(false);
            var node = new AttestedNode
            {
                SpiffeId = AgentId,
                AttestationType = "join_token",
                SerialNumber = "01",
                ExpiresAt = DateTimeOffset.UtcNow.AddDays(1),
                Selectors = [new Selector("join_token", "bench")],
            };
            await store.Nodes.CreateAsync(node, ct).ConfigureAwait(false);

            // Requesters' keys, CSRs, entries and evidence are made beforehand: the workloads' and agent's work.
            var entries = await store.Entries.CreateAsync([.. Enumerable.Range(0, Keys).Select(i => new RegistrationEntry
            {
                SpiffeId = $"{td.IdString}/ns/bench/sa/workload-{i}",
                ParentId = AgentId,
                Selectors = [new Selector("unix", "uid:" + (1000 + i).ToString(CultureInfo.InvariantCulture))],
            })], ct).ConfigureAwait(false);
            var requests = new X509SvidRequest[Keys];
            var ids = new SpiffeId[Keys];
            for (var i = 0; i < Keys; i++)
            {
                using var k = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                var uid = (1000 + i).ToString(CultureInfo.InvariantCulture);
                WorkloadEvidence.TryCreate([("unix", "uid:" + uid), ("unix", "gid:" + uid), ("unix", "path:/usr/bin/workload"), ("unix", "sha256:" + new string('a', 64))],
                    new Dictionary<string, string> { ["unix.pid"] = (4000 + i).ToString(CultureInfo.InvariantCulture), ["unix.uids"] = $"{uid} {uid} {uid} {uid}" },
                    $"{4000 + i}:123456", out var ev, out _);
                requests[i] = new X509SvidRequest(entries[i].Id, Csr.Create(k), ev);
                ids[i] = SpiffeId.Parse(entries[i].SpiffeId);
            }
            var pipeline = new IssuancePipeline(server, NullLogger.Instance);
            var ttl = TimeSpan.FromHours(1);
            var n = 0;
            // The stages are timed by the benchmark itself (the production types carry no hooks): each stage's own
            // work as its own operation, interleaved with the others; the ledger write is read from the server's meter
            // (writ.server.ledger.append.duration) during the 1-CSR pipeline calls only.
            using var ledger = new LedgerMeterReader();
            var policy = server.Policy.Current;
            var nodeEntity = WritCedar.Node(NodeFacts.Of(node));
            var decision = IssuancePipeline.DecideWorkload(policy, WritCedar.IssueX509Svid, nodeEntity, AgentId, entries[0], requests[0].Evidence, [], ttl, DateTimeOffset.UtcNow, bound: true);
            var match = new BenchOp("match", async () =>
            {
                var i = n++ % Keys;
                var e = await store.Entries.GetAsync(entries[i].Id, ct).ConfigureAwait(false);
                _ = e is not null && string.Equals(e.ParentId, AgentId, StringComparison.Ordinal);
            });
            var decide = BenchOp.Sync("policy", () =>
            {
                var i = n++ % Keys;
                IssuancePipeline.DecideWorkload(policy, WritCedar.IssueX509Svid, nodeEntity, AgentId, entries[i], requests[i].Evidence, [], ttl, DateTimeOffset.UtcNow, bound: true);
            });
            var record = BenchOp.Sync("record", () =>
            {
                var i = n++ % Keys;
                IssuanceDecider.RecordData(decision, "x509", AgentId, entries[i].SpiffeId, entries[i].Id, requests[i].Evidence);
            });

            var sign = BenchOp.Sync("sign", () =>
            {
                var i = n++ % Keys;
                server.Issuer.SignX509Der(ids[i], requests[i].Csr.Span, ttl, []);
            });
            var one = new BenchOp("one", async () =>
            {
                ledger.Counting = true;
                await pipeline.SignX509Async(node, [requests[n++ % Keys]], ct).ConfigureAwait(false);
                ledger.Counting = false;
            });
            var batch = new BenchOp("batch", async () =>
            {
                var b = new X509SvidRequest[Batch];
                for (var j = 0; j < Batch; j++)
                {
                    b[j] = requests[n++ % Keys];
                }
                await pipeline.SignX509Async(node, b, ct).ConfigureAwait(false);
            });
            var concurrent = new BenchOp("concurrent", async () =>
            {
                var tasks = new Task[Concurrency];
                for (var j = 0; j < Concurrency; j++)
                {
                    var r = requests[n++ % Keys];
                    tasks[j] = Task.Run(() => pipeline.SignX509Async(node, [r], ct), ct);
                }
                await Task.WhenAll(tasks).ConfigureAwait(false);
            });
            await pipeline.SignX509Async(node, [requests[0]], ct).ConfigureAwait(false);   // warm-up, and a real record to copy
            // The ledger alone: one record per transaction, and 16 (what one batch call or a group commit writes).
            var sampleEvent = new LedgerEvent
            {
                At = DateTimeOffset.UtcNow,
                Kind = "x509.issued",
                Actor = AgentId,
                Subject = entries[0].SpiffeId,
                DataJson = (await store.Ledger.RecentDecisionsAsync(1, ct).ConfigureAwait(false)) is [{ } last] ? last.DataJson : "{}",
            };
            LedgerEvent[] Events(int count) => [.. Enumerable.Range(0, count).Select(_ => sampleEvent with { DecisionId = IssuanceDecider.NewDecisionId() })];
            var ledger1 = new BenchOp("ledger1", async () => await store.Ledger.AppendAsync(Events(1), [], ct).ConfigureAwait(false));
            var ledger16 = new BenchOp("ledger16", async () => await store.Ledger.AppendAsync(Events(Batch), [], ct).ConfigureAwait(false));
            var samples = await BenchTiming.ThroughputAsync([sign, one, batch, concurrent, ledger1, ledger16, match, decide, record], seconds, ct).ConfigureAwait(false);
            double Rate(string name) => samples.Single(s => s.Name == name).PerSecond;
            var signRate = Rate("sign");
            var oneRate = Rate("one");
            var batchRate = Rate("batch") * Batch;
            var concurrentRate = Rate("concurrent") * Concurrency;
            static double Us(double rate) => rate <= 0 ? 0 : BenchTiming.Round(1e6 / rate, 2);
            var stages = new PipelineStages(Us(Rate("match")), Us(Rate("policy")), Us(signRate), Us(Rate("record")), BenchTiming.Round(ledger.MeanMicroseconds, 2));
            PipelineRow Row(string measure, double rate) => new(measure, BenchTiming.Round(rate), rate <= 0 ? 0 : BenchTiming.Round(1e6 / rate, 1));
            return new PipelineResult("pipeline", store.Kind, seconds.TotalSeconds, server.Policy.Current.Compiled.Set.All.Count,
            [
                Row("signing alone (CSR check + sign, DER out)", signRate),
                Row("pipeline, 1 CSR per call (match, policy, sign, ledger txn)", oneRate),
                Row($"pipeline, {Batch} CSRs per call (one ledger txn per call)", batchRate),
                Row($"pipeline, {Concurrency} concurrent 1-CSR calls (group commit)", concurrentRate),
                Row("ledger append alone, 1 record per transaction", Rate("ledger1")),
                Row($"ledger append alone, {Batch} records per transaction", Rate("ledger16") * Batch),
            ], stages,
            oneRate <= 0 || signRate <= 0 ? 0 : BenchTiming.Round((1e6 / oneRate) - (1e6 / signRate), 1),
            signRate <= 0 ? 0 : BenchTiming.Round(oneRate / signRate, 3));
        }
        finally
        {
            try
            {
                dir.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

/// <summary>
/// Reads the server's ledger-append histogram (<c>writ.server.ledger.append.duration</c>) while <see cref="Counting"/>
/// is set: the mean time of the ledger writes the benchmark's own calls made.
/// </summary>
internal sealed class LedgerMeterReader : IDisposable
{
    private readonly System.Diagnostics.Metrics.MeterListener _listener = new();
    private double _sum;
    private long _count;

    public LedgerMeterReader()
    {
        _listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == Writ.Server.Telemetry.WritServerMetrics.MeterName && instrument.Name == "writ.server.ledger.append.duration")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>((_, seconds, _, _) =>
        {
            if (Counting)
            {
                _sum += seconds;
                _count++;
            }
        });
        _listener.Start();
    }

    public bool Counting { get; set; }

    public double MeanMicroseconds => _count == 0 ? 0 : _sum * 1e6 / _count;

    public void Dispose() => _listener.Dispose();
}
