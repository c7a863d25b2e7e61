namespace Writ.IntegrationTests.Harness;

/// <summary>
/// A fresh PostgreSQL database for one test (several servers may share it: the HA store), on the server in
/// <c>WRIT_TEST_PG</c> (./test.sh starts one). Dropped on dispose, with whatever connections are still open.
/// </summary>
public sealed class PgDatabase : IAsyncDisposable
{
    private readonly string _admin;

    private PgDatabase(string admin, string name)
    {
        _admin = admin;
        Name = name;
        ConnectionString = new Npgsql.NpgsqlConnectionStringBuilder(admin) { Database = name, Pooling = false }.ConnectionString;
    }

    public string Name { get; }

    /// <summary>The Npgsql connection string of the new database (give it to <c>--store-connection</c>).</summary>
    public string ConnectionString { get; }

    public static async Task<PgDatabase> CreateAsync(string prefix = "writ_it_")
    {
        var admin = Writ.Tests.Shared.TestPostgresGate.ConnectionString();
        var name = prefix + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        await using (var conn = new Npgsql.NpgsqlConnection(admin))
        {
            await conn.OpenAsync();
            await using var cmd = new Npgsql.NpgsqlCommand($"CREATE DATABASE {name}", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        return new PgDatabase(admin, name);
    }

    /// <summary>Runs one SQL statement on the database and returns the first column of the first row (or null).</summary>
    public async Task<object?> ScalarAsync(string sql)
    {
        await using var conn = new Npgsql.NpgsqlConnection(ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new Npgsql.NpgsqlCommand(sql, conn);
        var v = await cmd.ExecuteScalarAsync();
        return v is DBNull ? null : v;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await using var conn = new Npgsql.NpgsqlConnection(_admin);
            await conn.OpenAsync();
            await using var cmd = new Npgsql.NpgsqlCommand($"DROP DATABASE IF EXISTS {Name} WITH (FORCE)", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        catch (Npgsql.NpgsqlException)
        {
            // PostgreSQL may already be gone (a test that stopped it); the throwaway cluster is removed with the run.
        }
    }
}
