using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Writ.Agent.Sync;
using Writ.Agent.Tests.Instances;
using Writ.Agent.WorkloadApi;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

using Host = Writ.Agent.Tests.WorkloadApi.WorkloadApiHost;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// Federation, the agent's half (issue #16): the foreign bundles the server pushes on Sync, kept in the agent state, and
/// served to a workload only for the trust domains its entries federate with — in <c>federated_bundles</c>, in
/// FetchX509Bundles/FetchJWTBundles, and as the keys ValidateJWTSVID checks a foreign JWT-SVID against.
/// </summary>
public sealed class WorkloadApiFederationTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly TrustDomain Own = TrustDomain.Parse("example.org");

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private readonly ForeignCa _b = new("b.test");
    private readonly ForeignCa _c = new("c.test");

    public void Dispose()
    {
        _b.Dispose();
        _c.Dispose();
    }

    // ---- the agent state ----

    [Fact]
    public void Federated_bundles_are_published_with_their_batch_replaced_by_each_set_and_dropped_by_a_reset_without_them()
    {
        using var rig = new InstanceRig();
        var state = rig.State;
        Assert.Empty(state.Current.Federated);

        // The set rides on the first page; nothing is visible before the batch ends.
        Assert.Null(state.Apply(Set(1, reset: true, pageEnd: false, _b.Pushed(), _c.Pushed()), Own));
        Assert.Empty(state.Current.Federated);
        state.Apply(new SyncUpdate { Revision = 1, PageEnd = true }, Own);
        Assert.Equal(["b.test", "c.test"], state.Current.Federated.Keys.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Equal(_b.Certificate.RawData, state.Current.Federated[_b.Td].X509Authorities.Single().RawData);

        // A batch that does not set them keeps them (the same objects: nothing derived from them is rebuilt).
        var held = state.Current.Federated[_b.Td];
        state.Apply(new SyncUpdate { Revision = 2, PageEnd = true }, Own);
        Assert.Same(held, state.Current.Federated[_b.Td]);

        // A set replaces the whole set: C is gone. Re-sending B unchanged keeps the object.
        state.Apply(Set(3, reset: false, pageEnd: true, _b.Pushed()), Own);
        Assert.Equal([_b.Td], state.Current.Federated.Keys);
        Assert.Same(held, state.Current.Federated[_b.Td]);

        // An empty set: none any more.
        state.Apply(Set(4, reset: false, pageEnd: true), Own);
        Assert.Empty(state.Current.Federated);

        // A full state (reset) without them keeps nothing stale from before it.
        state.Apply(Set(5, reset: false, pageEnd: true, _c.Pushed()), Own);
        Assert.NotEmpty(state.Current.Federated);
        state.Apply(new SyncUpdate { Revision = 6, Reset = true, PageEnd = true }, Own);
        Assert.Empty(state.Current.Federated);
    }

    [Fact]
    public void A_pushed_bundle_that_names_our_domain_or_cannot_be_read_is_refused_and_the_one_held_before_is_kept()
    {
        using var rig = new InstanceRig();
        var state = rig.State;
        state.Log = rig.Log;
        state.Apply(Set(1, reset: true, pageEnd: true, _b.Pushed()), Own);
        var held = state.Current.Federated[_b.Td];

        // An attacker on the path (or a bug) sends a "foreign" bundle for our own domain, a broken B and an invalid name.
        using var mallory = new ForeignCa("example.org");
        var broken = new Bundle { TrustDomain = "b.test", SpiffeBundleJson = ByteString.CopyFromUtf8("{\"keys\": [{\"use\": \"x509-svid\"") };
        var invalid = new Bundle { TrustDomain = "spiffe://", SpiffeBundleJson = _c.Pushed().SpiffeBundleJson };
        state.Apply(Set(2, reset: false, pageEnd: true, mallory.Pushed(), broken, invalid, _c.Pushed()), Own);

        Assert.Equal(["b.test", "c.test"], state.Current.Federated.Keys.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Same(held, state.Current.Federated[_b.Td]);   // the previous B, not the broken one
        Assert.False(state.Current.Federated.ContainsKey(Own));
        var refusals = rig.Log.Entries.Where(e => e.Message.StartsWith("Federated bundle of", StringComparison.Ordinal) && e.Message.Contains("refused", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, refusals.Count);
        Assert.Contains(refusals, r => r.Message.Contains("example.org", StringComparison.Ordinal) && r.Message.Contains("own trust domain", StringComparison.Ordinal));
        Assert.Contains(refusals, r => r.Message.Contains("b.test", StringComparison.Ordinal) && r.Message.Contains("kept", StringComparison.Ordinal));

        // Two bundles for one domain in one set: the first is used, the second refused.
        using var b2 = new ForeignCa("b.test");
        state.Apply(Set(3, reset: false, pageEnd: true, b2.Pushed(), _b.Pushed()), Own);
        Assert.Equal(b2.Certificate.RawData, state.Current.Federated[_b.Td].X509Authorities.Single().RawData);
    }

    [Fact]
    public void A_workload_is_given_the_bundles_of_the_domains_its_entries_federate_with_and_no_others()
    {
        var snapshot = new AgentSnapshot(new Dictionary<string, Entry>(), new TrustBundle(Own, [], []), 1)
        {
            Federated = new Dictionary<TrustDomain, TrustBundle> { [_b.Td] = _b.Bundle, [_c.Td] = _c.Bundle },
        };
        Assert.Empty(snapshot.FederatedFor([InstanceRig.Entry("plain")]));
        Assert.Equal([_b.Td], snapshot.FederatedFor([Federating("web", "b.test")]).Select(b => b.TrustDomain));
        // United over entries, each once, ordered; a domain the agent holds no bundle of is left out.
        Assert.Equal([_b.Td, _c.Td], snapshot.FederatedFor([Federating("x", "spiffe://c.test", "d.test"), Federating("y", "b.test", "c.test")]).Select(b => b.TrustDomain));
    }

    // ---- the Workload API ----

    [Fact]
    public async Task The_x509_stream_carries_the_federated_bundles_of_the_entries_and_sends_a_change_of_one()
    {
        await using var host = await Host.StartAsync();
        Push(host.Rig.State, [Federating("web", "b.test", OwnUid)], _b.Pushed(), _c.Pushed());

        using var call = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await call.ResponseStream.MoveNext(Ct));
        var first = call.ResponseStream.Current;
        Assert.Equal(["spiffe://b.test"], first.FederatedBundles.Keys);   // not C: the entry does not federate with it
        Assert.Equal(_b.Certificate.RawData, first.FederatedBundles["spiffe://b.test"].ToByteArray());

        // B rotated its CA: the server pushes the new set; the open stream sends it with the same SVID.
        using var rotated = new ForeignCa("b.test");
        host.Rig.State.Apply(Set(host.Rig.State.Current.Revision + 1, reset: false, pageEnd: true, rotated.Pushed(_b), _c.Pushed()), Own);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(10));
        Assert.True(await call.ResponseStream.MoveNext(deadline.Token));
        var second = call.ResponseStream.Current;
        Assert.Equal([.. rotated.Certificate.RawData, .. _b.Certificate.RawData], second.FederatedBundles["spiffe://b.test"].ToByteArray());
        Assert.Equal(first.Svids.Single().X509Svid, second.Svids.Single().X509Svid);
    }

    [Fact]
    public async Task A_workload_whose_entries_federate_with_nothing_gets_no_foreign_bundle_anywhere()
    {
        await using var host = await Host.StartAsync();
        Push(host.Rig.State, [InstanceRig.Entry("plain", OwnUid)], _b.Pushed(), _c.Pushed());

        using var svids = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await svids.ResponseStream.MoveNext(Ct));
        Assert.Empty(svids.ResponseStream.Current.FederatedBundles);
        using var x509 = host.Client.FetchX509Bundles(new X509BundlesRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await x509.ResponseStream.MoveNext(Ct));
        Assert.Equal([Own.IdString], x509.ResponseStream.Current.Bundles.Keys);
        using var jwt = host.Client.FetchJWTBundles(new JWTBundlesRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await jwt.ResponseStream.MoveNext(Ct));
        Assert.Equal([Own.IdString], jwt.ResponseStream.Current.Bundles.Keys);
    }

    [Fact]
    public async Task The_bundle_streams_give_the_own_bundle_and_the_federated_ones_and_follow_the_entries()
    {
        await using var host = await Host.StartAsync();
        Push(host.Rig.State, [Federating("web", "b.test", OwnUid)], _b.Pushed(), _c.Pushed());

        using var x509 = host.Client.FetchX509Bundles(new X509BundlesRequest(), Host.Headers, cancellationToken: Ct);
        using var jwt = host.Client.FetchJWTBundles(new JWTBundlesRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await x509.ResponseStream.MoveNext(Ct));
        Assert.True(await jwt.ResponseStream.MoveNext(Ct));
        Assert.Equal(["spiffe://b.test", Own.IdString], x509.ResponseStream.Current.Bundles.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(_b.Certificate.RawData, x509.ResponseStream.Current.Bundles["spiffe://b.test"].ToByteArray());
        Assert.True(TrustBundle.TryParseJwks(_b.Td, jwt.ResponseStream.Current.Bundles["spiffe://b.test"].ToStringUtf8(), out var jwks, out var error), error);
        Assert.Equal([_b.KeyId], jwks.JwtAuthorities.Keys);

        // The entry now federates with C too (an entry update): both streams send the union.
        host.Rig.State.Apply(new SyncUpdate { Revision = host.Rig.State.Current.Revision + 1, PageEnd = true, Upserts = { Federating("web", "b.test", OwnUid, "c.test") } }, Own);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(10));
        Assert.True(await x509.ResponseStream.MoveNext(deadline.Token));
        Assert.True(await jwt.ResponseStream.MoveNext(deadline.Token));
        Assert.Equal(["spiffe://b.test", "spiffe://c.test", Own.IdString], x509.ResponseStream.Current.Bundles.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(["spiffe://b.test", "spiffe://c.test", Own.IdString], jwt.ResponseStream.Current.Bundles.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task ValidateJWTSVID_accepts_a_token_of_a_federated_domain_signed_by_a_key_of_its_bundle()
    {
        await using var host = await Host.StartAsync();
        Push(host.Rig.State, [Federating("api", "b.test", OwnUid)], _b.Pushed());

        var token = _b.Mint("/client", "spiffe://example.org/api");
        var r = await host.Client.ValidateJWTSVIDAsync(new ValidateJWTSVIDRequest { Svid = token, Audience = "spiffe://example.org/api" }, Host.Headers, cancellationToken: Ct);
        Assert.Equal("spiffe://b.test/client", r.SpiffeId);
        Assert.Equal("spiffe://b.test/client", r.Claims.Fields["sub"].StringValue);

        // Its audience is still checked.
        var e = await Refused(host, _b.Mint("/client", "spiffe://example.org/other"), "spiffe://example.org/api");
        Assert.Equal((StatusCode.InvalidArgument, WorkloadApiErrorInterceptor.CodeFor(StatusCode.InvalidArgument)), (e.StatusCode, WritStatus.Read(e).Code));
    }

    [Fact]
    public async Task Attack_a_token_claiming_a_federated_domain_but_signed_by_another_key_is_refused()
    {
        await using var host = await Host.StartAsync();
        Push(host.Rig.State, [Federating("api", "b.test", OwnUid, "c.test")], _b.Pushed(), _c.Pushed());

        // Mallory holds a key of her own, under B's kid or her own; and C's real key, with a B subject.
        using var mallory = new ForeignCa("b.test", keyId: _b.KeyId);
        using var stranger = new ForeignCa("b.test");
        foreach (var forged in new[] { mallory.Mint("/client", "spiffe://example.org/api"), stranger.Mint("/client", "spiffe://example.org/api"),
                     _c.MintAs(SpiffeId.Parse("spiffe://b.test/client"), "spiffe://example.org/api", _c.KeyId) })
        {
            var e = await Refused(host, forged, "spiffe://example.org/api");
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains("not valid", e.Status.Detail, StringComparison.Ordinal);
        }

        // And a token of B passed off as one of our own domain: our bundle does not hold B's key.
        var ours = await Refused(host, _b.MintAs(SpiffeId.Parse("spiffe://example.org/client"), "spiffe://example.org/api", _b.KeyId), "spiffe://example.org/api");
        Assert.Equal(StatusCode.InvalidArgument, ours.StatusCode);
    }

    [Fact]
    public async Task Attack_a_token_of_a_domain_the_callers_entries_do_not_federate_with_is_refused_even_though_the_agent_holds_its_bundle()
    {
        await using var host = await Host.StartAsync();
        // The agent holds C's bundle (another workload on the node federates with C), but this caller's entry does not.
        Push(host.Rig.State, [Federating("api", "b.test", OwnUid), Federating("other", "c.test", "unix:uid:999999")], _b.Pushed(), _c.Pushed());

        var e = await Refused(host, _c.Mint("/client", "spiffe://example.org/api"), "spiffe://example.org/api");
        Assert.Equal((StatusCode.InvalidArgument, WorkloadApiService.NotFederatedCode), (e.StatusCode, WritStatus.Read(e).Code));
        Assert.Contains("'c.test'", e.Status.Detail, StringComparison.Ordinal);

        // A domain the caller federates with but whose bundle the agent does not hold (yet): Unavailable, its own code.
        Push(host.Rig.State, [Federating("api", "b.test", OwnUid, "c.test")], _b.Pushed());
        var missing = await Refused(host, _c.Mint("/client", "spiffe://example.org/api"), "spiffe://example.org/api");
        Assert.Equal((StatusCode.Unavailable, WorkloadApiService.NoFederatedBundleCode), (missing.StatusCode, WritStatus.Read(missing).Code));
    }

    /// <summary>
    /// Envoy SDS through the agent's running service (a real Unix socket, this process as the Envoy): the roots of a
    /// domain the caller's entry federates with are served by trust domain ID and within "ALL"; a domain it does not
    /// federate with is refused by name and absent from "ALL", though the agent holds its bundle; a new foreign bundle
    /// is pushed as a new version.
    /// </summary>
    [Fact]
    public async Task Envoy_sds_serves_the_roots_of_federated_domains_only_to_callers_that_federate_with_them()
    {
        await using var sds = await Writ.Agent.Tests.Sds.SdsHost.StartAsync();
        Push(sds.Rig.State, [Federating("web", "b.test", OwnUid)], _b.Pushed(), _c.Pushed());
        using var call = sds.Client.StreamSecrets(cancellationToken: Ct);
        var request = new Envoy.Service.Discovery.V3.DiscoveryRequest { TypeUrl = Writ.Agent.Sds.SdsSecrets.SecretTypeUrl };
        request.ResourceNames.AddRange(["spiffe://b.test", "ALL"]);
        await call.RequestStream.WriteAsync(request, Ct);
        var first = await NextAsync(call);
        var secrets = first.Resources.Select(a => a.Unpack<Envoy.Extensions.TransportSockets.Tls.V3.Secret>()).ToDictionary(x => x.Name, StringComparer.Ordinal);
        Assert.Equal([_b.Certificate.Thumbprint], Roots(secrets["spiffe://b.test"]));
        var all = Roots(secrets["ALL"]);
        Assert.Contains(_b.Certificate.Thumbprint, all);
        Assert.DoesNotContain(_c.Certificate.Thumbprint, all);   // held by the agent, not this caller's to trust

        // The attacker's ask: a domain its entries do not federate with.
        using var other = sds.Client.StreamSecrets(cancellationToken: Ct);
        var forC = new Envoy.Service.Discovery.V3.DiscoveryRequest { TypeUrl = Writ.Agent.Sds.SdsSecrets.SecretTypeUrl };
        forC.ResourceNames.Add("spiffe://c.test");
        await other.RequestStream.WriteAsync(forC, Ct);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await NextAsync(other));
        Assert.Contains("spiffe://c.test", refused.Status.Detail, StringComparison.Ordinal);

        // B rotates its root: the open stream gets the new one as the next version.
        using var b2 = new ForeignCa("b.test");
        var ack = new Envoy.Service.Discovery.V3.DiscoveryRequest { TypeUrl = request.TypeUrl, VersionInfo = first.VersionInfo, ResponseNonce = first.Nonce };
        ack.ResourceNames.AddRange(request.ResourceNames);
        await call.RequestStream.WriteAsync(ack, Ct);
        sds.Rig.State.Apply(Set(sds.Rig.State.Current.Revision + 1, reset: false, pageEnd: true, b2.Pushed(), _c.Pushed()), Own);
        var second = await NextAsync(call);
        Assert.NotEqual(first.VersionInfo, second.VersionInfo);
        var pushed = second.Resources.Select(a => a.Unpack<Envoy.Extensions.TransportSockets.Tls.V3.Secret>()).ToDictionary(x => x.Name, StringComparer.Ordinal);
        Assert.Equal([b2.Certificate.Thumbprint], Roots(pushed["spiffe://b.test"]));
    }

    private static string[] Roots(Envoy.Extensions.TransportSockets.Tls.V3.Secret s)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(s.ValidationContext.TrustedCa.InlineBytes.ToStringUtf8());
        return [.. roots.Select(c => c.Thumbprint)];
    }

    private static async Task<Envoy.Service.Discovery.V3.DiscoveryResponse> NextAsync(
        AsyncDuplexStreamingCall<Envoy.Service.Discovery.V3.DiscoveryRequest, Envoy.Service.Discovery.V3.DiscoveryResponse> call)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(15));
        Assert.True(await call.ResponseStream.MoveNext(deadline.Token), "the stream ended");
        return call.ResponseStream.Current;
    }

    private static async Task<RpcException> Refused(Host host, string token, string audience) =>
        await Assert.ThrowsAsync<RpcException>(async () =>
            await host.Client.ValidateJWTSVIDAsync(new ValidateJWTSVIDRequest { Svid = token, Audience = audience }, Host.Headers, cancellationToken: Ct));

    /// <summary>A full state (reset) with these entries and this federated set, as the server sends on connect.</summary>
    private static void Push(AgentState state, Entry[] entries, params Bundle[] federated)
    {
        var update = Set(state.Current.Revision + 1, reset: true, pageEnd: true, federated);
        update.Upserts.AddRange(entries);
        state.Apply(update, Own);
    }

    private static SyncUpdate Set(long revision, bool reset, bool pageEnd, params Bundle[] federated)
    {
        var u = new SyncUpdate { Revision = revision, Reset = reset, PageEnd = pageEnd, FederatedBundlesSet = true };
        u.FederatedBundles.AddRange(federated);
        return u;
    }

    /// <summary>An entry of the own domain, matching these selectors, federating with the trust domains among <paramref name="args"/> (those without a ':').</summary>
    private static Entry Federating(string id, params string[] args)
    {
        var domains = args.Where(a => !a.Contains(':', StringComparison.Ordinal) || a.StartsWith("spiffe://", StringComparison.Ordinal)).ToArray();
        var e = InstanceRig.Entry(id, [.. args.Except(domains)]);
        e.FederatesWith.AddRange(domains);
        return e;
    }

    /// <summary>A foreign trust domain's CA: a root certificate and a JWT signing key, as its SPIFFE bundle.</summary>
    private sealed class ForeignCa : IDisposable
    {
        private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        private readonly ECDsa _jwtKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        public ForeignCa(string td, string? keyId = null)
        {
            Td = TrustDomain.Parse(td);
            KeyId = keyId ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
            var req = new CertificateRequest($"CN={td} root", _caKey, HashAlgorithmName.SHA256);
            req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            req.CertificateExtensions.Add(Rdn(Td.IdString).Build());
            Certificate = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
            Bundle = new TrustBundle(Td, [Certificate], [new JwtAuthority(KeyId, _jwtKey)]);
        }

        public TrustDomain Td { get; }
        public string KeyId { get; }
        public X509Certificate2 Certificate { get; }
        public TrustBundle Bundle { get; }

        /// <summary>This domain's bundle as the server pushes it; with <paramref name="also"/>'s authorities too (a rotation's overlap).</summary>
        public Bundle Pushed(ForeignCa? also = null)
        {
            var bundle = also is null ? Bundle : new TrustBundle(Td, [Certificate, also.Certificate], [.. Bundle.JwtAuthorityList, .. also.Bundle.JwtAuthorityList]);
            return new Bundle { TrustDomain = Td.Name, SpiffeBundleJson = ByteString.CopyFromUtf8(bundle.ToSpiffeJson()), Sequence = 1 };
        }

        public string Mint(string path, string audience) => MintAs(SpiffeId.Parse(Td.IdString + path), audience, KeyId);

        public string MintAs(SpiffeId subject, string audience, string keyId)
        {
            var now = DateTimeOffset.UtcNow;
            return JwtSvidMinter.Mint(new JwtSigningKey(keyId, _jwtKey), subject, [audience], now, now.AddMinutes(5),
                new Dictionary<string, object> { ["jti"] = Guid.NewGuid().ToString("N") });
        }

        private static SubjectAlternativeNameBuilder Rdn(string uri)
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri(uri));
            return san;
        }

        public void Dispose()
        {
            Certificate.Dispose();
            _caKey.Dispose();
            _jwtKey.Dispose();
        }
    }
}
