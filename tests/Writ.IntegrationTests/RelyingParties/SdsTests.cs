using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Envoy.Extensions.TransportSockets.Tls.V3;
using Envoy.Service.Discovery.V3;
using Envoy.Service.Secret.V3;
using Grpc.Core;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// Envoy SDS served by a real agent on its Workload API socket, asked with a client generated from Envoy's own
/// data-plane-api protos (no Envoy binary here); this test process is the Envoy, attested as any workload. The secrets
/// are checked with openssl: the chain verifies against the ROOTCA roots, carries the SPIFFE ID, and matches the key.
/// </summary>
public sealed class SdsTests
{
    private const string SecretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>unix:uid of this test process (the Envoy), its effective uid from /proc.</summary>
    private static string OwnUid => "unix:uid:" + File.ReadAllLines("/proc/self/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal))
        .Split('\t', StringSplitOptions.RemoveEmptyEntries)[2];

    private static DiscoveryRequest Request(DiscoveryResponse? answered, params string[] names)
    {
        var r = new DiscoveryRequest { TypeUrl = SecretType, VersionInfo = answered?.VersionInfo ?? "", ResponseNonce = answered?.Nonce ?? "" };
        r.ResourceNames.AddRange(names);
        return r;
    }

    private static Dictionary<string, Secret> Secrets(DiscoveryResponse r) =>
        r.Resources.Select(a => a.Unpack<Secret>()).ToDictionary(s => s.Name, StringComparer.Ordinal);

    private static X509Certificate2 Leaf(DiscoveryResponse r) =>
        X509Certificate2.CreateFromPem(Secrets(r)["default"].TlsCertificate.CertificateChain.InlineBytes.ToStringUtf8());

    private static async Task<DiscoveryResponse> NextAsync(AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> call, TimeSpan timeout)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(timeout);
        Assert.True(await call.ResponseStream.MoveNext(deadline.Token), "the SDS stream ended");
        return call.ResponseStream.Current;
    }

    [Fact]
    public async Task Envoy_gets_a_certificate_and_roots_that_openssl_accepts_and_new_versions_on_rotation_and_revocation()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/envoy", [OwnUid], "--x509-ttl", "20s");
        await AgentTests.WaitForSvidAsync(rig);
        using var channel = WorkloadTools.UnixChannel(rig.Agent.SocketPath);
        var sds = new SecretDiscoveryService.SecretDiscoveryServiceClient(channel);
        using var call = sds.StreamSecrets(cancellationToken: Ct);   // no workload.spiffe.io header, as Envoy

        await call.RequestStream.WriteAsync(Request(null, "default", "ROOTCA"), Ct);
        var first = await NextAsync(call, TimeSpan.FromSeconds(30));
        Assert.Equal(SecretType, first.TypeUrl);
        Assert.Equal("1", first.VersionInfo);
        var secrets = Secrets(first);
        Assert.Equal(["ROOTCA", "default"], secrets.Keys.Order(StringComparer.Ordinal));

        using var dir = new TempDir();
        await File.WriteAllBytesAsync(dir["chain.pem"], secrets["default"].TlsCertificate.CertificateChain.InlineBytes.ToByteArray(), Ct);
        await File.WriteAllBytesAsync(dir["key.pem"], secrets["default"].TlsCertificate.PrivateKey.InlineBytes.ToByteArray(), Ct);
        await File.WriteAllBytesAsync(dir["rootca.pem"], secrets["ROOTCA"].ValidationContext.TrustedCa.InlineBytes.ToByteArray(), Ct);
        var verify = await Proc.RunAsync("openssl", ["verify", "-CAfile", dir["rootca.pem"], "-untrusted", dir["chain.pem"], dir["chain.pem"]]);
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Contains("chain.pem: OK", verify.Stdout, StringComparison.Ordinal);
        var san = await Proc.RunAsync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", dir["chain.pem"]]);
        Assert.True(san.ExitCode == 0, san.ToString());
        Assert.Contains("URI:spiffe://example.org/envoy", san.Stdout, StringComparison.Ordinal);
        await AgentTests.AssertKeyMatchesAsync(dir["chain.pem"], dir["key.pem"]);
        // The ROOTCA roots are the server's bundle, no more.
        Assert.Equal(Thumbprints(await File.ReadAllTextAsync(rig.BundlePem, Ct)), Thumbprints(await File.ReadAllTextAsync(dir["rootca.pem"], Ct)));

        // ACK, then wait: the rotation (20 s TTL) arrives on the open stream as version 2, a new certificate.
        await call.RequestStream.WriteAsync(Request(first, "default", "ROOTCA"), Ct);
        var old = Leaf(first);
        var rotated = await NextAsync(call, TimeSpan.FromSeconds(40));
        var arrived = DateTime.UtcNow;
        Assert.Equal("2", rotated.VersionInfo);
        var next = Leaf(rotated);
        Assert.NotEqual(old.SerialNumber, next.SerialNumber);
        Assert.True(arrived < old.NotAfter.ToUniversalTime(), $"the new certificate arrived at {arrived:O}, after the old one expired at {old.NotAfter:O}");
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"SDS rotation: new certificate pushed {(old.NotAfter.ToUniversalTime() - arrived).TotalSeconds:F1} s before the old one expired"));

        // Revoke the current certificate: the agent pushes a replacement on the open stream.
        await call.RequestStream.WriteAsync(Request(rotated, "default", "ROOTCA"), Ct);
        var sw = Stopwatch.StartNew();
        var revoke = await rig.Server.WritAsync("revoke", "--serial", next.SerialNumber, "--reason", "key leaked");
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        DiscoveryResponse replaced;
        do
        {
            replaced = await NextAsync(call, TimeSpan.FromSeconds(30));
            await call.RequestStream.WriteAsync(Request(replaced, "default", "ROOTCA"), Ct);
        }
        while (Leaf(replaced).SerialNumber == next.SerialNumber);
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"SDS revocation: `writ revoke` -> replacement certificate on the open stream in {sw.Elapsed.TotalMilliseconds:F0} ms (version {replaced.VersionInfo})"));
        Assert.NotEqual(next.SerialNumber, Leaf(replaced).SerialNumber);
    }

    [Fact]
    public async Task Attack_an_unregistered_caller_and_a_foreign_identity_get_permission_denied()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/someone-else", ["unix:uid:4242"]);
        using var channel = WorkloadTools.UnixChannel(rig.Agent.SocketPath);
        var sds = new SecretDiscoveryService.SecretDiscoveryServiceClient(channel);

        // Unavailable until the agent has synced its entries; then PermissionDenied.
        var denied = await WorkloadTools.EventuallyAsync(async () =>
        {
            try
            {
                await sds.FetchSecretsAsync(Request(null, "ROOTCA"), cancellationToken: Ct);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.PermissionDenied)
            {
                return e;
            }
            throw new InvalidOperationException("an unregistered Envoy was served");
        }, TimeSpan.FromSeconds(15), "the agent to refuse an unregistered Envoy");
        Assert.StartsWith("WRIT-WORKLOAD-DENIED: ", denied.Status.Detail, StringComparison.Ordinal);

        using var call = sds.StreamSecrets(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(Request(null, "default"), Ct);
        var stream = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.PermissionDenied, stream.StatusCode);

        // Registered now, it still cannot have the other workload's certificate by naming it.
        await rig.CreateEntryAsync("spiffe://example.org/envoy", [OwnUid]);
        await AgentTests.WaitForSvidAsync(rig);
        var foreign = await Assert.ThrowsAsync<RpcException>(async () =>
            await sds.FetchSecretsAsync(Request(null, "spiffe://example.org/someone-else"), cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, foreign.StatusCode);
        Assert.StartsWith("WRIT-SDS-NOT-AUTHORIZED: ", foreign.Status.Detail, StringComparison.Ordinal);
        var own = await sds.FetchSecretsAsync(Request(null, "spiffe://example.org/envoy"), cancellationToken: Ct);
        Assert.Equal(["spiffe://example.org/envoy"], Secrets(own).Keys);
    }

    private static List<string> Thumbprints(string pem)
    {
        var c = new X509Certificate2Collection();
        c.ImportFromPem(pem);
        return [.. c.Select(x => x.Thumbprint).Order(StringComparer.Ordinal)];
    }
}
