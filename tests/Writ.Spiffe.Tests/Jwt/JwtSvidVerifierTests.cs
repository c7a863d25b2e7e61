using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Spiffe.Tests.Jwt;

/// <summary>The relying-party helper: binding to the mTLS peer certificate, bearer tokens, deny list, replay.</summary>
public sealed class JwtSvidVerifierTests
{
    private static readonly DateTimeOffset Now = TestCa.Now;
    private static readonly SpiffeId Subject = SpiffeId.Parse("spiffe://example.org/client");
    private static readonly ECDsa Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private static readonly TrustBundle Bundle = new(TrustDomain.Parse("example.org"), [], [new JwtAuthority("kid-1", Key)]);
    private static readonly TestCa Ca = new("example.org");

    private sealed class Clock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static X509Certificate2 NewLeaf(string path = "/client") => Ca.Mint(path).Chain[0];

    private static string Mint(X509Certificate2? boundTo, string? jti = "jti-1", DateTimeOffset? exp = null, string aud = "svc")
    {
        var extra = new Dictionary<string, object>();
        if (jti is not null)
        {
            extra["jti"] = jti;
        }
        if (boundTo is not null)
        {
            extra["cnf"] = new Dictionary<string, object> { ["x5t#S256"] = CertificateBinding.Thumbprint(boundTo) };
        }
        return JwtSvidMinter.Mint(new JwtSigningKey("kid-1", Key), Subject, [aud], Now, exp ?? Now.AddMinutes(5), extra);
    }

    private static JwtSvidVerifier Verifier(Clock? clock = null, Func<JwtSvidVerifierOptions, JwtSvidVerifierOptions>? tweak = null)
    {
        var options = new JwtSvidVerifierOptions { Audiences = ["svc"] };
        return new JwtSvidVerifier(Bundle, tweak is null ? options : tweak(options), clock ?? new Clock(Now));
    }

    private static void Refused(JwtSvidVerification r, JwtSvidVerificationFailure failure, string reason)
    {
        Assert.False(r.IsValid);
        Assert.Null(r.Svid);
        Assert.Equal(failure, r.Failure);
        Assert.Contains(reason, r.Error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', r.Error!);
    }

    [Fact]
    public void Bound_token_with_its_certificate_passes()
    {
        var leaf = NewLeaf();
        var r = Verifier().Verify(Mint(leaf), leaf);
        Assert.True(r.IsValid, r.Error);
        Assert.Equal(JwtSvidVerificationFailure.None, r.Failure);
        Assert.Equal(Subject, r.Svid!.Id);
        Assert.Equal("jti-1", r.Svid.Jti);
    }

    [Fact]
    public void Attacker_with_the_token_and_another_valid_certificate_is_refused()
    {
        var legit = NewLeaf();
        var attacker = NewLeaf();   // same trust domain, same SPIFFE ID even: only the key and serial differ
        var token = Mint(legit);
        Refused(Verifier().Verify(token, attacker), JwtSvidVerificationFailure.BindingMismatch, "bound to another certificate");
        Refused(Verifier().Verify(token, JwtPeer.FromCertificateDer(attacker.RawData)), JwtSvidVerificationFailure.BindingMismatch, "bound to another certificate");
    }

    [Fact]
    public void Attacker_without_a_client_certificate_is_refused()
    {
        var token = Mint(NewLeaf());
        Refused(Verifier().Verify(token, (X509Certificate2?)null), JwtSvidVerificationFailure.NoPeerCertificate, "presented no client certificate");
        // Claiming an id does not stand in for the certificate.
        Refused(Verifier().Verify(token, JwtPeer.FromId("x5t#S256:" + CertificateBinding.Thumbprint(NewLeaf()))), JwtSvidVerificationFailure.NoPeerCertificate, "no client certificate");
    }

    [Fact]
    public void Bearer_tokens_are_refused_unless_allowed()
    {
        var token = Mint(boundTo: null);
        Refused(Verifier().Verify(token, NewLeaf()), JwtSvidVerificationFailure.BearerNotAllowed, "bearer token");
        var allowed = Verifier(tweak: o => o with { AllowBearer = true }).Verify(token, JwtPeer.FromId("client-a"));
        Assert.True(allowed.IsValid, allowed.Error);
        Assert.False(allowed.Svid!.IsBound);
    }

    [Fact]
    public void Attack_a_stolen_bearer_token_replayed_by_another_anonymous_client_is_refused()
    {
        var token = Mint(boundTo: null);
        var v = Verifier(tweak: o => o with { AllowBearer = true });
        var first = v.Verify(token, JwtPeer.Anonymous);
        Assert.True(first.IsValid, first.Error);
        // Anonymous presenters cannot be told apart: the thief's use looks like "the same peer again" and must not pass.
        Refused(v.Verify(token, JwtPeer.Anonymous), JwtSvidVerificationFailure.Replayed, "already presented");
        // A client the service identifies may present its token again.
        var named = Mint(boundTo: null, jti: "jti-2");
        Assert.True(v.Verify(named, JwtPeer.FromId("client-a")).IsValid);
        Assert.True(v.Verify(named, JwtPeer.FromId("client-a")).IsValid);
    }

    [Fact]
    public void Allowing_bearer_tokens_does_not_weaken_bound_ones()
    {
        var legit = NewLeaf();
        var v = Verifier(tweak: o => o with { AllowBearer = true });
        Refused(v.Verify(Mint(legit), NewLeaf()), JwtSvidVerificationFailure.BindingMismatch, "bound to another certificate");
        Refused(v.Verify(Mint(legit), JwtPeer.Anonymous), JwtSvidVerificationFailure.NoPeerCertificate, "no client certificate");
    }

    [Fact]
    public void Invalid_tokens_are_refused_before_anything_else()
    {
        var leaf = NewLeaf();
        Refused(Verifier().Verify(Mint(leaf, aud: "other"), leaf), JwtSvidVerificationFailure.Invalid, "aud");
        Refused(Verifier(new Clock(Now.AddMinutes(10))).Verify(Mint(leaf), leaf), JwtSvidVerificationFailure.Invalid, "expired");
        var token = Mint(leaf);
        Refused(Verifier().Verify(token[..^3] + (token[^3] == 'A' ? "B" : "A") + token[^2..], leaf), JwtSvidVerificationFailure.Invalid, "signature");
        Refused(Verifier().Verify("", leaf), JwtSvidVerificationFailure.Invalid, "empty");
    }

    [Fact]
    public void Denied_jtis_are_refused_by_set_and_by_callback()
    {
        var leaf = NewLeaf();
        Refused(Verifier(tweak: o => o with { DeniedJtis = new HashSet<string> { "jti-1" } }).Verify(Mint(leaf), leaf),
            JwtSvidVerificationFailure.Revoked, "was revoked");
        var asked = new ConcurrentBag<string>();
        var v = Verifier(tweak: o => o with { IsJtiDenied = j => { asked.Add(j); return j == "revoked"; } });
        Refused(v.Verify(Mint(leaf, jti: "revoked"), leaf), JwtSvidVerificationFailure.Revoked, "was revoked");
        Assert.True(v.Verify(Mint(leaf, jti: "fine"), leaf).IsValid);
        Assert.Equal(["fine", "revoked"], asked.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Tokens_without_jti_are_refused_unless_allowed_and_then_replay_is_keyed_by_the_token()
    {
        var token = Mint(boundTo: null, jti: null);
        var strict = Verifier(tweak: o => o with { AllowBearer = true });
        Refused(strict.Verify(token, JwtPeer.FromId("a")), JwtSvidVerificationFailure.MissingJti, "no jti");

        var replays = new List<JwtReplay>();
        var lax = Verifier(tweak: o => o with { AllowBearer = true, RequireJti = false, OnReplay = replays.Add });
        Assert.True(lax.Verify(token, JwtPeer.FromId("a")).IsValid);
        Refused(lax.Verify(token, JwtPeer.FromId("b")), JwtSvidVerificationFailure.Replayed, "already presented by another peer");
        var replay = Assert.Single(replays);
        Assert.Null(replay.Jti);
        Assert.StartsWith("example.org sha256:", replay.ReplayKey, StringComparison.Ordinal);
    }

    [Fact]
    public void Same_jti_from_two_peers_second_is_refused_and_reported_same_peer_twice_is_allowed()
    {
        var replays = new List<JwtReplay>();
        var v = Verifier(tweak: o => o with { AllowBearer = true, OnReplay = replays.Add });
        var token = Mint(boundTo: null, jti: "shared");
        Assert.True(v.Verify(token, JwtPeer.FromId("service-a")).IsValid);
        Assert.True(v.Verify(token, JwtPeer.FromId("service-a")).IsValid);   // a retry by the same peer
        Assert.Empty(replays);

        Refused(v.Verify(token, JwtPeer.FromId("service-b")), JwtSvidVerificationFailure.Replayed, "already presented by another peer");
        var replay = Assert.Single(replays);
        Assert.Equal("shared", replay.Jti);
        Assert.Equal("id:service-a", replay.FirstPeer);
        Assert.Equal("id:service-b", replay.SecondPeer);
        Assert.Equal(Subject, replay.Subject);
        Assert.Equal(["svc"], replay.Audience);

        // The first peer keeps its token; the replayer stays refused.
        Assert.True(v.Verify(token, JwtPeer.FromId("service-a")).IsValid);
        Refused(v.Verify(token, JwtPeer.FromId("service-b")), JwtSvidVerificationFailure.Replayed, "another peer");
        Assert.Equal(2, replays.Count);
    }

    [Fact]
    public void Replay_by_certificate_peer_is_caught_for_bearer_tokens()
    {
        var replays = new List<JwtReplay>();
        var v = Verifier(tweak: o => o with { AllowBearer = true, OnReplay = replays.Add });
        var token = Mint(boundTo: null);
        var a = NewLeaf();
        Assert.True(v.Verify(token, a).IsValid);
        Assert.True(v.Verify(token, a).IsValid);
        Refused(v.Verify(token, NewLeaf()), JwtSvidVerificationFailure.Replayed, "another peer");
        Assert.Equal("x5t#S256:" + CertificateBinding.Thumbprint(a), Assert.Single(replays).FirstPeer);
    }

    [Fact]
    public void The_same_jti_in_another_trust_domain_is_another_token()
    {
        var evilKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var bundles = new BundleSet([Bundle, new TrustBundle(TrustDomain.Parse("other.org"), [], [new JwtAuthority("kid-2", evilKey)])]);
        var v = new JwtSvidVerifier(bundles, new JwtSvidVerifierOptions { Audiences = ["svc"], AllowBearer = true }, new Clock(Now));
        var ours = Mint(null, jti: "j");
        var theirs = JwtSvidMinter.Mint(new JwtSigningKey("kid-2", evilKey), SpiffeId.Parse("spiffe://other.org/x"), ["svc"], Now, Now.AddMinutes(5),
            new Dictionary<string, object> { ["jti"] = "j" });
        Assert.True(v.Verify(ours, JwtPeer.FromId("a")).IsValid);
        Assert.True(v.Verify(theirs, JwtPeer.FromId("b")).IsValid);
        Assert.Equal(2, v.ReplayCache.Count);
    }

    [Fact]
    public void Replay_records_are_forgotten_when_the_token_expires()
    {
        var clock = new Clock(Now);
        var v = Verifier(clock, o => o with { AllowBearer = true });
        var token = Mint(boundTo: null, exp: Now.AddMinutes(1));
        Assert.True(v.Verify(token, JwtPeer.FromId("a")).IsValid);
        Assert.Equal(1, v.ReplayCache.Count);
        clock.Now = Now.AddMinutes(1).AddSeconds(29);   // still inside the 30 s leeway: still remembered and refused
        Refused(v.Verify(token, JwtPeer.FromId("b")), JwtSvidVerificationFailure.Replayed, "another peer");
        clock.Now = Now.AddMinutes(2);
        v.ReplayCache.Prune(clock.Now);
        Assert.Equal(0, v.ReplayCache.Count);
        Refused(v.Verify(token, JwtPeer.FromId("b")), JwtSvidVerificationFailure.Invalid, "expired");
    }

    [Fact]
    public void Replay_cache_is_bounded_and_evicts_the_soonest_expiring()
    {
        var cache = new JwtReplayCache(capacity: 3);
        Assert.Equal(JwtReplayOutcome.FirstUse, cache.Record("k1", "a", Now.AddMinutes(3), Now).Outcome);
        Assert.Equal(JwtReplayOutcome.FirstUse, cache.Record("k2", "a", Now.AddMinutes(1), Now).Outcome);
        Assert.Equal(JwtReplayOutcome.FirstUse, cache.Record("k3", "a", Now.AddMinutes(2), Now).Outcome);
        Assert.Equal(JwtReplayOutcome.FirstUse, cache.Record("k4", "a", Now.AddMinutes(4), Now).Outcome);
        Assert.Equal(3, cache.Count);
        Assert.Equal(1, cache.Evictions);
        Assert.Equal(JwtReplayOutcome.FirstUse, cache.Record("k2", "b", Now.AddMinutes(1), Now).Outcome);   // k2 was the one evicted
        Assert.Equal(JwtReplayOutcome.Replayed, cache.Record("k4", "b", Now.AddMinutes(4), Now).Outcome);
        Assert.Equal(JwtReplayOutcome.SamePeer, cache.Record("k4", "a", Now.AddMinutes(4), Now).Outcome);
        Assert.Throws<ArgumentOutOfRangeException>(() => new JwtReplayCache(0));
    }

    [Fact]
    public void Concurrent_presentations_from_many_peers_let_exactly_one_peer_win()
    {
        var replays = new ConcurrentBag<JwtReplay>();
        var v = Verifier(tweak: o => o with { AllowBearer = true, OnReplay = replays.Add });
        var token = Mint(boundTo: null, jti: "race");
        var results = new ConcurrentBag<(string Peer, bool Ok)>();
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var peer = $"peer-{i % 4}";
            results.Add((peer, v.Verify(token, JwtPeer.FromId(peer)).IsValid));
        });
        var winners = results.Where(r => r.Ok).Select(r => r.Peer).Distinct().ToList();
        Assert.Single(winners);
        Assert.Equal(48, replays.Count);   // every presentation by the other three peers
        Assert.All(replays, r => Assert.Equal("id:" + winners[0], r.FirstPeer));
    }

    [Fact]
    public void Misconfiguration_throws_but_hostile_input_does_not()
    {
        Assert.Throws<ArgumentException>(() => new JwtSvidVerifier(Bundle, new JwtSvidVerifierOptions { Audiences = [] }));
        Assert.Throws<ArgumentException>(() => new JwtSvidVerifier(Bundle, new JwtSvidVerifierOptions { Audiences = [""] }));
        var v = Verifier();
        foreach (var junk in new[] { "a.b.c", "...", new string('x', 20000), "eyJ.eyJ.x" })
        {
            Assert.False(v.Verify(junk, NewLeaf()).IsValid);
        }
    }
}
