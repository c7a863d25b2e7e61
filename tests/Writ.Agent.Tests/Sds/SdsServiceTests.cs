using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Envoy.Extensions.TransportSockets.Tls.V3;
using Envoy.Service.Discovery.V3;
using Grpc.Core;
using Writ.Agent.Sds;
using Writ.Agent.Tests.Instances;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Agent.Tests.Sds;

/// <summary>
/// Envoy SDS on a real Unix socket, this test process as the Envoy (attested from the kernel), with the generated Envoy
/// client: the xDS version/nonce/ACK/NACK flow, pushes on revocation and bundle change, and the refusals.
/// </summary>
public sealed class SdsServiceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static DiscoveryRequest Request(params string[] names)
    {
        var r = new DiscoveryRequest { TypeUrl = SdsSecrets.SecretTypeUrl };
        r.ResourceNames.AddRange(names);
        return r;
    }

    private static DiscoveryRequest Ack(DiscoveryResponse answered, params string[] names)
    {
        var r = Request(names);
        r.VersionInfo = answered.VersionInfo;
        r.ResponseNonce = answered.Nonce;
        return r;
    }

    private static async Task<DiscoveryResponse> NextAsync(AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> call)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(15));
        Assert.True(await call.ResponseStream.MoveNext(deadline.Token), "the stream ended");
        return call.ResponseStream.Current;
    }

    private static Dictionary<string, Secret> Secrets(DiscoveryResponse r) =>
        r.Resources.Select(a => a.Unpack<Secret>()).ToDictionary(s => s.Name, StringComparer.Ordinal);

    private static X509Certificate2 Leaf(Secret s) => X509Certificate2.CreateFromPem(s.TlsCertificate.CertificateChain.InlineBytes.ToStringUtf8());

    /// <summary>The entry the fake server signed this leaf for (its key is the key of that entry's CSR; the fake puts no SAN).</summary>
    private static string EntryOf(SdsHost host, X509Certificate2 leaf) =>
        host.Rig.Server.Signs.SelectMany(s => s.Csrs).Single(c => CertificateRequest.LoadSigningRequest(c.Csr.ToByteArray(), HashAlgorithmName.SHA256,
            CertificateRequestLoadOptions.SkipSignatureValidation).PublicKey.EncodedKeyValue.RawData.AsSpan().SequenceEqual(leaf.PublicKey.EncodedKeyValue.RawData)).EntryId;

    [Fact]
    public async Task A_stream_answers_acks_quietly_and_pushes_a_new_version_when_the_svid_is_revoked()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        using var call = host.Client.StreamSecrets(cancellationToken: Ct);   // no workload.spiffe.io header: Envoy sends none

        await call.RequestStream.WriteAsync(Request("default", "ROOTCA"), Ct);
        var first = await NextAsync(call);
        Assert.Equal("1", first.VersionInfo);
        Assert.NotEmpty(first.Nonce);
        Assert.Equal(SdsSecrets.SecretTypeUrl, first.TypeUrl);
        var secrets = Secrets(first);
        Assert.Equal(["ROOTCA", "default"], secrets.Keys.Order(StringComparer.Ordinal));
        var leaf = Leaf(secrets["default"]);
        Assert.Equal("web", EntryOf(host, leaf));

        // ACK; then revoke the SVID: the next message is the new version with a new certificate (nothing in between).
        await call.RequestStream.WriteAsync(Ack(first, "default", "ROOTCA"), Ct);
        host.Rig.State.Revocations.Add([new Revocation { SerialHex = leaf.SerialNumber, ExpiresAtUnix = new DateTimeOffset(leaf.NotAfter).ToUnixTimeSeconds() }]);
        host.Rig.State.Changed.Raise();
        var second = await NextAsync(call);
        Assert.Equal("2", second.VersionInfo);
        Assert.NotEqual(first.Nonce, second.Nonce);
        Assert.NotEqual(leaf.SerialNumber, Leaf(Secrets(second)["default"]).SerialNumber);
    }

    [Fact]
    public async Task A_nack_is_logged_and_not_answered_with_the_same_version_and_a_bundle_change_pushes()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        using var call = host.Client.StreamSecrets(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(Request("ROOTCA", "default"), Ct);
        var first = await NextAsync(call);

        var nack = Ack(first, "ROOTCA", "default");
        nack.VersionInfo = "";   // nothing accepted before
        nack.ErrorDetail = new Google.Rpc.Status { Code = 3, Message = "Failed to load certificate chain" };
        await call.RequestStream.WriteAsync(nack, Ct);
        await Deadline.UntilAsync(() => host.Log.Entries.Any(e => e.Message.Contains("rejected version 1 of ROOTCA,default: Failed to load certificate chain", StringComparison.Ordinal)),
            "the NACK to be logged");

        // A request answering an older nonce is ignored (its names are not taken).
        var stale = Request("ROOTCA");
        stale.ResponseNonce = "0000";
        await call.RequestStream.WriteAsync(stale, Ct);
        // Read before the bundle changes, or the push may be sent before the stale request is read (a race, not a bug).
        await Deadline.UntilAsync(() => host.Log.Entries.Any(e => e.Message.Contains("ignored a request", StringComparison.Ordinal)),
            "the stale request to be ignored");

        // The bundle changes: the next message is version 2 (version 1 was not sent again) for the names still asked.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var root = new CertificateRequest("CN=new root", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        host.Rig.State.SetBundle(new TrustBundle(TrustDomain.Parse("example.org"), [root], []));
        var second = await NextAsync(call);
        Assert.Equal("2", second.VersionInfo);
        var secrets = Secrets(second);
        Assert.Equal(["ROOTCA", "default"], secrets.Keys.Order(StringComparer.Ordinal));
        var trusted = new X509Certificate2Collection();
        trusted.ImportFromPem(secrets["ROOTCA"].ValidationContext.TrustedCa.InlineBytes.ToStringUtf8());
        Assert.Equal([root.Thumbprint], trusted.Select(c => c.Thumbprint));
        Assert.Contains(host.Log.Entries, e => e.Message.Contains("ignored a request", StringComparison.Ordinal));
    }

    [Fact]
    public async Task New_names_on_an_ack_are_answered_at_once_with_the_same_version()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid), InstanceRig.Entry("api", OwnUid));
        using var call = host.Client.StreamSecrets(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(Request("default"), Ct);
        var first = await NextAsync(call);
        Assert.Equal("api", EntryOf(host, Leaf(Secrets(first)["default"])));   // the first by SPIFFE ID

        await call.RequestStream.WriteAsync(Ack(first, "spiffe://example.org/web", "spiffe://example.org"), Ct);
        var second = await NextAsync(call);
        Assert.Equal(["spiffe://example.org", "spiffe://example.org/web"], Secrets(second).Keys.Order(StringComparer.Ordinal));
        Assert.Equal("web", EntryOf(host, Leaf(Secrets(second)["spiffe://example.org/web"])));
    }

    [Fact]
    public async Task Fetch_answers_once_without_version_or_nonce()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        var r = await host.Client.FetchSecretsAsync(Request("default", "ROOTCA"), cancellationToken: Ct);
        Assert.Equal("", r.VersionInfo);
        Assert.Equal("", r.Nonce);
        Assert.Equal(["ROOTCA", "default"], Secrets(r).Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Attack_an_unregistered_caller_gets_permission_denied_and_no_secret()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("someone-else", "unix:uid:4242424"));
        var fetch = await Assert.ThrowsAsync<RpcException>(async () => await host.Client.FetchSecretsAsync(Request("ROOTCA"), cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, fetch.StatusCode);
        Assert.StartsWith("WRIT-WORKLOAD-DENIED: no identity issued", fetch.Status.Detail, StringComparison.Ordinal);

        using var call = host.Client.StreamSecrets(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(Request("default"), Ct);
        var stream = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.PermissionDenied, stream.StatusCode);
    }

    [Fact]
    public async Task Attack_asking_for_another_workloads_identity_is_refused_and_names_it()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid), InstanceRig.Entry("payments", "unix:uid:4242424"));
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await host.Client.FetchSecretsAsync(Request("default", "spiffe://example.org/payments"), cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.StartsWith($"{SdsService.NotAuthorizedCode}: this workload has no secret named 'spiffe://example.org/payments'", e.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(SdsService.NotAuthorizedCode, e.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.DoesNotContain(host.Rig.Server.Signs.SelectMany(s => s.Csrs), c => c.EntryId == "payments");
    }

    [Fact]
    public async Task Attack_a_stream_ends_when_the_callers_evidence_drifts()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("small", OwnUid), InstanceRig.Entry("target", OwnUid, "unix:sha256:7a7a"));
        using var call = host.Client.StreamSecrets(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(Request(), Ct);
        var first = await NextAsync(call);
        Assert.DoesNotContain("spiffe://example.org/target", Secrets(first).Keys);
        await call.RequestStream.WriteAsync(Ack(first), Ct);

        var instance = host.Rig.Tracker.Get(host.Rig.Server.Signs[^1].Csrs[0].Evidence.InstanceId)!;
        var before = instance.Current.Evidence!;
        instance.Drift(before with { Selectors = [.. before.Selectors.Where(x => x.Type != "unix" || !x.Value.StartsWith("sha256:", StringComparison.Ordinal)), new("unix", "sha256:7a7a")] },
            DateTimeOffset.UtcNow);
        instance.Changed.Raise();

        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(Ct))
            {
                Assert.DoesNotContain("spiffe://example.org/target", Secrets(call.ResponseStream.Current).Keys);
            }
        });
        Assert.Equal(StatusCode.Unauthenticated, ended.StatusCode);
        Assert.Contains("reconnect", ended.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bad_requests_get_one_line_errors_with_stable_codes()
    {
        await using var host = await SdsHost.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));

        var wrongType = Request("default");
        wrongType.TypeUrl = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
        var e1 = await Assert.ThrowsAsync<RpcException>(async () => await host.Client.FetchSecretsAsync(wrongType, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e1.StatusCode);
        Assert.StartsWith($"{SdsService.TypeUrlCode}: ", e1.Status.Detail, StringComparison.Ordinal);

        var flood = Request([.. Enumerable.Range(0, SdsService.MaxNames + 1).Select(i => $"n{i}")]);
        using var call = host.Client.StreamSecrets(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(flood, Ct);
        var e2 = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.InvalidArgument, e2.StatusCode);
        Assert.StartsWith($"{SdsService.TooLargeCode}: ", e2.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e2.Status.Detail);

        var huge = Request(new string('a', SdsService.MaxNameLength + 1));
        var e3 = await Assert.ThrowsAsync<RpcException>(async () => await host.Client.FetchSecretsAsync(huge, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e3.StatusCode);

        using var delta = host.Client.DeltaSecrets(cancellationToken: Ct);
        var e4 = await Assert.ThrowsAsync<RpcException>(() => delta.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.Unimplemented, e4.StatusCode);
    }
}
