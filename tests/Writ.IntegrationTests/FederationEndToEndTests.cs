using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Writ.IntegrationTests.Harness;
using Writ.Spiffe;
using Writ.Spiffe.Jwt;

namespace Writ.IntegrationTests;

/// <summary>
/// Federation end to end (issue #16): two trust domains, a.test and b.test, each a real `writ server run` with its bundle
/// endpoint (https_spiffe) and a real `writ agent run`, federating both ways through `writ federation create`. A
/// workload of A whose entry federates with b.test gets b.test's bundle — `openssl verify` accepts B's X.509-SVID
/// with it — and its agent's ValidateJWTSVID accepts a JWT-SVID of B's workload; what is not federated stays out.
/// </summary>
public sealed class FederationEndToEndTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private const string AWeb = "spiffe://a.test/web";
    private const string BClient = "spiffe://b.test/client";

    [Fact]
    public async Task Two_trust_domains_federate_both_ways_and_a_workload_of_a_accepts_the_svids_of_b_only_once_its_entry_federates()
    {
        var (portA, portB) = (FreePort(), FreePort());
        await using var a = await AgentRig.StartAsync(["--federation-bundle-endpoint-bind", $"127.0.0.1:{portA}"], trustDomain: "a.test");
        await using var b = await AgentRig.StartAsync(["--federation-bundle-endpoint-bind", $"127.0.0.1:{portB}"], trustDomain: "b.test");
        await FederateAsync(a, b, portB);
        await FederateAsync(b, a, portA);
        // Each server fetched the other's bundle from its bundle endpoint, authenticating it by its SPIFFE ID.
        await RefreshedAsync(a, "b.test");
        await RefreshedAsync(b, "a.test");
        string[] writ = ["unix:uid:0", "unix:sha256:" + await WorkloadTools.ExecutableSha256Async("dotnet")];

        // B's workload federates with a.test: its files hold its SVID and, once B's server fetched it, A's bundle.
        await b.CreateEntryAsync(BClient, writ, "--federates-with", "a.test");
        var dirB = Path.Combine(b.Dir, "out");
        Directory.CreateDirectory(dirB, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await b.WorkloadAsync("svid", "fetch", "--write", dirB);
            return r.ExitCode == 0 && File.Exists(Path.Combine(dirB, "federated.a.test.pem")) ? r : throw new InvalidOperationException(r.ToString());
        }, Deadline, "B's workload getting its SVID and a.test's bundle");

        // A's workload, its entry not federating (yet): no foreign bundle, and B's token is not for it to accept.
        var plain = await a.CreateEntryAsync(AWeb, writ);
        var before = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await a.WorkloadAsync("svid", "fetch", "--output", "json");
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, Deadline, "A's workload getting its SVID");
        using (var doc = JsonDocument.Parse(before.Stdout))
        {
            Assert.Empty(doc.RootElement.GetProperty("federated_bundles").EnumerateObject());
        }
        await using var token = await WorkloadTools.EventuallyAsync(() => HeldJwtAsync(b, AWeb), Deadline, "B's workload getting a JWT-SVID for A's");
        var refused = await a.WorkloadAsync("jwt", "validate", "--audience", AWeb, "--token", token.Output);
        Expect.OneLineError(refused, "WRIT-FED-AGENT-NOT-FEDERATED");

        // The entry now federates with b.test (replaced: same identity, one more trust domain).
        await a.DeleteEntryAsync(plain);
        await a.CreateEntryAsync(AWeb, writ, "--federates-with", "b.test");
        var dirA = Path.Combine(a.Dir, "out");
        Directory.CreateDirectory(dirA, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await a.WorkloadAsync("svid", "fetch", "--write", dirA);
            return r.ExitCode == 0 && File.Exists(Path.Combine(dirA, "federated.b.test.pem")) ? r : throw new InvalidOperationException(r.ToString());
        }, Deadline, "A's workload getting b.test's bundle");

        // openssl, which nobody here wrote, accepts B's X.509-SVID with the federated bundle A's workload was given — and
        // not with A's own bundle.
        var svidB = Path.Combine(dirB, "svid.pem");
        var ok = await Proc.RunAsync("openssl", ["verify", "-CAfile", Path.Combine(dirA, "federated.b.test.pem"), "-untrusted", svidB, svidB]);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Contains(": OK", ok.Stdout, StringComparison.Ordinal);
        var own = await Proc.RunAsync("openssl", ["verify", "-CAfile", Path.Combine(dirA, "bundle.pem"), "-untrusted", svidB, svidB]);
        Assert.NotEqual(0, own.ExitCode);

        // A's agent validates B's JWT-SVID for A's workload.
        var valid = await WorkloadTools.EventuallyAsync(async () =>
        {
            var r = await a.WorkloadAsync("jwt", "validate", "--audience", AWeb, "--token", token.Output);
            return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
        }, Deadline, "A's agent accepting B's JWT-SVID");
        Assert.Contains("valid: " + BClient, valid.Stdout, StringComparison.Ordinal);

        // Attack: a token claiming b.test, under the kid of B's real key, signed by a key that is not in B's bundle.
        var kid = ReadKid(token.Output);
        using var mallory = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var now = DateTimeOffset.UtcNow;
        var forged = JwtSvidMinter.Mint(new JwtSigningKey(kid, mallory), SpiffeId.Parse(BClient), [AWeb], now, now.AddMinutes(5));
        var forgedResult = await a.WorkloadAsync("jwt", "validate", "--audience", AWeb, "--token", forged);
        Expect.OneLineError(forgedResult, "signature");
        await token.ReleaseAsync();
    }

    /// <summary>On <paramref name="on"/>: a relationship with <paramref name="with"/>'s trust domain over its https_spiffe bundle endpoint.</summary>
    private static async Task FederateAsync(AgentRig on, AgentRig with, int port)
    {
        var td = with.Server.TrustDomain;
        var bundle = await with.Server.WritAsync("bundle", "show", "--format", "spiffe");
        Assert.True(bundle.ExitCode == 0, bundle.ToString());
        var file = Path.Combine(on.Dir, td + ".bundle.json");
        await File.WriteAllTextAsync(file, bundle.Stdout);
        var r = await on.Server.WritAsync("federation", "create", "--trust-domain", td, "--bundle-endpoint-url", $"https://127.0.0.1:{port}",
            "--profile", "https_spiffe", "--endpoint-spiffe-id", $"spiffe://{td}/writ/server", "--trust-bundle-file", file);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    private static Task RefreshedAsync(AgentRig on, string td) => WorkloadTools.EventuallyAsync(async () =>
    {
        var r = await on.Server.WritAsync("federation", "show", "--trust-domain", td, "--output", "json");
        using var doc = JsonDocument.Parse(r.ExitCode == 0 ? r.Stdout : throw new InvalidOperationException(r.ToString()));
        var root = doc.RootElement;
        return root.GetProperty("last_refresh").ValueKind == JsonValueKind.String && root.GetProperty("last_error").ValueKind == JsonValueKind.Null
            ? true : throw new InvalidOperationException($"{td} not fetched yet: {r.Stdout}");
    }, Deadline, $"{on.Server.TrustDomain} fetching the bundle of {td} from its endpoint");

    private static async Task<HeldWorkload> HeldJwtAsync(AgentRig rig, string audience)
    {
        try
        {
            return await HeldWorkload.JwtAsync(rig, "--audience", audience);
        }
        catch (Xunit.Sdk.XunitException e)
        {
            throw new InvalidOperationException(e.Message, e);   // not synced yet: EventuallyAsync tries again
        }
    }

    private static string ReadKid(string token)
    {
        var header = token.Split('.')[0];
        var json = Convert.FromBase64String(header.Replace('-', '+').Replace('_', '/') + new string('=', (4 - header.Length % 4) % 4));
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.GetProperty("kid").GetString()!;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
