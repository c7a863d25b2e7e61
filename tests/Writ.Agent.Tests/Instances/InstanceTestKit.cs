using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.Instances;
using Writ.Agent.PeerTracking;
using Writ.Agent.Sync;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Agent.Tests.Instances;

/// <summary>
/// A fake of the server's agent API: signs CSRs with a throw-away CA, mints unsigned-looking JWTs with a jti, refuses
/// what it is told to refuse, and records every request (so tests can see the evidence and binding the agent sent).
/// </summary>
internal sealed class FakeAgentServer : AgentService.AgentServiceClient, IDisposable
{
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;
    private readonly Lock _lock = new();
    private readonly List<SignX509SvidsRequest> _signs = [];
    private readonly List<MintJwtSvidRequest> _mints = [];
    private readonly List<ReportInstanceGoneRequest> _reports = [];

    public FakeAgentServer()
    {
        var req = new CertificateRequest("CN=fake writ ca", _caKey, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        _ca = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(2));
    }

    /// <summary>Entry id → (decision id, reason): CSRs for these entries are refused.</summary>
    public Dictionary<string, (string DecisionId, string Reason)> Deny { get; } = new(StringComparer.Ordinal);

    public TimeSpan X509Ttl { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Entry id → the PermissionDenied detail MintJwtSvid answers with (X.509 is still signed).</summary>
    public Dictionary<string, string> DenyJwt { get; } = new(StringComparer.Ordinal);

    /// <summary>What ReportInstanceGone answers: null = OK, else this status.</summary>
    public StatusCode? ReportStatus { get; set; }

    /// <summary>A status every SignX509Svids call fails with (the server is away); null: sign.</summary>
    public StatusCode? SignStatus { get; set; }

    public IReadOnlyList<SignX509SvidsRequest> Signs
    {
        get
        {
            lock (_lock)
            {
                return [.. _signs];
            }
        }
    }

    public IReadOnlyList<MintJwtSvidRequest> Mints
    {
        get
        {
            lock (_lock)
            {
                return [.. _mints];
            }
        }
    }

    public IReadOnlyList<ReportInstanceGoneRequest> Reports
    {
        get
        {
            lock (_lock)
            {
                return [.. _reports];
            }
        }
    }

    public override AsyncUnaryCall<SignX509SvidsResponse> SignX509SvidsAsync(SignX509SvidsRequest request, CallOptions options)
    {
        lock (_lock)
        {
            _signs.Add(request.Clone());
        }
        if (SignStatus is { } fail)
        {
            return Fail<SignX509SvidsResponse>(fail, "the fake server is away");
        }
        var response = new SignX509SvidsResponse();
        foreach (var csr in request.Csrs)
        {
            if (Deny.TryGetValue(csr.EntryId, out var d))
            {
                response.Denials.Add(new SvidDenial
                {
                    EntryId = csr.EntryId, InstanceId = csr.Evidence?.InstanceId ?? "", DecisionId = d.DecisionId, Reason = d.Reason,
                    Code = (int)StatusCode.PermissionDenied,
                });
                continue;
            }
            var parsed = CertificateRequest.LoadSigningRequest(csr.Csr.ToByteArray(), HashAlgorithmName.SHA256,
                CertificateRequestLoadOptions.SkipSignatureValidation);
            var serial = RandomNumberGenerator.GetBytes(16);
            serial[0] &= 0x7f;
            serial[0] |= 0x10;
            using var leaf = parsed.Create(_ca, DateTimeOffset.UtcNow.AddSeconds(-10), DateTimeOffset.UtcNow + X509Ttl, serial);
            var svid = new X509Svid
            {
                EntryId = csr.EntryId, SpiffeId = "spiffe://example.org/" + csr.EntryId, ExpiresAtUnix = leaf.NotAfter.ToUniversalTime().Ticks,
                DecisionId = "d-ok", InstanceId = csr.Evidence?.InstanceId ?? "",
            };
            svid.CertChain.Add(ByteString.CopyFrom(leaf.RawData));
            svid.CertChain.Add(ByteString.CopyFrom(_ca.RawData));
            response.Svids.Add(svid);
        }
        return Ok(response);
    }

    public override AsyncUnaryCall<MintJwtSvidResponse> MintJwtSvidAsync(MintJwtSvidRequest request, CallOptions options)
    {
        lock (_lock)
        {
            _mints.Add(request.Clone());
        }
        if (Deny.TryGetValue(request.EntryId, out var d))
        {
            return Fail<MintJwtSvidResponse>(StatusCode.PermissionDenied, $"issuance denied by policy '{d.Reason}' (decision {d.DecisionId})");
        }
        if (DenyJwt.TryGetValue(request.EntryId, out var detail))
        {
            return Fail<MintJwtSvidResponse>(StatusCode.PermissionDenied, detail);
        }
        var jti = Guid.NewGuid().ToString("N");
        var exp = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds();
        static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var token = $"{B64("{\"alg\":\"ES256\"}")}.{B64($"{{\"sub\":\"spiffe://example.org/{request.EntryId}\",\"jti\":\"{jti}\",\"exp\":{exp}}}")}.c2ln";
        // The response leaves jti empty as the server before issue #6 did: the agent must read it from the token.
        return Ok(new MintJwtSvidResponse { SpiffeId = "spiffe://example.org/" + request.EntryId, Token = token, ExpiresAtUnix = exp });
    }

    /// <summary>What the Sync stream sends: write updates here; complete it to end the stream.</summary>
    public System.Threading.Channels.Channel<SyncUpdate> SyncUpdates { get; } = System.Threading.Channels.Channel.CreateUnbounded<SyncUpdate>();

    public override AsyncServerStreamingCall<SyncUpdate> Sync(SyncRequest request, CallOptions options) =>
        new(new ChannelReader<SyncUpdate>(SyncUpdates.Reader), Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => { });

    private sealed class ChannelReader<T>(System.Threading.Channels.ChannelReader<T> reader) : IAsyncStreamReader<T>
    {
        public T Current { get; private set; } = default!;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            if (!await reader.WaitToReadAsync(cancellationToken))
            {
                return false;
            }
            Current = await reader.ReadAsync(cancellationToken);
            return true;
        }
    }

    public override AsyncUnaryCall<ReportInstanceGoneResponse> ReportInstanceGoneAsync(ReportInstanceGoneRequest request, CallOptions options)
    {
        if (ReportStatus is { } status)
        {
            return Fail<ReportInstanceGoneResponse>(status, "not here");
        }
        lock (_lock)
        {
            _reports.Add(request.Clone());
        }
        return Ok(new ReportInstanceGoneResponse { Revoked = request.SerialHex.Count + request.Jti.Count });
    }

    private static AsyncUnaryCall<T> Ok<T>(T value) =>
        new(Task.FromResult(value), Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => { });

    private static AsyncUnaryCall<T> Fail<T>(StatusCode code, string detail) =>
        new(Task.FromException<T>(new RpcException(new Status(code, detail))), Task.FromResult(new Metadata()), () => new Status(code, detail), () => [], () => { });

    public void Dispose()
    {
        _ca.Dispose();
        _caKey.Dispose();
    }
}

/// <summary>A tracker, reporter, state and cache wired as the agent wires them, against a <see cref="FakeAgentServer"/>.</summary>
internal sealed class InstanceRig : IDisposable
{
    /// <param name="interval">The tracker's re-attestation interval.</param>
    /// <param name="time">The tracker's clock (a fake one lets a test step past the interval instead of waiting).</param>
    public InstanceRig(TimeSpan? interval = null, TimeProvider? time = null)
    {
        Server = new FakeAgentServer();
        var td = TrustDomain.Parse("example.org");
        State = new AgentState(new TrustBundle(td, [], []));
        Runner = new WorkloadAttestationRunner([new UnixWorkloadAttestor(ProcFs.Host), new CgroupWorkloadAttestor(ProcFs.Host)], ProcFs.Host,
            TimeSpan.FromSeconds(5), Log);
        Reporter = new InstanceReporter(() => Server, _ => null, TimeProvider.System, Log);
        Tracker = new InstanceTracker(Runner, ProcFs.Host, Reporter, interval ?? TimeSpan.FromSeconds(2), time ?? TimeProvider.System, Log);
        Cache = new Writ.Agent.Cache.SvidCache(() => Server, _ => null, State, Tracker, TimeProvider.System, Log);
    }

    public ListLogger Log { get; } = new();
    public FakeAgentServer Server { get; }
    public AgentState State { get; }
    public WorkloadAttestationRunner Runner { get; }
    public InstanceReporter Reporter { get; }
    public InstanceTracker Tracker { get; }
    public Writ.Agent.Cache.SvidCache Cache { get; }

    /// <summary>Publishes these entries as a full sync would.</summary>
    public void SetEntries(params Entry[] entries)
    {
        var update = new SyncUpdate { Reset = true, PageEnd = true, Revision = State.Current.Revision + 1 };
        update.Upserts.AddRange(entries);
        State.Apply(update, TrustDomain.Parse("example.org"));
    }

    public static Entry Entry(string id, params string[] selectors)
    {
        var e = new Entry { Id = id, SpiffeId = "spiffe://example.org/" + id, Revision = 1 };
        foreach (var s in selectors)
        {
            var i = s.IndexOf(':', StringComparison.Ordinal);
            e.Selectors.Add(new Writ.Protocol.Agent.Selector { Type = s[..i], Value = s[(i + 1)..] });
        }
        return e;
    }

    /// <summary>Attests a live process as the Workload API would on a call from it.</summary>
    public async Task<ProcessEvidence> AttestAsync(int pid)
    {
        var (uid, gid) = Ids(pid);
        var result = await Runner.AttestAsync(new PeerCredentials(pid, uid, gid), TestContext.Current.CancellationToken);
        Assert.True(result.Evidence is not null, result.Error);
        return result.Evidence;
    }

    public async Task<WorkloadInstance> ObserveAsync(int pid) => Tracker.Observe(await AttestAsync(pid));

    /// <summary>Effective uid and gid of a process (from /proc).</summary>
    public static (int Uid, int Gid) Ids(int pid)
    {
        var lines = File.ReadAllLines($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/status");
        static int Effective(string line) => int.Parse(line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[2], CultureInfo.InvariantCulture);
        return (Effective(lines.First(l => l.StartsWith("Uid:", StringComparison.Ordinal))), Effective(lines.First(l => l.StartsWith("Gid:", StringComparison.Ordinal))));
    }

    public void Dispose()
    {
        Tracker.Dispose();
        Server.Dispose();
    }
}

internal static class Deadline
{
    /// <summary>Polls (async) until the condition holds or the deadline passes; returns how long it took.</summary>
    public static async Task<TimeSpan> UntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var limit = timeout ?? TimeSpan.FromSeconds(15);
        while (!condition())
        {
            if (sw.Elapsed > limit)
            {
                throw new TimeoutException($"timed out after {limit.TotalSeconds:F1}s waiting for {what}");
            }
            await Task.Yield();
            await Task.Delay(5, TestContext.Current.CancellationToken);
        }
        return sw.Elapsed;
    }
}
