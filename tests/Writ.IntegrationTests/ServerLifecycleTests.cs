using System.Diagnostics;
using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>Restarts, crashes, configuration and database failures of a real server process.</summary>
public sealed class ServerLifecycleTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Restart_keeps_the_ca_and_the_entries(bool crash)
    {
        using var dir = new TempDir();
        var server = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = server;
        var created = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/keep", "--parent-id",
            "spiffe://example.org/writ/agent/join_token/x", "--selector", "unix:uid:1", "--output", "json");
        Assert.True(created.ExitCode == 0, created.ToString());
        var bundleBefore = (await server.WritAsync("bundle", "show", "--format", "spiffe")).Stdout;

        if (crash)
        {
            await server.KillAsync();
        }
        else
        {
            await server.StopAsync();
        }
        await server.StartAsync();

        var bundleAfter = (await server.WritAsync("bundle", "show", "--format", "spiffe")).Stdout;
        Assert.Equal(Keys(bundleBefore), Keys(bundleAfter));
        var listed = await server.WritAsync("entry", "list", "--spiffe-id", "spiffe://example.org/keep");
        Assert.Contains("1 entry", listed.Stdout, StringComparison.Ordinal);
    }

    private static string Keys(string bundleJson)
    {
        using var doc = JsonDocument.Parse(bundleJson);
        return string.Join("|", doc.RootElement.GetProperty("keys").EnumerateArray().Select(k => k.GetRawText()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Validate_reports_every_configuration_error_at_once()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["server.json"], """
            { "trust_domain": "Bad_Domain!", "bind": "nowhere", "ca": { "key_type": "dsa-512" }, "max_tll": "1h", "default_x509_ttl": "soon" }
            """);
        var r = await Proc.WritAsync("server", "validate", "--config", dir["server.json"]);
        Assert.Equal(2, r.ExitCode);
        foreach (var expected in (string[])["trust_domain", "bind", "ca.key_type", "unknown key 'max_tll'", "default_x509_ttl"])
        {
            Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
        }
        Assert.Contains("5 problem(s)", r.Stderr, StringComparison.Ordinal);

        var fromFlags = await Proc.WritAsync("server", "validate", "--trust-domain", "example.org", "--data-dir", dir["d"]);
        Assert.True(fromFlags.ExitCode == 0, fromFlags.ToString());
        Assert.Contains("configuration is valid", fromFlags.Stdout, StringComparison.Ordinal);

        var env = await Proc.WritAsync(new Dictionary<string, string?> { ["WRIT_SERVER_TRUST_DOMAIN"] = "env.example" }, "server", "validate", "--data-dir", dir["d"]);
        Assert.Contains("trust domain env.example", env.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Corrupt_database_gives_a_one_line_error_and_is_left_unchanged()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["server"]);
        var db = Path.Combine(dir["server"], "writ.db");
        var garbage = new byte[8192];
        new Random(7).NextBytes(garbage);
        await File.WriteAllBytesAsync(db, garbage);
        var r = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"], "--bind", "127.0.0.1:0");
        Expect.OneLineError(r, "could not start");
        Assert.Equal(garbage, await File.ReadAllBytesAsync(db));
    }

    [Fact]
    public async Task Entry_writes_to_a_locked_database_fail_cleanly_and_write_nothing()
    {
        using var dir = new TempDir();
        var server = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = server;
        var db = Path.Combine(dir["server"], "writ.db");
        var psi = new ProcessStartInfo("sqlite3", [db]) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        using var locker = Process.Start(psi)!;
        await locker.StandardInput.WriteLineAsync("BEGIN EXCLUSIVE; SELECT 'locked';");
        await locker.StandardInput.FlushAsync();
        Assert.Equal("locked", await locker.StandardOutput.ReadLineAsync());
        try
        {
            var r = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/locked", "--parent-id",
                "spiffe://example.org/writ/agent/join_token/x", "--selector", "unix:uid:1");
            Expect.OneLineError(r, "locked");
        }
        finally
        {
            await locker.StandardInput.WriteLineAsync("ROLLBACK;");
            locker.StandardInput.Close();
            await locker.WaitForExitAsync();
        }
        var listed = await server.WritAsync("entry", "list", "--spiffe-id", "spiffe://example.org/locked");
        Assert.Contains("0 entries", listed.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Admin_socket_is_owner_only()
    {
        using var dir = new TempDir();
        var server = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = server;
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(server.AdminSocket));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(dir["server"]));

        // Another user, even handed a path it can reach, is refused by the kernel-checked peer uid.
        var open = Path.Combine(dir.Path, "open");
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(open, (UnixFileMode)0b111_111_111);
        var link = Path.Combine(open, "admin.sock");
        var relay = await ServerProcess.StartAsync(Path.Combine(open, "s2"), "example.org", "--admin-socket", link);
        await using var __ = relay;
        File.SetUnixFileMode(link, (UnixFileMode)0b110_110_110);   // an operator's mistake: socket world-writable
        // The same raw HTTP/2 probe as the owner (answered with SETTINGS) and as 'nobody' (connection dropped).
        const string probe = """
            import socket, sys
            data = b""
            try:
                s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
                while len(data) < 9:
                    chunk = s.recv(64)
                    if not chunk: break
                    data += chunk
            except OSError:
                pass
            print("answered" if len(data) >= 9 else "dropped")
            """;
        var asOwner = await Proc.RunAsync("/usr/bin/python3", ["-c", probe, link]);
        Assert.Equal("answered", asOwner.Stdout.Trim());
        var asNobody = await Proc.RunAsync("runuser", ["-u", "nobody", "--", "/usr/bin/python3", "-c", probe, link]);
        Assert.Equal("dropped", asNobody.Stdout.Trim());
        Assert.Contains("is not the server's uid", relay.Stderr.Text, StringComparison.Ordinal);
    }

    /// <summary>The whole server on PostgreSQL (the HA store): entries and the CA survive a restart, as on SQLite.</summary>
    [Fact]
    public async Task Server_runs_on_postgresql()
    {
        var admin = Writ.Tests.Shared.TestPostgresGate.ConnectionString();
        var db = "writ_it_" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        await using (var conn = new Npgsql.NpgsqlConnection(admin))
        {
            await conn.OpenAsync();
            await using var cmd = new Npgsql.NpgsqlCommand($"CREATE DATABASE {db}", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        var connection = new Npgsql.NpgsqlConnectionStringBuilder(admin) { Database = db }.ConnectionString;
        using var dir = new TempDir();
        var server = await ServerProcess.StartAsync(dir["server"], "example.org", "--store-kind", "postgres", "--store-connection", connection);
        await using var _ = server;
        var health = await server.WritAsync("healthcheck", "--output", "json");
        Assert.Contains("\"store\": \"postgres\"", health.Stdout, StringComparison.Ordinal);
        var created = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/pg", "--parent-id",
            "spiffe://example.org/writ/agent/join_token/x", "--selector", "unix:uid:1");
        Assert.True(created.ExitCode == 0, created.ToString());
        var before = (await server.WritAsync("bundle", "show", "--format", "spiffe")).Stdout;
        await server.KillAsync();
        await server.StartAsync();
        Assert.Equal(Keys(before), Keys((await server.WritAsync("bundle", "show", "--format", "spiffe")).Stdout));
        Assert.Contains("1 entry", (await server.WritAsync("entry", "list", "--spiffe-id", "spiffe://example.org/pg")).Stdout, StringComparison.Ordinal);
        // The same join token cannot be used twice even though PostgreSQL, not SQLite, holds it.
        using var agent = await TestAgent.ConnectAsync(server);
        var token = await TestAgent.NewJoinTokenAsync(server);
        await agent.AttestAsync(token);
        var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => agent.AttestAsync(token));
        Assert.Equal(Grpc.Core.StatusCode.PermissionDenied, e.StatusCode);
    }
}
