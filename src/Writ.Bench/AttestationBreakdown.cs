using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Serialization;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.PeerTracking;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;
using Writ.Spiffe;
using ProtoEntry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;

namespace Writ.Bench;

/// <summary>One stage of a Workload API call: its name, what it does, and its latency over the timed calls.</summary>
public sealed record StageFigures(
    [property: JsonPropertyName("stage")] string Stage,
    [property: JsonPropertyName("what")] string What,
    [property: JsonPropertyName("p50_us")] double P50,
    [property: JsonPropertyName("p99_us")] double P99,
    [property: JsonPropertyName("mean_us")] double Mean);

/// <summary>
/// `writ bench workload-api --breakdown`: the agent's own work per Workload API call, stage by stage, timed with a
/// Stopwatch over the real functions (not copies) against a real Unix-socket connection from this process, so
/// SO_PEERCRED, the pidfd and /proc describe a live process exactly as for a workload. Matching and response building
/// are timed with the same code shape as <c>WorkloadApiService</c> (its methods are private) over one matching entry
/// among <see cref="OtherEntries"/> others.
/// </summary>
public static class AttestationBreakdown
{
    public const int OtherEntries = 100;

    public static async Task<IReadOnlyList<StageFigures>> RunAsync(TimeSpan each, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("wab-").FullName;
        try
        {
            var path = Path.Combine(dir, "s.sock");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(4);
            using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await client.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
            using var server = await listener.AcceptAsync(ct).ConfigureAwait(false);

            var proc = ProcFs.Host;
            if (!PeerCredentialReader.TryRead(server, out var peer, out var error))
            {
                throw new BenchFailedException($"cannot read this process's own peer credentials: {error}");
            }
            var unix = new UnixWorkloadAttestor(proc);
            var cgroup = new CgroupWorkloadAttestor(proc);
            var runner = new WorkloadAttestationRunner([unix, cgroup], proc, TimeSpan.FromSeconds(5), NullLogger.Instance);
            var probe = await runner.AttestConnectionAsync(server, ct).ConfigureAwait(false);
            var evidence = probe.Evidence ?? throw new BenchFailedException($"this process cannot be attested: {probe.Error}");
            var pin = evidence.Process.Pin;
            var process = evidence.Process;
            PeerProcessHandle.TryOpen(server, out var handle, out _, out _);
            using var pidfd = handle;

            // Entries as the agent holds them: one for this process's uid, the rest for other uids.
            var td = TrustDomain.Parse("bench.writ");
            var entries = new Dictionary<string, ProtoEntry>(StringComparer.Ordinal);
            for (var i = 0; i <= OtherEntries; i++)
            {
                var uid = i == 0 ? peer.Uid : 200000 + i;
                entries[$"e{i}"] = new ProtoEntry
                {
                    Id = $"e{i}",
                    SpiffeId = $"{td.IdString}/bench/w{i}",
                    Selectors = { new ProtoSelector { Type = "unix", Value = $"uid:{uid}" } },
                    Revision = i + 1,
                };
            }
            var (chainDer, keyPkcs8, bundleDer) = MakeSvid(td);

            var stages = new (string Name, string What, BenchOp Op)[]
            {
                ("peer_credentials", "SO_PEERCRED (getsockopt)", BenchOp.Sync("peer_credentials", () => PeerCredentialReader.TryRead(server, out _, out _))),
                ("peer_pidfd", "SO_PEERPIDFD open + close", BenchOp.Sync("peer_pidfd", () =>
                {
                    PeerProcessHandle.TryOpen(server, out var h, out _, out _);
                    h?.Dispose();
                })),
                ("pidfd_fdinfo", "pid of the pidfd from /proc/self/fdinfo (PeerProcessHandle.CurrentPid; the check before)", BenchOp.Sync("pidfd_fdinfo", () => _ = pidfd?.CurrentPid)),
                ("pidfd_holds", "pidfd_send_signal(fd, 0): not reaped, still holds its pid (StillHolds)", BenchOp.Sync("pidfd_holds", () => _ = pidfd?.StillHolds(peer.Pid))),
                ("pidfd_exited", "poll(pidfd): exited? (HasExited)", BenchOp.Sync("pidfd_exited", () => _ = pidfd?.HasExited)),
                ("boot_id_read", "/proc/sys/kernel/random/boot_id read (now once per agent)", BenchOp.Sync("boot_id_read", () => File.ReadAllText("/proc/sys/kernel/random/boot_id"))),
                ("stat_read", "/proc/PID/stat read + parse", BenchOp.Sync("stat_read", () => ProcStat.TryRead(proc, peer.Pid, out _, out _))),
                ("exe_statx", "/proc/PID/exe statx (executable identity)", BenchOp.Sync("exe_statx", () => FileIdentity.TryGet(ProcFs.PidPath(proc, peer.Pid, "exe"), out _, out _))),
                ("pin_create_no_pidfd", "ProcessPin.TryCreate without a pidfd (boot id, stat, exe statx, stat again)", BenchOp.Sync("pin_create_no_pidfd", () => ProcessPin.TryCreate(proc, peer.Pid, out _, out _))),
                ("pin_create", "ProcessPin.TryCreate with the pidfd (boot id, stat, exe statx, pidfd check)", BenchOp.Sync("pin_create", () => ProcessPin.TryCreate(proc, peer.Pid, pidfd, out _, out _))),
                ("pin_verify_no_pidfd", "ProcessPin.Verify without a pidfd (boot id, stat, exe statx)", BenchOp.Sync("pin_verify_no_pidfd", () => pin.Verify(proc, out _))),
                ("pin_verify", "ProcessPin.Verify with the pidfd (boot id, poll, exe statx)", BenchOp.Sync("pin_verify", () => pin.Verify(proc, pidfd, out _))),
                ("unix_status", "/proc/PID/status read + parse", BenchOp.Sync("unix_status", () => ProcStatus.TryRead(proc, peer.Pid, out _, out _))),
                ("unix_exe_link", "/proc/PID/exe readlink", BenchOp.Sync("unix_exe_link", () => _ = new FileInfo(ProcFs.PidPath(proc, peer.Pid, "exe")).LinkTarget)),
                ("unix_sha256_cached", "exe sha256 (cache hit: open, statx, fstatfs, lookup)", BenchOp.Sync("unix_sha256_cached", () => unix.Hasher.TryHash(ProcFs.PidPath(proc, peer.Pid, "exe"), ct, out _, out _, out _))),
                ("unix_attestor", "unix attestor, whole", new BenchOp("unix_attestor", async () => await unix.AttestAsync(process, ct).ConfigureAwait(false))),
                ("cgroup_attestor", "cgroup attestor, whole (/proc/PID/cgroup + parse)", new BenchOp("cgroup_attestor", async () => await cgroup.AttestAsync(process, ct).ConfigureAwait(false))),
                ("runner_attest", "WorkloadAttestationRunner.AttestAsync (pin, attestors in parallel, verify, merge)", new BenchOp("runner_attest", async () => await runner.AttestAsync(peer, pidfd, ct).ConfigureAwait(false))),
                ("attest_connection", "AttestConnectionAsync: all of the above from the socket", new BenchOp("attest_connection", async () => await runner.AttestConnectionAsync(server, ct).ConfigureAwait(false))),
                ("match_entries", $"matching: selectors ⊆ evidence over {OtherEntries + 1} entries (service's code shape)", BenchOp.Sync("match_entries", () => Match(evidence, entries))),
                ("x509_response", "X509SVIDResponse built and serialized (chain, key, bundle, fingerprint)", BenchOp.Sync("x509_response", () => BuildX509(chainDer, keyPkcs8, bundleDer))),
            };
            var samples = await BenchTiming.LatencyAsync([.. stages.Select(s => s.Op)], each, ct).ConfigureAwait(false);
            return [.. stages.Select((s, i) => new StageFigures(s.Name, s.What,
                BenchTiming.Round(samples[i].PercentileMicroseconds(50)), BenchTiming.Round(samples[i].PercentileMicroseconds(99)), BenchTiming.Round(samples[i].MicrosecondsPerOp)))];
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static List<ProtoEntry> Match(ProcessEvidence evidence, Dictionary<string, ProtoEntry> entries)
    {
        var have = SelectorMatch.SetOf(evidence.Selectors);
        return entries.Values
            .Where(e => EvidenceProto.Matches(e.Selectors, have))
            .OrderBy(e => e.SpiffeId, StringComparer.Ordinal).ThenBy(e => e.Id, StringComparer.Ordinal)
            .ToList();
    }

    private static byte[] BuildX509(IReadOnlyList<X509Certificate2> chain, byte[] key, byte[] bundleDer)
    {
        var fingerprint = chain[0].SerialNumber + "|" + Convert.ToHexString(SHA256.HashData(bundleDer));
        var response = new X509SVIDResponse();
        response.Svids.Add(new X509SVID
        {
            SpiffeId = "spiffe://bench.writ/bench/w0",
            X509Svid = ByteString.CopyFrom(chain.SelectMany(c => c.RawData).ToArray()),
            X509SvidKey = ByteString.CopyFrom(key),
            Bundle = ByteString.CopyFrom(bundleDer),
            Hint = fingerprint.Length > 0 ? "" : "x",
        });
        return response.ToByteArray();
    }

    private static (IReadOnlyList<X509Certificate2> Chain, byte[] Key, byte[] Bundle) MakeSvid(TrustDomain td)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest("CN=bench CA", caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        var now = DateTimeOffset.UtcNow;
        using var ca = caReq.CreateSelfSigned(now.AddMinutes(-1), now.AddHours(1));
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafReq = new CertificateRequest("CN=w0", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(td.IdString + "/bench/w0"));
        leafReq.CertificateExtensions.Add(san.Build());
        var leaf = leafReq.Create(ca, now.AddMinutes(-1), now.AddMinutes(30), [1, 2, 3, 4]);
        return ([leaf], leafKey.ExportPkcs8PrivateKey(), ca.RawData);
    }
}
