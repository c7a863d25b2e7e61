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
    public async Task Tpm_settings_without_ek_trust_or_with_an_empty_ca_dir_refuse_the_start_with_their_codes()
    {
        using var dir = new TempDir();
        var noTrust = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"], "--bind", "127.0.0.1:0",
            "--admin-socket", dir["admin.sock"], "--tpm-requote-interval", "30s");
        Assert.Equal(2, noTrust.ExitCode);
        Assert.StartsWith("error: WRIT-CONFIG-TPM-NO-EK-TRUST: ", noTrust.Stderr.Trim(), StringComparison.Ordinal);
        Assert.Single(noTrust.Stderr.Trim().Split('\n'));
        Assert.False(Directory.Exists(dir["server"]), "a refused start created the data dir");

        Directory.CreateDirectory(dir["empty-ca"]);
        var emptyDir = await Proc.WritAsync("server", "validate", "--trust-domain", "example.org", "--tpm-ek-ca-dir", dir["empty-ca"]);
        Assert.Equal(2, emptyDir.ExitCode);
        Assert.Contains("error: WRIT-CONFIG-TPM-EK-CA-DIR: ", emptyDir.Stderr, StringComparison.Ordinal);

        var hashes = await Proc.WritAsync("server", "validate", "--trust-domain", "example.org", "--data-dir", dir["d"], "--tpm-ek-hashes", new string('a', 64));
        Assert.True(hashes.ExitCode == 0, hashes.ToString());
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

    // ------------------------------------------------------------------ issue #11: restarts, one server per data dir

    /// <summary>Far below the ~31 s a sync stream used to hold the shutdown, generous for a loaded machine.</summary>
    private static readonly TimeSpan ExitDeadline = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Sigterm_with_an_agent_connected_exits_within_the_grace_and_signs_nothing_after_stopping()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/held", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);   // the agent's sync stream is open and has delivered

        rig.Server.Terminate();
        Assert.Equal(0, await rig.Server.WaitForExitAsync(ExitDeadline));

        var log = rig.Server.Stderr.Text.Split('\n');
        var stopping = Array.FindIndex(log, l => l.Contains("[1001]", StringComparison.Ordinal));
        Assert.True(stopping >= 0, "no 'stopping' line:\n" + rig.Server.Stderr.Text);
        Assert.DoesNotContain(log.Skip(stopping), l => l.Contains("CRL", StringComparison.Ordinal) && l.Contains("signed", StringComparison.Ordinal));
        Assert.False(File.Exists(rig.Server.AdminSocket), "a cleanly stopped server removes its own admin socket");
        Assert.False(rig.Agent.HasExited, "a server stopping must not stop the agent:\n" + rig.Agent.Stderr.Text);
    }

    [Fact]
    public async Task A_second_server_on_the_same_data_dir_or_sqlite_file_is_refused_in_one_line_and_creates_nothing()
    {
        using var dir = new TempDir();
        var first = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = first;

        // Same data dir, another admin socket (so the socket check cannot be what refuses it).
        var sameDir = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["server"],
            "--bind", "127.0.0.1:0", "--admin-socket", dir["other.sock"]);
        Expect.OneLineError(sameDir, "WRIT-SERVER-DATA-DIR-IN-USE");
        Assert.Equal(1, sameDir.ExitCode);
        Assert.False(File.Exists(dir["other.sock"]));

        // Another data dir and admin socket, the same SQLite file.
        var sameDb = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["second"],
            "--bind", "127.0.0.1:0", "--admin-socket", dir["second.sock"], "--store-connection", Path.Combine(dir["server"], "writ.db"));
        Expect.OneLineError(sameDb, "WRIT-SERVER-STORE-IN-USE");
        Assert.Equal(1, sameDb.ExitCode);
        Assert.Equal("writ.lock", Path.GetFileName(Assert.Single(Directory.GetFileSystemEntries(dir["second"]))));   // its own lock only
        Assert.False(File.Exists(dir["second.sock"]));

        // The first server is untouched and still managed through its own socket.
        var listed = await first.WritAsync("entry", "list");
        Assert.True(listed.ExitCode == 0, listed.ToString());
    }

    [Fact]
    public async Task An_old_server_exiting_leaves_a_newer_admin_socket_in_place()
    {
        using var dir = new TempDir();
        var old = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = old;
        // Another server has taken the path meanwhile (here: the test binds a new socket there).
        File.Delete(old.AdminSocket);
        using var newer = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        newer.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(old.AdminSocket));
        newer.Listen();
        var newInode = await InodeAsync(old.AdminSocket);

        old.Terminate();
        Assert.Equal(0, await old.WaitForExitAsync(ExitDeadline));
        Assert.True(File.Exists(old.AdminSocket), "the old server deleted the newer server's admin socket");
        Assert.Equal(newInode, await InodeAsync(old.AdminSocket));
    }

    private static async Task<string> InodeAsync(string path)
    {
        var r = await Proc.RunAsync("stat", ["-c", "%d:%i", path]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }

    [Fact]
    public async Task Another_trust_domain_on_existing_data_is_refused_naming_both_and_nothing_is_written()
    {
        using var dir = new TempDir();
        var server = await ServerProcess.StartAsync(dir["server"]);
        await using (server)
        {
            var created = await server.WritAsync("entry", "create", "--spiffe-id", "spiffe://example.org/a", "--parent-id",
                "spiffe://example.org/writ/agent/join_token/x", "--selector", "unix:uid:1");
            Assert.True(created.ExitCode == 0, created.ToString());
            server.Terminate();
            Assert.Equal(0, await server.WaitForExitAsync(ExitDeadline));
        }
        var db = Path.Combine(dir["server"], "writ.db");
        var ledgerBefore = await LedgerAsync(db);
        var keysBefore = await File.ReadAllBytesAsync(Path.Combine(dir["server"], "keys.json"));

        var r = await Proc.WritAsync("server", "run", "--trust-domain", "other.org", "--data-dir", dir["server"], "--bind", "127.0.0.1:0");
        Expect.OneLineError(r, "WRIT-SERVER-TRUST-DOMAIN-MISMATCH");
        Assert.Contains("example.org", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("other.org", r.Stderr, StringComparison.Ordinal);
        Assert.Equal(ledgerBefore, await LedgerAsync(db));
        Assert.Equal(keysBefore, await File.ReadAllBytesAsync(Path.Combine(dir["server"], "keys.json")));
        Assert.False(File.Exists(Path.Combine(dir["server"], "admin.sock")));

        // The data's own trust domain still starts.
        var again = await ServerProcess.StartAsync(dir["server"]);
        await using var _ = again;
        Assert.Contains("1 entry", (await again.WritAsync("entry", "list")).Stdout, StringComparison.Ordinal);
    }

    /// <summary>Every ledger record (seq, kind, subject), read with the sqlite3 tool.</summary>
    private static async Task<string> LedgerAsync(string db)
    {
        var r = await Proc.RunAsync("sqlite3", [db, "SELECT count(*) FROM ledger; SELECT seq, kind, subject FROM ledger ORDER BY seq;"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.False(r.Stdout.StartsWith("0\n", StringComparison.Ordinal), "the ledger is empty: nothing to compare");
        return r.Stdout;
    }

    [Fact]
    public async Task Port_in_use_is_one_line_with_a_code_and_creates_no_ca_database_or_keys()
    {
        using var dir = new TempDir();
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;

        var r = await Proc.WritAsync("server", "run", "--trust-domain", "example.org", "--data-dir", dir["fresh"],
            "--bind", $"127.0.0.1:{port}");
        Expect.OneLineError(r, "WRIT-SERVER-PORT-IN-USE");
        Assert.Contains($"127.0.0.1:{port}", r.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, r.ExitCode);
        // The data dir may exist (it is locked first, with a lock file), but nothing else is in it: no database, no key
        // file, no socket. (The SQLite lock file, writ.db.lock, is taken before the port too.)
        string[] left = Directory.Exists(dir["fresh"]) ? Directory.GetFileSystemEntries(dir["fresh"]) : [];
        Assert.Empty(left.Select(Path.GetFileName).Except(["writ.lock", "writ.db.lock"]));
    }
}
