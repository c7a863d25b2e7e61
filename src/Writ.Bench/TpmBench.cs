using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Serialization;
using Grpc.Core;
using Writ.Agent.Hosting;
using Writ.Agent.NodeAttestation;
using Writ.Protocol.Admin;
using Writ.Server.Hosting;
using Writ.Server.NodeAttestation;
using Writ.Server.NodeAttestation.Tpm;
using Writ.Server.Storage;
using Writ.Tpm.Commands;
using Writ.Tpm.Device;
using Writ.Tpm.Structures;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.Bench;

/// <summary>p50 / p99 / mean of one measured thing, in milliseconds.</summary>
public sealed record TpmFigure(
    [property: JsonPropertyName("samples")] int Samples,
    [property: JsonPropertyName("p50_ms")] double P50,
    [property: JsonPropertyName("p99_ms")] double P99,
    [property: JsonPropertyName("mean_ms")] double Mean)
{
    internal static TpmFigure Of(IReadOnlyCollection<double> ms)
    {
        var sorted = ms.Order().ToArray();
        double At(double p) => sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];
        return new(sorted.Length, BenchTiming.Round(At(50), 3), BenchTiming.Round(At(99), 3), BenchTiming.Round(sorted.Average(), 3));
    }
}

public sealed record TpmBenchResult(
    [property: JsonPropertyName("benchmark")] string Benchmark,
    [property: JsonPropertyName("tpm")] string Tpm,
    [property: JsonPropertyName("rounds")] int Rounds,
    [property: JsonPropertyName("requote_interval_ms")] double RequoteIntervalMs,
    [property: JsonPropertyName("attest_tpm")] TpmFigure AttestTpm,
    [property: JsonPropertyName("attest_join_token")] TpmFigure AttestJoinToken,
    [property: JsonPropertyName("attest_agent_tpm")] TpmFigure AttestAgentTpm,
    [property: JsonPropertyName("attest_server_verify")] TpmFigure AttestServerVerify,
    [property: JsonPropertyName("requote_agent_tpm")] TpmFigure RequoteAgentTpm,
    [property: JsonPropertyName("requote_server_appraise")] TpmFigure RequoteServerAppraise,
    [property: JsonPropertyName("appraise_cpu_us")] double AppraiseCpuMicroseconds,
    [property: JsonPropertyName("fleet_cpu_percent_per_1000_nodes_at_60s")] double FleetCpuPercent,
    [property: JsonPropertyName("drift_to_revocation")] TpmFigure DriftToRevocation,
    [property: JsonPropertyName("goal_p99_ms")] double GoalP99Ms);

/// <summary>
/// `writ bench tpm` (issue #14): a server (SQLite, memory keys, tpm.ek_hashes = the TPM's EK hash, or tpm.ek_ca_dir)
/// and agents in this process, on a real TPM (a device or swtpm). Measures, in one run:
/// (1) node attestation from agent start to attested, tpm (EK, AK and agent key creation, MakeCredential, activation,
/// quote, certify, CSR signature) against join_token; and the split: the agent's TPM time against the server's
/// verification (TpmNodeAttestor.AttestAsync driven directly by the agent's TpmAttestorClient, no network);
/// (2) a re-quote: the agent's TPM quote against the server's appraisal (TpmNodeAttestor.AppraiseAsync), and the
/// appraisal's CPU for 1,000 nodes at the default 60 s interval;
/// (3) drift to revocation: an agent attested by the TPM serves a workload SVID; PCR 14 is extended (TPM2_PCR_Extend);
/// the time until the workload's stream drops the SVID (re-quote, drift, revoke, push), against interval + 1 s. Between
/// rounds the drifted node is evicted (EvictAgent) and the agent attests afresh.
/// </summary>
public static class TpmBench
{
    private const int DriftPcr = 14;
    private static readonly TimeSpan RoundTimeout = TimeSpan.FromSeconds(120);

    public sealed record Options(TpmAddress Tpm, string? EkCaDir, int Rounds, TimeSpan RequoteInterval);

    public static async Task<TpmBenchResult> RunAsync(Options o, BenchHost host, TextWriter progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(o);
        var ek = await Task.Run(() => TpmCall(o.Tpm, t => t.ReadEndorsement()), ct).ConfigureAwait(false);
        var ekHash = TpmPublic.Parse(ek.Public).EkHash();
        var config = new Dictionary<string, string>
        {
            ["tpm.requote_interval"] = $"{o.RequoteInterval.TotalMilliseconds:0}ms",
            // A stopped agent's missing answers must not make the node drift between the measured phases; PCR drift is
            // judged on the answers and does not wait for the grace.
            ["tpm.requote_grace"] = "1h",
            ["tpm.drift_action"] = "revoke",
        };
        config[o.EkCaDir is null ? "tpm.ek_hashes" : "tpm.ek_ca_dir"] = o.EkCaDir ?? ekHash;

        var dir = Directory.CreateTempSubdirectory("wrb-").FullName;
        try
        {
            await using var writ = await InProcessWrit.StartAsync(dir, host, ct, config).ConfigureAwait(false);
            var agentId = $"{writ.TrustDomain.IdString}/writ/agent/tpm/{ekHash}";

            progress.WriteLine($"attestation: {o.Rounds} round(s) each of tpm ({o.Tpm}) and join_token, agent start to attested");
            var (tpmMs, joinMs) = await AttestRoundsAsync(writ, o, host, agentId, dir, ct).ConfigureAwait(false);

            progress.WriteLine("attestation split and re-quote cost: the agent's TPM client against the server's TpmNodeAttestor");
            var split = await SplitAsync(writ, o, ct).ConfigureAwait(false);

            progress.WriteLine($"drift to revocation: {o.Rounds} round(s), PCR {DriftPcr} extended, re-quote every {o.RequoteInterval.TotalSeconds:0.###} s");
            var drift = await DriftRoundsAsync(writ, o, host, agentId, dir, ct).ConfigureAwait(false);

            var fleetCpu = split.AppraiseCpuUs * 1000 / 60 / 1e6 * 100;
            return new TpmBenchResult("tpm", o.Tpm.ToString(), o.Rounds, o.RequoteInterval.TotalMilliseconds,
                TpmFigure.Of(tpmMs), TpmFigure.Of(joinMs), TpmFigure.Of(split.AgentMs), TpmFigure.Of(split.ServerMs),
                TpmFigure.Of(split.QuoteMs), TpmFigure.Of(split.AppraiseMs), BenchTiming.Round(split.AppraiseCpuUs, 2),
                BenchTiming.Round(fleetCpu, 4), TpmFigure.Of(drift), (o.RequoteInterval + TimeSpan.FromSeconds(1)).TotalMilliseconds);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Agent start to attested, tpm and join_token interleaved (machine load hits both alike).</summary>
    private static async Task<(List<double> Tpm, List<double> Join)> AttestRoundsAsync(InProcessWrit writ, Options o, BenchHost host, string agentId, string dir, CancellationToken ct)
    {
        var tpm = new List<double>();
        var join = new List<double>();
        for (var i = 0; i < o.Rounds; i++)
        {
            var tpmOptions = await InProcessWrit.AgentOptionsAsync(writ.TrustDomain, writ.Server, writ.Admin, dir, "tpm", o.Tpm, ct).ConfigureAwait(false);
            tpm.Add(await TimeStartAsync(tpmOptions, host, agentId, ct).ConfigureAwait(false));
            var joinOptions = await InProcessWrit.AgentOptionsAsync(writ.TrustDomain, writ.Server, writ.Admin, dir, $"join-{i}", null, ct).ConfigureAwait(false);
            join.Add(await TimeStartAsync(joinOptions, host, null, ct).ConfigureAwait(false));
        }
        return (tpm, join);
    }

    private static async Task<double> TimeStartAsync(Writ.Agent.AgentOptions options, BenchHost host, string? expectedId, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var agent = await AgentHost.StartAsync(options, TimeProvider.System, host.Logging, ct).ConfigureAwait(false);
        var ms = sw.Elapsed.TotalMilliseconds;
        await using (agent.ConfigureAwait(false))
        {
            if (expectedId is not null && agent.AgentId != expectedId)
            {
                throw new BenchFailedException($"the tpm agent attested as {agent.AgentId}, not {expectedId}");
            }
        }
        return ms;
    }

    private sealed record Split(List<double> AgentMs, List<double> ServerMs, List<double> QuoteMs, List<double> AppraiseMs, double AppraiseCpuUs);

    /// <summary>
    /// The server's attestor driven by the agent's TPM client in this process (no network, no store): each round a new
    /// client (new AK and agent key, as a starting agent makes), evidence, AttestAsync with the challenge answered by the
    /// TPM; agent time = evidence + answer, server time = AttestAsync - answer. Then re-quotes of the attested node.
    /// </summary>
    private static async Task<Split> SplitAsync(InProcessWrit writ, Options o, CancellationToken ct)
    {
        var ctx = writ.Server.Server;
        var attestor = new TpmNodeAttestor(ctx.Options.Tpm, ctx.Store.TpmReferenceSets);
        using var sessionKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = new CertificateRequest("CN=bench", sessionKey, HashAlgorithmName.SHA256).CreateSigningRequest();
        var (agentMs, serverMs) = (new List<double>(), new List<double>());
        TpmAttestorClient? client = null;
        AttestedNodeFacts? facts = null;
        for (var i = 0; i < o.Rounds; i++)
        {
            client = new TpmAttestorClient(o.Tpm, null);
            client.UseCsr(csr);
            var sw = Stopwatch.StartNew();
            var evidence = await client.EvidenceAsync(ct).ConfigureAwait(false);
            var evidenceMs = sw.Elapsed.TotalMilliseconds;
            double answerMs = 0;
            var c = client;
            sw.Restart();
            facts = await attestor.AttestAsync(new NodeEvidence(evidence, writ.TrustDomain, DateTimeOffset.UtcNow) { Csr = csr }, async (challenge, t) =>
            {
                var a = Stopwatch.StartNew();
                var answer = await c.AnswerAsync(challenge, t).ConfigureAwait(false);
                answerMs += a.Elapsed.TotalMilliseconds;
                return answer;
            }, ct).ConfigureAwait(false);
            var attestMs = sw.Elapsed.TotalMilliseconds;
            agentMs.Add(evidenceMs + answerMs);
            serverMs.Add(attestMs - answerMs);
        }

        var node = new AttestedNode
        {
            SpiffeId = facts!.AgentId.ToString(),
            AttestationType = TpmNodeAttestor.TypeName,
            SerialNumber = "01",
            ExpiresAt = DateTimeOffset.UtcNow.AddHours(1),
            Selectors = facts.Selectors,
            AttestorState = facts.AttestorState,
        };
        var (quoteMs, appraiseMs) = (new List<double>(), new List<double>());
        NodeRecheck? last = null;
        ReadOnlyMemory<byte> lastAnswer = default;
        for (var i = 0; i < o.Rounds; i++)
        {
            var recheck = attestor.NewRecheck(node, DateTimeOffset.UtcNow);
            var sw = Stopwatch.StartNew();
            var answer = await client!.AnswerRecheckAsync(recheck.Payload, ct).ConfigureAwait(false);
            quoteMs.Add(sw.Elapsed.TotalMilliseconds);
            sw.Restart();
            var appraisal = await attestor.AppraiseAsync(node, recheck, answer, ct).ConfigureAwait(false);
            appraiseMs.Add(sw.Elapsed.TotalMilliseconds);
            if (!appraisal.Healthy)
            {
                throw new BenchFailedException($"the re-quote of an unchanged TPM was appraised as drifted: {appraisal.DriftCode}: {appraisal.DriftReason}");
            }
            (last, lastAnswer) = (recheck, answer);
        }
        // The appraisal's CPU, warm: the same answer appraised back to back for a second (a verification, no TPM).
        var samples = await BenchTiming.ThroughputAsync(
            [new BenchOp("appraise", async () => await attestor.AppraiseAsync(node, last!, lastAnswer, ct).ConfigureAwait(false))],
            TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
        return new Split(agentMs, serverMs, quoteMs, appraiseMs, samples[0].MicrosecondsPerOp);
    }

    /// <summary>Per round: a tpm agent serving a workload SVID; PCR 14 extended; the time until the workload's stream loses the SVID.</summary>
    private static async Task<List<double>> DriftRoundsAsync(InProcessWrit writ, Options o, BenchHost host, string agentId, string dir, CancellationToken ct)
    {
        await writ.Admin.CallAsync(s => s.CreateEntriesAsync(new CreateEntriesRequest
        {
            Entries =
            {
                new ProtoEntry
                {
                    SpiffeId = writ.TrustDomain.IdString + "/bench/tpm-workload",
                    ParentId = agentId,
                    Selectors = { new ProtoSelector { Type = "unix", Value = $"uid:{UnixPeer.EffectiveUid}" } },
                    X509TtlSeconds = 3600,
                },
            },
        }, cancellationToken: ct)).ConfigureAwait(false);
        var latencies = new List<double>();
        for (var i = 0; i < o.Rounds; i++)
        {
            if (i > 0)
            {
                // The drifted node keeps its attested PCRs as baseline (a readmit would drift again at once, PCR 14 is
                // still extended): evict it, so the next agent attests afresh with today's values as the new baseline.
                await writ.Admin.CallAsync(s => s.EvictAgentAsync(new AgentIdRequest { SpiffeId = agentId }, cancellationToken: ct)).ConfigureAwait(false);
            }
            var options = await InProcessWrit.AgentOptionsAsync(writ.TrustDomain, writ.Server, writ.Admin, dir, "tpm", o.Tpm, ct).ConfigureAwait(false);
            var agent = await AgentHost.StartAsync(options, TimeProvider.System, host.Logging, ct).ConfigureAwait(false);
            await using (agent.ConfigureAwait(false))
            {
                latencies.Add(await DriftOnceAsync(o.Tpm, options.SocketPath, i, ct).ConfigureAwait(false));
            }
        }
        return latencies;
    }

    private static async Task<double> DriftOnceAsync(TpmAddress tpm, string socket, int round, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(RoundTimeout);
        using var client = new WorkloadSocketClient(socket);
        try
        {
            // Wait until the workload holds its SVID (the agent synced the entry and signed it).
            while (true)
            {
                using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadSocketClient.Headers, cancellationToken: deadline.Token);
                try
                {
                    if (await call.ResponseStream.MoveNext(deadline.Token).ConfigureAwait(false) && call.ResponseStream.Current.Svids.Count > 0)
                    {
                        break;
                    }
                }
                catch (RpcException) when (!deadline.IsCancellationRequested)
                {
                    // no identity yet (PermissionDenied): ask again
                }
                await Task.Delay(20, deadline.Token).ConfigureAwait(false);
            }
            using var watch = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadSocketClient.Headers, cancellationToken: deadline.Token);
            if (!await watch.ResponseStream.MoveNext(deadline.Token).ConfigureAwait(false) || watch.ResponseStream.Current.Svids.Count == 0)
            {
                throw new BenchFailedException("the workload lost its SVID before the PCR changed");
            }
            await Task.Run(() => TpmCall(tpm, t =>
            {
                t.ExtendPcr(DriftPcr, System.Text.Encoding.UTF8.GetBytes($"writ bench tpm drift {round} {Guid.NewGuid()}"));
                return 0;
            }), deadline.Token).ConfigureAwait(false);
            var sw = Stopwatch.StartNew();
            try
            {
                while (await watch.ResponseStream.MoveNext(deadline.Token).ConfigureAwait(false))
                {
                    if (watch.ResponseStream.Current.Svids.Count == 0)
                    {
                        break;
                    }
                }
            }
            catch (RpcException) when (!deadline.IsCancellationRequested)
            {
                // the agent ended the stream with an error: nothing is served any more
            }
            return sw.Elapsed.TotalMilliseconds;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new BenchFailedException($"drift round {round + 1}: the workload did not get or lose its SVID within {RoundTimeout.TotalSeconds:0} s: the node did not drift or the revocation was not pushed");
        }
        catch (RpcException) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            throw new BenchFailedException($"drift round {round + 1}: the workload did not get or lose its SVID within {RoundTimeout.TotalSeconds:0} s: the node did not drift or the revocation was not pushed");
        }
    }

    private static T TpmCall<T>(TpmAddress address, Func<TpmOperations, T> call)
    {
        try
        {
            return call(new TpmOperations(address));
        }
        catch (Exception e) when (e is TpmException or TpmDeviceException or Writ.Tpm.Marshalling.TpmFormatException)
        {
            throw new BenchFailedException($"the TPM at {address}: {e.Message}");
        }
    }
}
