using System.Collections.Concurrent;
using System.Security.Cryptography;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.PeerTracking;
using Writ.Agent.Sync;
using Writ.Agent.WorkloadApi;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using ProtoSelector = Writ.Protocol.Agent.Selector;
using Selector = Writ.Protocol.Evidence.Selector;

namespace Writ.IntegrationTests;

/// <summary>The agent's replay guard in-process: how relying parties are named, and the report's retry to the server.</summary>
public sealed class JwtBindingGuardTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly ECDsa Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    private static JwtSvid Token(string? jti)
    {
        var extra = jti is null ? new Dictionary<string, object>() : new Dictionary<string, object> { ["jti"] = jti };
        var token = JwtSvidMinter.Mint(new JwtSigningKey("k", Key), SpiffeId.Parse("spiffe://example.org/client"), ["rp"], Now, Now.AddMinutes(5), extra);
        var bundle = new TrustBundle(TrustDomain.Parse("example.org"), [], [new JwtAuthority("k", Key)]);
        var r = JwtSvidValidator.Validate(token, bundle, ["rp"], Now);
        Assert.True(r.IsValid, r.Error);
        return r.Svid!;
    }

    private static ProcessEvidence Evidence(int uid, params string[] selectors) => new(
        new WorkloadProcess(new PeerCredentials(4242, uid, uid), new ProcessPin(4242, 1, "boot")),
        [.. selectors.Select(s => { var i = s.IndexOf(':', StringComparison.Ordinal); return new Selector(s[..i], s[(i + 1)..]); })],
        new Dictionary<string, string>(), []);

    private static AgentSnapshot Snapshot(params (string Id, string[] Selectors)[] entries)
    {
        var map = new Dictionary<string, Entry>();
        foreach (var (id, sels) in entries)
        {
            var e = new Entry { Id = id, SpiffeId = "spiffe://example.org/" + id };
            e.Selectors.AddRange(sels.Select(s => { var i = s.IndexOf(':', StringComparison.Ordinal); return new ProtoSelector { Type = s[..i], Value = s[(i + 1)..] }; }));
            map[id] = e;
        }
        return new AgentSnapshot(map, new TrustBundle(TrustDomain.Parse("example.org"), [], []), 1);
    }

    [Fact]
    public void Relying_parties_are_named_by_the_entries_they_match_else_by_uid_and_executable()
    {
        var snapshot = Snapshot(("api", ["unix:uid:1000", "unix:path:/srv/api"]), ("worker", ["unix:uid:1000", "unix:path:/srv/worker"]),
            ("expired", ["unix:uid:1000"]));
        snapshot.Entries["expired"].ExpiresAtUnix = Now.AddMinutes(-1).ToUnixTimeSeconds();

        // Two replicas of one service (same entries; even a new executable hash after an upgrade) are one peer.
        var replica1 = JwtReplayGuard.PeerOf(Evidence(1000, "unix:uid:1000", "unix:path:/srv/api", "unix:sha256:aa"), snapshot, Now);
        var replica2 = JwtReplayGuard.PeerOf(Evidence(1000, "unix:uid:1000", "unix:path:/srv/api", "unix:sha256:bb"), snapshot, Now);
        Assert.Equal("spiffe:spiffe://example.org/api", replica1);
        Assert.Equal(replica1, replica2);
        // Another service of the same uid is another peer; the expired entry counts for nobody.
        Assert.Equal("spiffe:spiffe://example.org/worker", JwtReplayGuard.PeerOf(Evidence(1000, "unix:uid:1000", "unix:path:/srv/worker"), snapshot, Now));
        // Unregistered callers: uid and executable path, else hash, else uid alone.
        Assert.Equal("uid:7 exe:/usr/bin/node", JwtReplayGuard.PeerOf(Evidence(7, "unix:uid:7", "unix:path:/usr/bin/node", "unix:sha256:cc"), snapshot, Now));
        Assert.Equal("uid:7 sha256:cc", JwtReplayGuard.PeerOf(Evidence(7, "unix:uid:7", "unix:sha256:cc"), snapshot, Now));
        Assert.Equal("uid:7", JwtReplayGuard.PeerOf(Evidence(7, "unix:uid:7"), snapshot, Now));
    }

    [Fact]
    public void Only_the_audiences_own_relying_party_counts_a_use_so_no_other_workload_can_burn_a_token()
    {
        var snapshot = Snapshot(("api", ["unix:uid:1000", "unix:path:/srv/api"]), ("nosy", ["unix:uid:1000", "unix:path:/srv/nosy"]),
            ("gone", ["unix:uid:1000", "unix:path:/srv/gone"]));
        snapshot.Entries["api"].DnsNames.Add("api.example.org");
        snapshot.Entries["gone"].DnsNames.Add("api.example.org");
        snapshot.Entries["gone"].ExpiresAtUnix = Now.AddMinutes(-1).ToUnixTimeSeconds();
        var api = Evidence(1000, "unix:uid:1000", "unix:path:/srv/api");
        var nosy = Evidence(1000, "unix:uid:1000", "unix:path:/srv/nosy");

        // The audience is the relying party's SPIFFE ID, its DNS name, or a URL on that name.
        Assert.True(JwtReplayGuard.IsRelyingPartyFor(api, snapshot, "spiffe://example.org/api", Now));
        Assert.True(JwtReplayGuard.IsRelyingPartyFor(api, snapshot, "api.example.org", Now));
        Assert.True(JwtReplayGuard.IsRelyingPartyFor(api, snapshot, "https://API.example.org:8443/v1", Now));
        // Anyone else with an identity of its own is not: its validation records nothing.
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(nosy, snapshot, "spiffe://example.org/api", Now));
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(nosy, snapshot, "https://api.example.org", Now));
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(api, snapshot, "https://api.example.org.evil.net", Now));
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(api, snapshot, "https://other.example.org", Now));
        // An expired entry entitles nobody; an unregistered caller is nobody's relying party.
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(Evidence(1000, "unix:uid:1000", "unix:path:/srv/gone"), snapshot, "api.example.org", Now));
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(Evidence(7, "unix:uid:7"), snapshot, "api.example.org", Now));
    }

    [Fact]
    public void A_dns_name_equal_to_the_trust_domain_does_not_make_a_workload_the_relying_party_of_every_spiffe_id()
    {
        // The attacker's entry lists the trust domain's name as a DNS name; the host of a spiffe: audience is the
        // trust domain, so a host rule on spiffe: URIs would let it burn tokens meant for any workload there.
        var snapshot = Snapshot(("api", ["unix:uid:1000", "unix:path:/srv/api"]), ("mallory", ["unix:uid:1000", "unix:path:/srv/mallory"]));
        snapshot.Entries["mallory"].DnsNames.Add("example.org");
        var mallory = Evidence(1000, "unix:uid:1000", "unix:path:/srv/mallory");

        Assert.False(JwtReplayGuard.IsRelyingPartyFor(mallory, snapshot, "spiffe://example.org/api", Now));
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(mallory, snapshot, "SPIFFE://example.org/api", Now));
        // Its own SPIFFE ID and http/https URLs on its DNS name still count.
        Assert.True(JwtReplayGuard.IsRelyingPartyFor(mallory, snapshot, "spiffe://example.org/mallory", Now));
        Assert.True(JwtReplayGuard.IsRelyingPartyFor(mallory, snapshot, "https://example.org/v1", Now));
        Assert.True(JwtReplayGuard.IsRelyingPartyFor(mallory, snapshot, "http://example.org", Now));
        // Other schemes carry no host rule either.
        Assert.False(JwtReplayGuard.IsRelyingPartyFor(mallory, snapshot, "urn://example.org/api", Now));
    }

    [Fact]
    public async Task A_replay_is_reported_to_the_server_and_retried_until_it_lands()
    {
        var server = new FakeAgentServer(failFirst: 2);
        var guard = new JwtReplayGuard(() => new AgentService.AgentServiceClient(server), TimeProvider.System, NullLogger.Instance)
        {
            RetryDelay = TimeSpan.FromMilliseconds(10),
        };
        using var reporter = new JwtReplayReportService(guard, TimeProvider.System, Random.Shared, NullLogger<JwtReplayReportService>.Instance);
        await reporter.StartAsync(TestContext.Current.CancellationToken);
        var svid = Token("jti-7");
        Assert.Equal(JwtReplayOutcome.FirstUse, guard.Check(svid, "spiffe:a", "rp", Now, TimeSpan.FromSeconds(30)).Outcome);
        Assert.Equal(JwtReplayOutcome.SamePeer, guard.Check(svid, "spiffe:a", "rp", Now, TimeSpan.FromSeconds(30)).Outcome);
        Assert.Equal(JwtReplayOutcome.FirstUse, guard.Check(svid, "spiffe:b", "other-audience", Now, TimeSpan.FromSeconds(30)).Outcome);
        Assert.Empty(server.Received);
        var replay = guard.Check(svid, "spiffe:b", "rp", Now, TimeSpan.FromSeconds(30));
        Assert.Equal(JwtReplayOutcome.Replayed, replay.Outcome);
        Assert.Equal("spiffe:a", replay.FirstPeer);

        var report = await server.Delivered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(3, server.Attempts);   // two Unavailable, then delivered
        Assert.Equal("jti-7", report.Jti);
        Assert.Equal("", report.TokenSha256);
        Assert.Equal("spiffe://example.org/client", report.SpiffeId);
        Assert.Equal("spiffe:a", report.FirstPeer);
        Assert.Equal("spiffe:b", report.SecondPeer);
        Assert.Equal("rp", report.Audience);
        Assert.Equal(svid.ExpiresAt.ToUnixTimeSeconds(), report.ExpiresAtUnix);
    }

    [Fact]
    public async Task A_token_without_jti_is_reported_by_its_hash_and_a_refused_report_is_not_retried()
    {
        var server = new FakeAgentServer(failFirst: 0, refuseWith: StatusCode.InvalidArgument);
        var guard = new JwtReplayGuard(() => new AgentService.AgentServiceClient(server), TimeProvider.System, NullLogger.Instance)
        {
            RetryDelay = TimeSpan.FromMilliseconds(10),
        };
        using var reporter = new JwtReplayReportService(guard, TimeProvider.System, Random.Shared, NullLogger<JwtReplayReportService>.Instance);
        await reporter.StartAsync(TestContext.Current.CancellationToken);
        var svid = Token(jti: null);
        guard.Check(svid, "uid:1 exe:/a", "rp", Now, TimeSpan.Zero);
        Assert.True(guard.Check(svid, "uid:2 exe:/b", "rp", Now, TimeSpan.Zero).IsReplay);
        var report = await server.Delivered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("", report.Jti);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(svid.Token))), report.TokenSha256);
        // InvalidArgument is final: give the background task time to (wrongly) retry, then check it did not.
        var deadline = DateTime.UtcNow.AddMilliseconds(300);
        while (DateTime.UtcNow < deadline && server.Attempts == 1)
        {
            await Task.Delay(20);
        }
        Assert.Equal(1, server.Attempts);
    }

    /// <summary>The server side of ReportJwtReplay: fails the first calls with Unavailable (or refuses), then records.</summary>
    private sealed class FakeAgentServer(int failFirst, StatusCode? refuseWith = null) : CallInvoker
    {
        private int _attempts;

        public int Attempts => Volatile.Read(ref _attempts);
        public ConcurrentQueue<ReportJwtReplayRequest> Received { get; } = new();
        public TaskCompletionSource<ReportJwtReplayRequest> Delivered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        {
            Assert.Equal("ReportJwtReplay", method.Name);
            var n = Interlocked.Increment(ref _attempts);
            var report = (ReportJwtReplayRequest)(object)request;
            Task<TResponse> result;
            if (refuseWith is { } code)
            {
                Delivered.TrySetResult(report);
                result = Task.FromException<TResponse>(new RpcException(new Status(code, "refused")));
            }
            else if (n <= failFirst)
            {
                result = Task.FromException<TResponse>(new RpcException(new Status(StatusCode.Unavailable, "server away")));
            }
            else
            {
                Received.Enqueue(report);
                Delivered.TrySetResult(report);
                result = Task.FromResult((TResponse)(object)new ReportJwtReplayResponse());
            }
            return new AsyncUnaryCall<TResponse>(result, Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => { });
        }

        public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
            throw new NotSupportedException();

        public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
            throw new NotSupportedException();

        public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options) =>
            throw new NotSupportedException();

        public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options) =>
            throw new NotSupportedException();
    }
}
