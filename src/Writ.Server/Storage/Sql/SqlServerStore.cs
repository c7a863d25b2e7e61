namespace Writ.Server.Storage.Sql;

/// <summary>The servers sharing the store (issue #16): a row per server id, its heartbeat updated each rotation pass.</summary>
internal sealed class SqlServerStore(Db db) : IServerStore
{
    public Task StartedAsync(ServerRecord server, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(server);
        Codec.RequireKey(server.ServerId, "server id");
        return db.WriteAsync("record server start", (conn, tx) => Db.ExecuteAsync(conn, tx, """
            INSERT INTO servers (server_id, address, started_at_us, last_seen_us, boot_nonce) VALUES (@id, @address, @started, @seen, @nonce)
            ON CONFLICT (server_id) DO UPDATE SET address = excluded.address, started_at_us = excluded.started_at_us, last_seen_us = excluded.last_seen_us,
                boot_nonce = excluded.boot_nonce
            """, ct, ("id", server.ServerId), ("address", server.Address ?? ""), ("started", Time.ToMicros(server.StartedAt)), ("seen", Time.ToMicros(server.LastSeen)),
            ("nonce", server.BootNonce ?? "")), ct);
    }

    /// <summary>What a server that found another's nonce writes, so that the other one finds it too.</summary>
    internal const string DuplicateMark = "duplicate";

    public Task<bool> HeartbeatAsync(string serverId, string bootNonce, DateTimeOffset at, CancellationToken ct)
    {
        Codec.RequireKey(serverId, "server id");
        ArgumentNullException.ThrowIfNull(bootNonce);
        return db.WriteAsync("server heartbeat", async (conn, tx) =>
        {
            if (await Db.ExecuteAsync(conn, tx, "UPDATE servers SET last_seen_us = @seen WHERE server_id = @id AND boot_nonce = @nonce", ct,
                ("id", serverId), ("seen", Time.ToMicros(at)), ("nonce", bootNonce)).ConfigureAwait(false) > 0)
            {
                return true;
            }
            // Another live process with this id wrote its nonce after ours (or found ours and marked the row): mark it, so
            // that one stops too — neither knows which copy is the rightful one.
            await Db.ExecuteAsync(conn, tx, "UPDATE servers SET boot_nonce = @mark WHERE server_id = @id", ct, ("id", serverId), ("mark", DuplicateMark)).ConfigureAwait(false);
            return false;
        }, ct);
    }

    public Task<IReadOnlyList<ServerRecord>> ListAsync(CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<ServerRecord>>("list servers", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, "SELECT server_id, address, started_at_us, last_seen_us FROM servers ORDER BY server_id",
                r => new ServerRecord(r.GetString(0), r.GetString(1), Time.FromMicros(r.GetInt64(2)), Time.FromMicros(r.GetInt64(3))), ct).ConfigureAwait(false), ct);

    public Task PublishCrlsAsync(string serverId, IReadOnlyList<ServerCrl> crls, CancellationToken ct)
    {
        Codec.RequireKey(serverId, "server id");
        ArgumentNullException.ThrowIfNull(crls);
        return db.WriteAsync("publish server CRLs", async (conn, tx) =>
        {
            await Db.ExecuteAsync(conn, tx, "DELETE FROM server_crls WHERE server_id = @id", ct, ("id", serverId)).ConfigureAwait(false);
            foreach (var c in crls)
            {
                Codec.RequireKey(c.AuthorityKeyId, "authority key id");
                await Db.ExecuteAsync(conn, tx, """
                    INSERT INTO server_crls (server_id, authority_key_id, crl_der, next_update_us) VALUES (@id, @akid, @der, @next)
                    """, ct, ("id", serverId), ("akid", c.AuthorityKeyId), ("der", c.Der), ("next", Time.ToMicros(c.NextUpdate))).ConfigureAwait(false);
            }
            return 0;
        }, ct);
    }

    public Task<IReadOnlyList<ServerCrl>> ListCrlsAsync(DateTimeOffset now, CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<ServerCrl>>("list server CRLs", async (conn, tx) =>
            await Db.QueryAsync(conn, tx, """
                SELECT server_id, authority_key_id, crl_der, next_update_us FROM server_crls WHERE next_update_us > @now ORDER BY server_id, authority_key_id
                """, r => new ServerCrl(r.GetString(0), r.GetString(1), (byte[])r.GetValue(2), Time.FromMicros(r.GetInt64(3))), ct, ("now", Time.ToMicros(now))).ConfigureAwait(false), ct);
}
