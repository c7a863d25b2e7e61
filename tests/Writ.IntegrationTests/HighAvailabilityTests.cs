using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Google.Protobuf;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.IntegrationTests;

/// <summary>
/// Three real `writ server run` processes on one PostgreSQL database, each with its own data dir, server id and CA
/// (issue #16 item 1): one trust bundle with every server's authorities, and any server serves an agent attested on another.
/// </summary>
public sealed class HighAvailabilityTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static ServerProcess NewServer(TempDir dir, string name, PgDatabase db) =>
        new(dir[name], "example.org", "--store-kind", "postgres", "--store-connection", db.ConnectionString);

    private static async Task<TrustBundle> BundleOfAsync(ServerProcess s)
    {
        var r = await s.WritAsync("bundle", "show", "--format", "spiffe");
        Assert.True(r.ExitCode == 0, r.ToString());
        return TrustBundle.ParseSpiffeJson(TrustDomain.Parse("example.org"), r.Stdout);
    }

    private static async Task<string> ServerIdOfAsync(ServerProcess s)
    {
        var r = await s.WritAsync("healthcheck", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("server_id").GetString()!;
    }

    private static async Task<TrustBundle> BundleWithAsync(ServerProcess s, int authorities) =>
        await WorkloadTools.EventuallyAsync(async () =>
        {
            var b = await BundleOfAsync(s);
            Assert.True(b.X509Authorities.Count == authorities && b.JwtAuthorities.Count == authorities,
                $"{b.X509Authorities.Count} X.509 authorities and {b.JwtAuthorities.Count} JWT keys, expected {authorities} of each");
            return b;
        }, Deadline, $"a bundle with {authorities} authorities from each kind");

    [Fact]
    public async Task Three_servers_started_at_once_share_one_bundle_and_serve_each_others_agents()
    {
        await using var db = await PgDatabase.CreateAsync();
        using var dir = new TempDir();
        await using var a = NewServer(dir, "a", db);
        await using var b = NewServer(dir, "b", db);
        await using var c = NewServer(dir, "c", db);
        // At once, on an empty database: migrations, journals and bundle publications race; no key may be lost.
        await Task.WhenAll(a.StartAsync(), b.StartAsync(), c.StartAsync());

        var ids = new[] { await ServerIdOfAsync(a), await ServerIdOfAsync(b), await ServerIdOfAsync(c) };
        Assert.Equal(3, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Matches("^s-[0-9a-f]{16}$", id));
        Assert.Contains($"server_id={ids[0]}", a.Stdout.Text, StringComparison.Ordinal);
        Assert.Equal(ids[0], (await File.ReadAllTextAsync(Path.Combine(a.DataDir, "server-id"))).Trim());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(a.DataDir, "server-id")));

        // Every server's bundle: three X.509 authorities and three JWT keys, the same ones.
        var bundles = new[] { await BundleWithAsync(a, 3), await BundleWithAsync(b, 3), await BundleWithAsync(c, 3) };
        Assert.All(bundles, x => Assert.Equal(bundles[0].X509Authorities.Select(r => r.Thumbprint).Order(), x.X509Authorities.Select(r => r.Thumbprint).Order()));

        // writ server list: the three, each with its own authority and key.
        var list = await a.WritAsync("server", "list", "--output", "json");
        Assert.True(list.ExitCode == 0, list.ToString());
        using (var doc = JsonDocument.Parse(list.Stdout))
        {
            var servers = doc.RootElement.GetProperty("servers").EnumerateArray().ToList();
            Assert.Equal(ids.Order(), servers.Select(s => s.GetProperty("server_id").GetString()).Order());
            Assert.All(servers, s => Assert.Equal("up", s.GetProperty("state").GetString()));
            Assert.Contains(servers, s => s.GetProperty("server_id").GetString() == ids[0] && s.GetProperty("address").GetString() == a.AgentApi);
        }
        var table = await a.WritAsync("server", "list");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("3 server(s)", table.Stdout, StringComparison.Ordinal);

        // An agent attested through A ...
        using var onA = await TestAgent.ConnectAsync(a);
        await onA.AttestAsync(await TestAgent.NewJoinTokenAsync(a));
        var create = await a.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/ha-workload", "--parent-id", onA.AgentId,
            "--selector", "unix:uid:1000", "--output", "json");
        Assert.True(create.ExitCode == 0, create.ToString());
        string entry;
        using (var doc = JsonDocument.Parse(create.Stdout))
        {
            entry = doc.RootElement.GetProperty("id").GetString()!;
        }

        // ... syncs, gets SVIDs and renews through B with its A-issued SVID.
        using var onB = await TestAgent.ConnectAsync(b);
        onB.UseCertificate(onA.Svid);
        using (var stream = onB.Client.Sync(new SyncRequest()))
        {
            using var cts = new CancellationTokenSource(Deadline);
            Assert.True(await stream.ResponseStream.MoveNext(cts.Token));
            Assert.True(stream.ResponseStream.Current.Reset);
            Assert.Equal(3, TrustBundle.ParseSpiffeJson(TrustDomain.Parse("example.org"), stream.ResponseStream.Current.Bundle.SpiffeBundleJson.ToStringUtf8()).X509Authorities.Count);
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var signed = await onB.Client.SignX509SvidsAsync(new SignX509SvidsRequest
        {
            Csrs = { new SvidCsr { EntryId = entry, Csr = ByteString.CopyFrom(Csr.Create(key)), Evidence = TestEvidence.Of() } },
        });
        using var leaf = X509CertificateLoader.LoadCertificate(signed.Svids[0].CertChain[0].ToByteArray());
        // Signed by B's authority, not A's (whose issued the agent's SVID): each server signs with its own key.
        Assert.NotEqual(onA.Svid!.IssuerName.Name, leaf.IssuerName.Name);
        var bundleFromC = await BundleOfAsync(c);
        var v = X509SvidValidator.Validate([leaf], bundleFromC, DateTimeOffset.UtcNow);
        Assert.True(v.IsValid, v.Error);

        // A JWT-SVID minted via B verifies with the bundle from C.
        var jwt = await onB.Client.MintJwtSvidAsync(new MintJwtSvidRequest
        {
            EntryId = entry, Audience = { "https://api.example.org" }, Evidence = TestEvidence.Of(), BoundCertSha256 = TestEvidence.Thumbprint(leaf.RawData),
        });
        var jv = JwtSvidValidator.Validate(jwt.Token, bundleFromC, ["https://api.example.org"], DateTimeOffset.UtcNow);
        Assert.True(jv.IsValid, jv.Error);

        var renewed = await onB.RenewAsync();
        Assert.Equal(onA.AgentId, renewed.SpiffeId);

        // A restarted server keeps its id and its authority.
        var before = await a.WritAsync("server", "list", "--output", "json");
        await a.StopAsync();
        await a.StartAsync();
        Assert.Equal(ids[0], await ServerIdOfAsync(a));
        var after = await a.WritAsync("server", "list", "--output", "json");
        Assert.Equal(AuthoritiesOf(before.Stdout, ids[0]), AuthoritiesOf(after.Stdout, ids[0]));
        await BundleWithAsync(a, 3);
    }

    private static string AuthoritiesOf(string listJson, string id)
    {
        using var doc = JsonDocument.Parse(listJson);
        var s = doc.RootElement.GetProperty("servers").EnumerateArray().Single(x => x.GetProperty("server_id").GetString() == id);
        return s.GetProperty("x509_authorities").GetRawText() + s.GetProperty("jwt_key_ids").GetRawText();
    }

    [Fact]
    public async Task An_edited_server_id_file_refuses_the_start_and_changes_nothing()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["s"]);
        File.SetUnixFileMode(dir["s"], UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await File.WriteAllTextAsync(Path.Combine(dir["s"], "server-id"), "s-../../etc\n");
        var r = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["s"], "--bind", "127.0.0.1:0",
            "--admin-socket", dir["s.sock"]);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("WRIT-HA-SERVER-ID-INVALID", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir["s"], "keys.json")));
    }
}
