using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;

namespace Writ.IntegrationTests;

/// <summary>
/// Federation, server half (issue #16): two real servers, a.test and b.test, federating both ways through their
/// https_spiffe bundle endpoints; and a hostile https_web endpoint (a test CA that a.test trusts through SSL_CERT_FILE)
/// serving another domain's bundle and a huge body. Each check is attacked.
/// </summary>
public sealed class FederationTests : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private ServerProcess _a = null!;
    private ServerProcess _b = null!;
    private string _aEndpoint = "";
    private string _bEndpoint = "";
    private WebApplication? _web;
    private int _webPort;
    private string _bBundleJson = "";
    private volatile string _mirror = "";   // what the /b-mirror endpoint serves (a test sets it)

    public async ValueTask InitializeAsync()
    {
        // The hostile web endpoint's CA, trusted by a.test as its only Web PKI root.
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest("CN=Federation Test Web CA", caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        var now = DateTimeOffset.UtcNow;   // one instant: a leaf made a second later would outlive its CA
        using var ca = caReq.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));
        File.WriteAllText(_dir["web-ca.pem"], ca.ExportCertificatePem());
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafReq = new CertificateRequest("CN=localhost", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        leafReq.CertificateExtensions.Add(san.Build());
        leafReq.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var leaf = leafReq.Create(ca, now.AddMinutes(-5), now.AddDays(1), [1, 2, 3, 4]);
        using var leafWithKey = leaf.CopyWithPrivateKey(leafKey);
        var serverCert = X509CertificateLoader.LoadPkcs12(leafWithKey.Export(X509ContentType.Pkcs12), null);

        _a = new ServerProcess(_dir["a"], "a.test", "--federation-bundle-endpoint-bind", "127.0.0.1:0");
        _a.Environment["SSL_CERT_FILE"] = _dir["web-ca.pem"];
        _b = new ServerProcess(_dir["b"], "b.test", "--federation-bundle-endpoint-bind", "127.0.0.1:0");
        await Task.WhenAll(_a.StartAsync(), _b.StartAsync());
        _aEndpoint = await BundleEndpointOf(_a);
        _bEndpoint = await BundleEndpointOf(_b);
        _bBundleJson = (await _b.WritAsync("bundle", "show", "--format", "spiffe")).Stdout;

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(serverCert)));
        _web = builder.Build();
        _web.MapGet("/other-domain", () => Results.Text(_bBundleJson, "application/json"));
        _web.MapGet("/b-mirror", () => Results.Text(_mirror, "application/json"));
        // A redirect whose Location is relative (legal HTTP): it must be refused like any redirect, with its code.
        _web.MapGet("/relative-redirect", (HttpContext c) => { c.Response.StatusCode = 302; c.Response.Headers.Location = "/other-domain"; });
        _web.MapGet("/huge", () => Results.Text("{\"keys\":[" + new string(' ', 2 << 20) + "]}", "application/json"));
        await _web.StartAsync();
        _webPort = new Uri(_web.Urls.First()).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (_web is not null)
        {
            await _web.DisposeAsync();
        }
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        _dir.Dispose();
    }

    private static async Task<string> BundleEndpointOf(ServerProcess s)
    {
        var ready = await s.Stdout.WaitForAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), TimeSpan.FromSeconds(5));
        return ready.Split(' ').First(w => w.StartsWith("bundle_endpoint=", StringComparison.Ordinal))["bundle_endpoint=".Length..];
    }

    private async Task<string> BundleFileOf(ServerProcess s, string name)
    {
        var r = await s.WritAsync("bundle", "show", "--format", "spiffe");
        Assert.True(r.ExitCode == 0, r.ToString());
        File.WriteAllText(_dir[name], r.Stdout);
        return _dir[name];
    }

    private static async Task<JsonElement> ShowAsync(ServerProcess s, string td)
    {
        var r = await s.WritAsync("federation", "show", "--trust-domain", td, "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.Clone();
    }

    /// <summary>Waits until the relationship has a successful refresh after <paramref name="after"/> (unix seconds) or an error with <paramref name="code"/>.</summary>
    private static Task<JsonElement> EventuallyRefreshedAsync(ServerProcess s, string td, string? code = null) =>
        WorkloadTools.EventuallyAsync(async () =>
        {
            var f = await ShowAsync(s, td);
            if (code is null)
            {
                Assert.True(f.GetProperty("last_refresh").ValueKind == JsonValueKind.String && f.GetProperty("last_error").ValueKind == JsonValueKind.Null, f.ToString());
            }
            else if (f.GetProperty("last_error").GetString() is not { } error || !error.StartsWith(code + ":", StringComparison.Ordinal))
            {
                throw new InvalidOperationException("not yet: " + f);
            }
            return f;
        }, TimeSpan.FromSeconds(30), $"{td} refreshed on {s.TrustDomain}");

    private static string Keys(string bundleJson)
    {
        using var doc = JsonDocument.Parse(bundleJson);
        return JsonSerializer.Serialize(doc.RootElement.GetProperty("keys"));
    }

    [Fact]
    public async Task Two_trust_domains_federate_both_ways_and_agents_get_the_foreign_bundle()
    {
        var aFile = await BundleFileOf(_a, "a-bundle.json");
        var bFile = await BundleFileOf(_b, "b-bundle.json");
        var onA = await _a.WritAsync("federation", "create", "--trust-domain", "b.test", "--bundle-endpoint-url", $"https://{_bEndpoint}/",
            "--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://b.test/writ/server", "--trust-bundle-file", bFile);
        Assert.True(onA.ExitCode == 0, onA.ToString());
        var onB = await _b.WritAsync("federation", "create", "--trust-domain", "a.test", "--bundle-endpoint-url", $"https://{_aEndpoint}/",
            "--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://a.test/writ/server", "--trust-bundle-file", aFile);
        Assert.True(onB.ExitCode == 0, onB.ToString());

        // Each fetched the other's bundle through its bundle endpoint and holds exactly what the other serves.
        var bOnA = await EventuallyRefreshedAsync(_a, "b.test");
        var aOnB = await EventuallyRefreshedAsync(_b, "a.test");
        Assert.Equal(Keys(File.ReadAllText(bFile)), JsonSerializer.Serialize(bOnA.GetProperty("bundle").GetProperty("keys")));
        Assert.Equal(Keys(File.ReadAllText(aFile)), JsonSerializer.Serialize(aOnB.GetProperty("bundle").GetProperty("keys")));
        var list = await _a.WritAsync("federation", "list");
        Assert.True(list.ExitCode == 0 && list.Stdout.Contains("b.test", StringComparison.Ordinal), list.ToString());

        // An agent of a.test gets b.test's bundle in its first sync update.
        using var agent = await TestAgent.ConnectAsync(_a);
        await agent.AttestAsync(await TestAgent.NewJoinTokenAsync(_a));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var stream = agent.Client.Sync(new SyncRequest(), cancellationToken: cts.Token);
        Assert.True(await stream.ResponseStream.MoveNext(cts.Token));
        var first = stream.ResponseStream.Current;
        Assert.True(first.FederatedBundlesSet);
        var foreign = Assert.Single(first.FederatedBundles);
        Assert.Equal("b.test", foreign.TrustDomain);
        Assert.Contains("x509-svid", foreign.SpiffeBundleJson.ToStringUtf8(), StringComparison.Ordinal);

        // An entry federating with b.test is stored, shown, and reaches the agent with its federates_with.
        var entry = await _a.WritAsync("entry", "create", "--spiffe-id", "spiffe://a.test/web", "--parent-id", agent.AgentId,
            "--selector", "unix:uid:1000", "--federates-with", "b.test", "--output", "json");
        Assert.True(entry.ExitCode == 0, entry.ToString());
        using (var created = JsonDocument.Parse(entry.Stdout))
        {
            var federates = created.RootElement.GetProperty("federates_with");
            Assert.Equal("b.test", Assert.Single(federates.EnumerateArray()).GetString());
        }
        var upsert = await WorkloadTools.EventuallyAsync(async () =>
        {
            Assert.True(await stream.ResponseStream.MoveNext(cts.Token));
            return stream.ResponseStream.Current.Upserts.Single(e => e.SpiffeId == "spiffe://a.test/web");
        }, TimeSpan.FromSeconds(15), "the entry on the sync stream");
        Assert.Equal(["b.test"], upsert.FederatesWith);

        // The relationship deleted: the agent is told the set is now empty.
        var deleted = await _a.WritAsync("federation", "delete", "--trust-domain", "b.test");
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        var emptied = await WorkloadTools.EventuallyAsync(async () =>
        {
            Assert.True(await stream.ResponseStream.MoveNext(cts.Token));
            var u = stream.ResponseStream.Current;
            return u.FederatedBundlesSet ? u : throw new InvalidOperationException("not yet");
        }, TimeSpan.FromSeconds(15), "the emptied federated set");
        Assert.Empty(emptied.FederatedBundles);
        var audit = await _a.WritAsync("audit", "list", "--output", "json");
        Assert.Contains("federation.created", audit.Stdout, StringComparison.Ordinal);
        Assert.Contains("federation.deleted", audit.Stdout, StringComparison.Ordinal);
        // The fetched bundles were the bootstrap ones (same keys and sequence): nothing changed, so no bundle_updated churn.
    }

    [Fact]
    public async Task An_https_spiffe_endpoint_with_another_spiffe_id_is_refused_and_the_held_bundle_kept()
    {
        var bFile = await BundleFileOf(_b, "b-bundle-2.json");
        // b.test's endpoint presents a valid SVID of b.test, but spiffe://b.test/writ/server, not the ID configured.
        var create = await _a.WritAsync("federation", "create", "--trust-domain", "b.test", "--bundle-endpoint-url", $"https://{_bEndpoint}/",
            "--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://b.test/not-the-server", "--trust-bundle-file", bFile);
        Assert.True(create.ExitCode == 0, create.ToString());
        var f = await EventuallyRefreshedAsync(_a, "b.test", "WRIT-FED-FETCH-TLS");
        Assert.Contains("spiffe://b.test/writ/server", f.GetProperty("last_error").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.Null, f.GetProperty("last_refresh").ValueKind);
        Assert.Equal(JsonValueKind.Object, f.GetProperty("bundle").ValueKind);   // the bootstrap bundle is kept
        var refresh = await _a.WritAsync("federation", "refresh", "--trust-domain", "b.test");
        Assert.Equal(1, refresh.ExitCode);
        Assert.Contains("WRIT-FED-FETCH-TLS", refresh.Stdout, StringComparison.Ordinal);
        Assert.True((await _a.WritAsync("federation", "delete", "--trust-domain", "b.test")).ExitCode == 0);
    }

    [Fact]
    public async Task Hostile_endpoints_are_refused_another_domains_bundle_a_huge_body_an_untrusted_certificate()
    {
        // A trusted web endpoint serving b.test's bundle as if it were c.test's: its CA names spiffe://b.test.
        Assert.True((await _a.WritAsync("federation", "create", "--trust-domain", "c.test", "--bundle-endpoint-url",
            $"https://localhost:{_webPort}/other-domain", "--profile", "https_web")).ExitCode == 0);
        await EventuallyRefreshedAsync(_a, "c.test", "WRIT-FED-FETCH-BUNDLE");
        // More than 1 MiB.
        Assert.True((await _a.WritAsync("federation", "create", "--trust-domain", "d.test", "--bundle-endpoint-url",
            $"https://localhost:{_webPort}/huge", "--profile", "https_web")).ExitCode == 0);
        await EventuallyRefreshedAsync(_a, "d.test", "WRIT-FED-FETCH-TOO-LARGE");
        // https_web against b.test's endpoint: its SVID is no Web PKI certificate a.test trusts.
        Assert.True((await _a.WritAsync("federation", "create", "--trust-domain", "e.test", "--bundle-endpoint-url",
            $"https://localhost:{_bEndpoint.Split(':')[1]}/", "--profile", "https_web")).ExitCode == 0);
        await EventuallyRefreshedAsync(_a, "e.test", "WRIT-FED-FETCH-TLS");
        foreach (var td in new[] { "c.test", "d.test", "e.test" })
        {
            var f = await ShowAsync(_a, td);
            Assert.Equal(JsonValueKind.Null, f.GetProperty("bundle").ValueKind);   // nothing stored
            Assert.True((await _a.WritAsync("federation", "delete", "--trust-domain", td)).ExitCode == 0);
        }
    }

    /// <summary>b.test's bundle document with another spiffe_sequence and, when <paramref name="dropJwtKey"/>, without its JWT key.</summary>
    private string MirrorOfB(long sequence, bool dropJwtKey = false)
    {
        var doc = System.Text.Json.Nodes.JsonNode.Parse(_bBundleJson)!.AsObject();
        doc["spiffe_sequence"] = sequence;
        if (dropJwtKey)
        {
            var keys = doc["keys"]!.AsArray();
            keys.Remove(keys.First(k => (string?)k!["use"] == "jwt-svid"));
        }
        return doc.ToJsonString();
    }

    [Fact]
    public async Task A_fetched_bundle_older_than_the_held_one_or_with_other_keys_under_its_sequence_is_refused_until_an_operator_replaces_it()
    {
        // A trusted https_web mirror of b.test's bundle: first sequence 10, which is stored.
        _mirror = MirrorOfB(10);
        Assert.True((await _a.WritAsync("federation", "create", "--trust-domain", "b.test", "--bundle-endpoint-url",
            $"https://localhost:{_webPort}/b-mirror", "--profile", "https_web")).ExitCode == 0);
        var held = await EventuallyRefreshedAsync(_a, "b.test");
        Assert.Equal(10, held.GetProperty("bundle_sequence").GetInt64());
        var heldKeys = held.GetProperty("bundle").GetRawText();

        // Attack: the endpoint (a stale cache, or someone replaying an old document) serves sequence 9 with the same keys.
        _mirror = MirrorOfB(9);
        var refresh = await _a.WritAsync("federation", "refresh", "--trust-domain", "b.test");
        Assert.Equal(1, refresh.ExitCode);
        Assert.Contains("WRIT-FED-FETCH-ROLLBACK:", refresh.Stdout + refresh.Stderr, StringComparison.Ordinal);
        var f = await ShowAsync(_a, "b.test");
        Assert.StartsWith("WRIT-FED-FETCH-ROLLBACK: ", f.GetProperty("last_error").GetString(), StringComparison.Ordinal);
        Assert.Equal(10, f.GetProperty("bundle_sequence").GetInt64());
        Assert.Equal(heldKeys, f.GetProperty("bundle").GetRawText());

        // Attack: the held sequence with other keys (one key dropped).
        _mirror = MirrorOfB(10, dropJwtKey: true);
        refresh = await _a.WritAsync("federation", "refresh", "--trust-domain", "b.test");
        Assert.Equal(1, refresh.ExitCode);
        f = await ShowAsync(_a, "b.test");
        Assert.StartsWith("WRIT-FED-FETCH-SEQUENCE-REUSED: ", f.GetProperty("last_error").GetString(), StringComparison.Ordinal);
        Assert.Equal(heldKeys, f.GetProperty("bundle").GetRawText());

        // Control: a newer sequence is taken.
        _mirror = MirrorOfB(11);
        Assert.Equal(0, (await _a.WritAsync("federation", "refresh", "--trust-domain", "b.test")).ExitCode);
        Assert.Equal(11, (await ShowAsync(_a, "b.test")).GetProperty("bundle_sequence").GetInt64());

        // An operator's explicit bundle file still replaces it, whatever its sequence (the endpoint now serves the same
        // document, so the fetch that follows the update keeps it).
        _mirror = MirrorOfB(3);
        var file = _dir["b-mirror-3.json"];
        await File.WriteAllTextAsync(file, MirrorOfB(3));
        var update = await _a.WritAsync("federation", "update", "--trust-domain", "b.test", "--trust-bundle-file", file);
        Assert.True(update.ExitCode == 0, update.ToString());
        Assert.Equal(3, (await ShowAsync(_a, "b.test")).GetProperty("bundle_sequence").GetInt64());
        Assert.Equal(0, (await _a.WritAsync("federation", "refresh", "--trust-domain", "b.test")).ExitCode);
        Assert.Equal(3, (await ShowAsync(_a, "b.test")).GetProperty("bundle_sequence").GetInt64());
        Assert.True((await _a.WritAsync("federation", "delete", "--trust-domain", "b.test")).ExitCode == 0);
    }

    [Fact]
    public async Task A_relative_redirect_is_refused_with_its_code_not_a_crash_of_the_refresh_loop()
    {
        // Attack: a hostile endpoint answers 302 with a relative Location. Before the fix, describing the redirect threw
        // outside the refresher's error handling: no last_error recorded, the refresh loop restarted, the admin refresh
        // answered an internal error.
        Assert.True((await _a.WritAsync("federation", "create", "--trust-domain", "f.test", "--bundle-endpoint-url",
            $"https://localhost:{_webPort}/relative-redirect", "--profile", "https_web")).ExitCode == 0);
        var f = await EventuallyRefreshedAsync(_a, "f.test", "WRIT-FED-FETCH");
        Assert.Contains("redirect", f.GetProperty("last_error").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.Null, f.GetProperty("bundle").ValueKind);
        var refresh = await _a.WritAsync("federation", "refresh", "--trust-domain", "f.test");
        Assert.Equal(1, refresh.ExitCode);
        Assert.Contains("WRIT-FED-FETCH:", refresh.Stdout + refresh.Stderr, StringComparison.Ordinal);
        Assert.True((await _a.WritAsync("federation", "delete", "--trust-domain", "f.test")).ExitCode == 0);
    }

    [Fact]
    public async Task Bad_requests_are_refused_with_their_code_and_change_nothing()
    {
        var bFile = await BundleFileOf(_b, "b-bundle-3.json");
        async Task Refused(string code, params string[] args)
        {
            var r = await _a.WritAsync(args);
            Assert.True(r.ExitCode == 1 && r.Stderr.Contains(code, StringComparison.Ordinal), $"{code}: {r}");
        }
        await Refused("WRIT-FED-OWN-TRUST-DOMAIN", "federation", "create", "--trust-domain", "a.test", "--bundle-endpoint-url", "https://x.example/", "--profile", "https_web");
        await Refused("WRIT-FED-TRUST-DOMAIN", "federation", "create", "--trust-domain", "spiffe://f.test/x", "--bundle-endpoint-url", "https://x.example/", "--profile", "https_web");
        await Refused("WRIT-FED-ENDPOINT-URL", "federation", "create", "--trust-domain", "f.test", "--bundle-endpoint-url", "http://x.example/", "--profile", "https_web");
        await Refused("WRIT-FED-PROFILE", "federation", "create", "--trust-domain", "f.test", "--bundle-endpoint-url", "https://x.example/", "--profile", "https");
        await Refused("WRIT-FED-ENDPOINT-SPIFFE-ID", "federation", "create", "--trust-domain", "f.test", "--bundle-endpoint-url", "https://x.example/", "--profile", "https_spiffe", "--trust-bundle-file", bFile);
        await Refused("WRIT-FED-BUNDLE", "federation", "create", "--trust-domain", "f.test", "--bundle-endpoint-url", "https://x.example/", "--profile", "https_spiffe",
            "--endpoint-spiffe-id", "spiffe://f.test/writ/server");
        // b.test's bundle offered as f.test's: its authorities name spiffe://b.test.
        await Refused("WRIT-FED-BUNDLE", "federation", "create", "--trust-domain", "f.test", "--bundle-endpoint-url", "https://x.example/", "--profile", "https_spiffe",
            "--endpoint-spiffe-id", "spiffe://f.test/writ/server", "--trust-bundle-file", bFile);
        await Refused("WRIT-STORE-NOT-FOUND", "federation", "show", "--trust-domain", "f.test");
        var list = await _a.WritAsync("federation", "list", "--output", "json");
        Assert.DoesNotContain("f.test", list.Stdout, StringComparison.Ordinal);

        // Entries: an unknown domain, our own, a malformed name; nothing written.
        var parent = "spiffe://a.test/writ/agent/join_token/0123456789abcdef";
        await Refused("WRIT-FED-ENTRY-UNKNOWN", "entry", "create", "--spiffe-id", "spiffe://a.test/fed", "--parent-id", parent, "--selector", "unix:uid:1", "--federates-with", "unknown.test");
        await Refused("WRIT-FED-ENTRY-TRUST-DOMAIN", "entry", "create", "--spiffe-id", "spiffe://a.test/fed", "--parent-id", parent, "--selector", "unix:uid:1", "--federates-with", "a.test");
        await Refused("WRIT-FED-ENTRY-TRUST-DOMAIN", "entry", "create", "--spiffe-id", "spiffe://a.test/fed", "--parent-id", parent, "--selector", "unix:uid:1", "--federates-with", "Not A Domain");
        var entries = await _a.WritAsync("entry", "list", "--spiffe-id", "spiffe://a.test/fed");
        Assert.Contains("0 entries", entries.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_bundle_endpoint_serves_only_the_bundle_to_curl_and_openssl()
    {
        var pem = await _b.WritAsync("bundle", "show", "--format", "pem");
        File.WriteAllText(_dir["b-ca.pem"], pem.Stdout);
        var port = _bEndpoint.Split(':')[1];
        // curl verifies the https_spiffe endpoint's SVID (DNS SAN localhost) against b.test's bundle.
        var ok = await Proc.RunAsync("curl", ["-sS", "--cacert", _dir["b-ca.pem"], "-D", "-", $"https://localhost:{port}/"]);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Contains("content-type: application/json", ok.Stdout.ToLowerInvariant(), StringComparison.Ordinal);
        Assert.Contains("\"spiffe_refresh_hint\"", ok.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"spiffe_sequence\"", ok.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"jwt-svid\"", ok.Stdout, StringComparison.Ordinal);
        var notFound = await Proc.RunAsync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", _dir["b-ca.pem"], $"https://localhost:{port}/admin"]);
        Assert.Equal("404", notFound.Stdout.Trim());
        var post = await Proc.RunAsync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--cacert", _dir["b-ca.pem"], $"https://localhost:{port}/"]);
        Assert.Equal("405", post.Stdout.Trim());
        // openssl s_client sees the server's SVID, spiffe://b.test/writ/server, verified by the bundle.
        var sclient = await Proc.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-CAfile", _dir["b-ca.pem"], "-verify_return_error", "-brief"],
            stdin: "");
        Assert.True(sclient.ExitCode == 0, sclient.ToString());
        Assert.Contains("Verification: OK", sclient.Stderr + sclient.Stdout, StringComparison.Ordinal);
    }
}
