using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>
/// Signs the ledger head periodically (<c>ledger.checkpoint_interval</c>) with <c>checkpoint.key</c> and appends the
/// checkpoint to <c>checkpoints.jsonl</c>, both in the data dir and never in the database, and logs each one (event
/// 1620) so the log stream keeps copies too. A new checkpoint is signed only when the ledger still holds the previous
/// one's record with its hash: a ledger that became shorter than, or differs from, the newest checkpoint is reported
/// (event 1621) and never signed over, so <c>writ audit verify</c> keeps failing until the database is restored. Nor is
/// anything appended while the file lost the newest checkpoint signed (deleted or cut back while running): event 1621
/// every interval until the file is restored (or the server restarted to start a new series on purpose).
/// </summary>
public sealed class LedgerCheckpointer : IDisposable
{
    public const string KeyFile = "checkpoint.key";
    public const string PublicKeyFile = "checkpoint.pub";
    public const string File = "checkpoints.jsonl";
    /// <summary>The file keeps at least this many newest checkpoints (it is trimmed when it holds twice as many).</summary>
    public const int Keep = 1000;

    private readonly ILedgerStore _ledger;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private ECDsa? _key;
    private int _lines;

    public LedgerCheckpointer(string dataDir, ILedgerStore ledger, TimeProvider time, ILogger log)
    {
        DataDir = dataDir;
        _ledger = ledger;
        _time = time;
        _log = log;
    }

    public string DataDir { get; }
    public string FilePath => Path.Combine(DataDir, File);
    public string KeyPath => Path.Combine(DataDir, KeyFile);
    public string PublicKeyPath => Path.Combine(DataDir, PublicKeyFile);

    /// <summary>The newest checkpoint signed (or found in the file at start-up), or null.</summary>
    public LedgerCheckpoint? Newest { get; private set; }

    /// <summary>Loads or creates the key (0600) and reads the checkpoints file. Misconfiguration throws with what to do.</summary>
    public void Initialize()
    {
        _key = LoadOrCreateKey();
        if (!System.IO.File.Exists(PublicKeyPath))
            System.IO.File.WriteAllText(PublicKeyPath, _key.ExportSubjectPublicKeyInfoPem() + "\n");
        if (System.IO.File.Exists(FilePath))
        {
            Newest = LedgerCheckpoint.ReadNewest(FilePath, _key, out var error);
            if (error is not null)
                throw new InvalidOperationException($"{error}; restore {File} from a backup (or move it away to start a new series)");
            _lines = System.IO.File.ReadLines(FilePath).Count();
        }
    }

    /// <summary>
    /// The newest checkpoint as the file holds it now, signature checked; a file edited since start-up is an error
    /// (<paramref name="error"/>). Read before the ledger head, so a checkpoint is never newer than the head checked.
    /// </summary>
    public LedgerCheckpoint? ReadNewest(out string? error)
    {
        error = null;
        if (_key is null || !System.IO.File.Exists(FilePath))
            return Newest is null ? null : Missing(out error);
        var c = LedgerCheckpoint.ReadNewest(FilePath, _key, out error);
        if (error is null && Newest is { } n && (c is null || c.Seq < n.Seq))
            return Missing(out error);
        return c;
    }

    private LedgerCheckpoint? Missing(out string? error)
    {
        error = $"the checkpoints file {FilePath} lost checkpoints this server signed (newest was record {Newest!.Seq}): restore it from a backup";
        return null;
    }

    /// <summary>Signs the current head when it moved past the newest checkpoint and still contains it.</summary>
    public async Task<LedgerCheckpoint?> CheckpointAsync(CancellationToken ct)
    {
        if (_key is null)
            return null;
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (Newest is not null)
            {
                // The file must still hold the newest checkpoint signed: appending to a deleted or cut-back file would
                // start a new series silently, and a verify against it would then match.
                ReadNewest(out var fileError);
                if (fileError is not null)
                    return Refuse(await _ledger.HeadAsync(ct).ConfigureAwait(false), fileError + FileAdvice);
            }
            var head = await _ledger.HeadAsync(ct).ConfigureAwait(false);
            if (Newest is { } n)
            {
                if (head.Seq < n.Seq)
                    return Refuse(head, $"the ledger ends at record {head.Seq}, before the signed checkpoint at record {n.Seq} ({n.At}): records were deleted");
                if (head.Seq == n.Seq)
                    return head.Hash.AsSpan().SequenceEqual(n.Hash) ? null
                        : Refuse(head, $"ledger record {n.Seq} no longer carries the hash of the signed checkpoint ({n.At}): the chain was rewritten");
                var at = await _ledger.GetAsync(n.Seq, ct).ConfigureAwait(false);
                if (at is null || !at.Hash.AsSpan().SequenceEqual(n.Hash))
                    return Refuse(head, $"ledger record {n.Seq} is missing or no longer carries the hash of the signed checkpoint ({n.At}): the chain was rewritten");
            }
            else if (head.Seq == 0)
            {
                return null;
            }
            var c = LedgerCheckpoint.Sign(_key, head.Seq, head.Hash, _time.GetUtcNow().ToUnixTimeSeconds());
            Append(c);
            Newest = c;
            ServerLog.LedgerCheckpointed(_log, c.Seq, Convert.ToHexStringLower(c.Hash), c.KeyId, Convert.ToBase64String(c.Signature));
            return c;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Checkpoints every interval until stopped, and once more on the way out.</summary>
    public async Task RunAsync(TimeSpan interval, CancellationToken stop)
    {
        await TryCheckpointAsync(stop).ConfigureAwait(false);
        using var timer = new PeriodicTimer(interval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
                await TryCheckpointAsync(stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        await TryCheckpointAsync(CancellationToken.None).ConfigureAwait(false);
    }

    private async Task TryCheckpointAsync(CancellationToken ct)
    {
        try
        {
            await CheckpointAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            ServerLog.LedgerCheckpointFailed(_log, e.Message);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private LedgerCheckpoint? Refuse(LedgerHead head, string why)
    {
        ServerLog.LedgerCheckpointRefused(_log, head.Seq, why.EndsWith(FileAdvice, StringComparison.Ordinal) ? why
            : why + "; no checkpoint is signed until the database is restored from a backup");
        return null;
    }

    private const string FileAdvice = " (the 1620 log lines hold a copy of each); no checkpoint is signed until it is restored, or until the server is restarted to start a new series on purpose (writ audit verify against the old checkpoints then fails)";

    private void Append(LedgerCheckpoint c)
    {
        if (_lines >= 2 * Keep)
        {
            // Keep the newest ones: write them to a new file and rename it over the old one (atomic).
            var keep = System.IO.File.ReadLines(FilePath).Where(l => l.Length > 0).TakeLast(Keep - 1).Append(c.ToLine()).ToList();
            var tmp = FilePath + ".tmp";
            System.IO.File.WriteAllLines(tmp, keep);
            System.IO.File.Move(tmp, FilePath, overwrite: true);
            _lines = keep.Count;
            return;
        }
        // Only the first checkpoint creates the file: one removed between the check and here is an error, not a new file.
        using var f = new FileStream(FilePath, Newest is null
            ? new FileStreamOptions
            {
                Mode = FileMode.Append,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            }
            : new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Write });
        f.Seek(0, SeekOrigin.End);
        f.Write(System.Text.Encoding.UTF8.GetBytes(c.ToLine() + "\n"));
        f.Flush(flushToDisk: true);
        _lines++;
    }

    private ECDsa LoadOrCreateKey()
    {
        var key = ECDsa.Create();
        try
        {
            if (System.IO.File.Exists(KeyPath))
            {
                var mode = System.IO.File.GetUnixFileMode(KeyPath);
                if ((mode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
                    throw new InvalidOperationException($"{KeyPath} can be read or written by group or others: chmod 600 it");
                key.ImportFromPem(System.IO.File.ReadAllText(KeyPath));
                return key;
            }
            key.GenerateKey(ECCurve.NamedCurves.nistP256);
            using (var f = new FileStream(KeyPath, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }))
            {
                f.Write(System.Text.Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem() + "\n"));
                f.Flush(flushToDisk: true);
            }
            return key;
        }
        catch (ArgumentException e)
        {
            key.Dispose();
            throw new InvalidOperationException($"{KeyPath} is not a PEM EC private key ({e.Message.Split('\n')[0]}): restore it from a backup", e);
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        _key?.Dispose();
        _gate.Dispose();
    }
}
