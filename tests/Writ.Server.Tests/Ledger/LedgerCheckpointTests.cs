using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ledger;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;

namespace Writ.Server.Tests.Ledger;

/// <summary>
/// Issue #12 item 9: signed checkpoints kept outside the database. Someone who can rewrite the database (empty the
/// ledger, cut its tail, reset the head) cannot make the ledger verify against the newest checkpoint.
/// </summary>
public sealed class LedgerCheckpointTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task AppendAsync(IWritStore store, int n, string actor = "uid:0")
    {
        for (var i = 0; i < n; i++)
            await store.Ledger.AppendAsync([new LedgerEvent { At = CaHarness.Start, Kind = "entry.created", Actor = actor, Subject = $"e-{i}" }], [], Ct);
    }

    private static async Task<LedgerVerifier> VerifyAsync(IWritStore store, LedgerCheckpoint? checkpoint)
    {
        var v = new LedgerVerifier { Checkpoint = checkpoint };
        foreach (var e in await store.Ledger.ListAsync(0, 5000, null, null, Ct))
            v.Add(e);
        v.Finish(await store.Ledger.HeadAsync(Ct));
        return v;
    }

    [Fact]
    public async Task The_head_is_signed_with_a_key_in_the_data_dir_and_the_checkpoint_verifies_from_the_file()
    {
        await using var h = await CaHarness.CreateAsync();
        using var c = new LedgerCheckpointer(h.Dir, h.Store.Ledger, h.Time, NullLogger.Instance);
        c.Initialize();
        Assert.Null(await c.CheckpointAsync(Ct));   // an empty ledger has nothing to sign
        await AppendAsync(h.Store, 3);
        var signed = await c.CheckpointAsync(Ct);
        Assert.NotNull(signed);
        Assert.Equal(3, signed.Seq);
        Assert.Null(await c.CheckpointAsync(Ct));   // the head did not move: no new checkpoint

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(c.KeyPath));
        using var pub = LedgerCheckpoint.ReadPublicKey(c.PublicKeyPath);
        var read = LedgerCheckpoint.ReadNewest(c.FilePath, pub, out var error);
        Assert.Null(error);
        Assert.Equal(signed.Hash, read!.Hash);
        Assert.Null((await VerifyAsync(h.Store, read)).Problem);

        // A restarted server reads the same key and the same newest checkpoint.
        using var again = new LedgerCheckpointer(h.Dir, h.Store.Ledger, h.Time, NullLogger.Instance);
        again.Initialize();
        Assert.Equal(3, again.Newest!.Seq);
    }

    [Fact]
    public async Task An_emptied_ledger_with_a_reset_head_fails_against_the_checkpoint_and_is_never_signed_over()
    {
        await using var h = await CaHarness.CreateAsync();
        using var c = new LedgerCheckpointer(h.Dir, h.Store.Ledger, h.Time, NullLogger.Instance);
        c.Initialize();
        await AppendAsync(h.Store, 5);
        var cp = await c.CheckpointAsync(Ct);

        // The attacker empties the table and resets the head: the chain alone is "0 records, intact".
        await using (var conn = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={h.DbPath};Pooling=False"))
        {
            await conn.OpenAsync(Ct);
            using var cmd = conn.CreateCommand();
            cmd.CommandText = "DELETE FROM ledger; UPDATE ledger_head SET seq = 0, hash = zeroblob(32);";
            await cmd.ExecuteNonQueryAsync(Ct);
        }
        var store = h.Store;
        Assert.Null((await VerifyAsync(store, null)).Problem);
        var v = await VerifyAsync(store, cp);
        Assert.Contains("the ledger ends at record 0, but a signed checkpoint", v.Problem!.Message, StringComparison.Ordinal);

        // New records on the emptied ledger reach past the checkpoint's seq, but not its chain: still refused, never signed.
        using var c2 = new LedgerCheckpointer(h.Dir, store.Ledger, h.Time, NullLogger.Instance);
        c2.Initialize();
        await AppendAsync(store, 7, actor: "uid:666");
        Assert.Null(await c2.CheckpointAsync(Ct));
        Assert.Equal(5, c2.ReadNewest(out _)!.Seq);
        Assert.Contains("differs from the signed checkpoint", (await VerifyAsync(store, cp)).Problem!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_checkpoint_forged_with_another_key_or_a_trimmed_file_is_refused()
    {
        await using var h = await CaHarness.CreateAsync();
        using var c = new LedgerCheckpointer(h.Dir, h.Store.Ledger, h.Time, NullLogger.Instance);
        c.Initialize();
        await AppendAsync(h.Store, 2);
        await c.CheckpointAsync(Ct);

        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var forged = LedgerCheckpoint.Sign(other, 1, new byte[32], 0);
        await File.AppendAllTextAsync(c.FilePath, forged.ToLine() + "\n", Ct);
        Assert.Null(c.ReadNewest(out var error));
        Assert.Contains("signature does not verify", error, StringComparison.Ordinal);

        // Removing the checkpoints the server signed is noticed too.
        await File.WriteAllTextAsync(c.FilePath, "", Ct);
        Assert.Null(c.ReadNewest(out error));
        Assert.Contains("lost checkpoints this server signed", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)] // the file deleted
    [InlineData(true)]  // the file cut back to an older checkpoint
    public async Task A_checkpoints_file_deleted_or_cut_back_while_running_is_not_repaired_silently(bool cutBack)
    {
        await using var h = await CaHarness.CreateAsync();
        var log = new CapturingLogger<LedgerCheckpointer>();
        using var c = new LedgerCheckpointer(h.Dir, h.Store.Ledger, h.Time, log);
        c.Initialize();
        await AppendAsync(h.Store, 2);
        await c.CheckpointAsync(Ct);
        var older = await File.ReadAllTextAsync(c.FilePath, Ct);
        await AppendAsync(h.Store, 2);
        Assert.Equal(4, (await c.CheckpointAsync(Ct))!.Seq);
        var full = await File.ReadAllTextAsync(c.FilePath, Ct);

        if (cutBack)
            await File.WriteAllTextAsync(c.FilePath, older, Ct);
        else
            File.Delete(c.FilePath);
        await AppendAsync(h.Store, 3);

        // Every interval refuses (event 1621, saying what to do) and writes nothing, until the operator acts.
        for (var i = 0; i < 2; i++)
        {
            Assert.Null(await c.CheckpointAsync(Ct));
            Assert.Equal(cutBack ? older : null, File.Exists(c.FilePath) ? await File.ReadAllTextAsync(c.FilePath, Ct) : null);
        }
        var refused = log.Entries.Where(e => e.Id.Id == 1621).Select(e => e.Message).ToList();
        Assert.Equal(2, refused.Count);
        Assert.All(refused, m => Assert.Contains("lost checkpoints this server signed (newest was record 4): restore it from a backup", m, StringComparison.Ordinal));
        Assert.Equal(4, c.Newest!.Seq);

        // The operator restores the file: checkpoints go on from it.
        await File.WriteAllTextAsync(c.FilePath, full, Ct);
        Assert.Equal(7, (await c.CheckpointAsync(Ct))!.Seq);
    }
}
