using System.Net;
using System.Net.Sockets;

namespace Writ.IntegrationTests.Harness;

/// <summary>
/// A PostgreSQL cluster of one test's own (Debian's packages, as ../shared/scripts/pg-start.sh starts them), on a free
/// loopback port and a temp directory, so the test may stop, kill and restart it — never the shared server of
/// <c>WRIT_TEST_PG</c>. As root, the cluster runs as the postgres user (initdb refuses root). Removed on dispose.
/// </summary>
public sealed class PgCluster : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _bin;
    private readonly string[] _as;

    private PgCluster(string bin, int port)
    {
        _bin = bin;
        Port = port;
        _as = Environment.UserName == "root" ? ["runuser", "-u", "postgres", "--"] : [];
    }

    public int Port { get; }

    /// <summary>The Npgsql connection string of its <c>postgres</c> database (no pooling: a test sees every outage).</summary>
    public string ConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Timeout=5";

    public bool Running { get; private set; }

    private string DataDir => Path.Combine(_dir.Path, "data");

    public static async Task<PgCluster> StartAsync()
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin"))
                .Where(d => File.Exists(Path.Combine(d, "initdb"))).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault()
            : null;
        Assert.True(bin is not null, "PostgreSQL (Debian package postgresql) is not installed: the outage tests need initdb and pg_ctl");
        var cluster = new PgCluster(bin!, FreePort());
        try
        {
            File.SetUnixFileMode(cluster._dir.Path, (UnixFileMode)0b111_101_101);
            if (cluster._as.Length > 0)
                (await Proc.RunAsync("chown", ["postgres", cluster._dir.Path])).EnsureOk("chown the cluster directory");
            (await cluster.RunAsync("initdb", "-D", cluster.DataDir, "-A", "trust", "-U", "postgres", "--encoding=UTF8")).EnsureOk("initdb");
            await cluster.StartAgainAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts the (stopped) cluster on the same port and data, and waits until it accepts connections.</summary>
    public async Task StartAgainAsync()
    {
        (await RunAsync("pg_ctl", "-D", DataDir, "-l", Path.Combine(_dir.Path, "server.log"), "-w", "-t", "60", "-o",
            $"-c listen_addresses=127.0.0.1 -p {Port} -k {_dir.Path} -c fsync=off -c max_connections=200", "start")).EnsureOk("pg_ctl start");
        Running = true;
    }

    /// <summary>
    /// Stops the cluster: <c>fast</c> (clients are disconnected, a clean shutdown) or <c>immediate</c> (no shutdown
    /// checkpoint: crash recovery at the next start, as after a power cut).
    /// </summary>
    public async Task StopAsync(string mode = "fast")
    {
        (await RunAsync("pg_ctl", "-D", DataDir, "-m", mode, "-w", "-t", "60", "stop")).EnsureOk("pg_ctl stop");
        Running = false;
    }

    /// <summary>Runs one SQL statement on its postgres database and returns the first column of the first row (or null).</summary>
    public async Task<object?> ScalarAsync(string sql)
    {
        await using var conn = new Npgsql.NpgsqlConnection(ConnectionString + ";Pooling=false");
        await conn.OpenAsync();
        await using var cmd = new Npgsql.NpgsqlCommand(sql, conn);
        var v = await cmd.ExecuteScalarAsync();
        return v is DBNull ? null : v;
    }

    /// <summary>The server's log (for a failure message).</summary>
    public string Log => File.Exists(Path.Combine(_dir.Path, "server.log")) ? File.ReadAllText(Path.Combine(_dir.Path, "server.log")) : "";

    private Task<ProcResult> RunAsync(string tool, params string[] args) =>
        _as.Length == 0
            ? Proc.RunAsync(Path.Combine(_bin, tool), args, timeout: TimeSpan.FromSeconds(90))
            : Proc.RunAsync(_as[0], [.. _as[1..], Path.Combine(_bin, tool), .. args], timeout: TimeSpan.FromSeconds(90));

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (Running)
        {
            try
            {
                await StopAsync("immediate");
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                // Already gone: the directory goes anyway.
            }
        }
        _dir.Dispose();
    }
}

internal static class ProcResultExtensions
{
    public static void EnsureOk(this ProcResult r, string what)
    {
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"{what} failed (exit {r.ExitCode}): {r}");
    }
}
