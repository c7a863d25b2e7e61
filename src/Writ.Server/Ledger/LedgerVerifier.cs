using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>What is wrong with a ledger: the first record found bad and a one-line message that says what to do.</summary>
public sealed record LedgerProblem(long Seq, string Message);

/// <summary>
/// Recomputes the hash chain record by record (feed them in seq order with <see cref="Add"/>, then call
/// <see cref="Finish"/>): seq continuity, each record's link to the previous hash, and each record's own hash. Holds
/// only the previous record, so a ledger of any size streams through it. Stops at the first problem.
/// </summary>
public sealed class LedgerVerifier
{
    private long _expected;
    private byte[] _prev;
    private readonly bool _fromAnchor;

    /// <summary>Verifies from record 1 (previous hash = genesis).</summary>
    public LedgerVerifier()
    {
        _expected = 1;
        _prev = LedgerHash.Genesis;
    }

    /// <summary>
    /// Verifies a part of the ledger that starts after an export's --after: the first record's previous hash is taken
    /// as given (it can only be checked against an earlier export or anchor).
    /// </summary>
    public static LedgerVerifier FromFirstRecord() => new(fromAnchor: true);

    private LedgerVerifier(bool fromAnchor)
    {
        _fromAnchor = fromAnchor;
        _expected = 0;
        _prev = [];
    }

    /// <summary>Records checked and found good so far.</summary>
    public long Checked { get; private set; }

    /// <summary>The seq of the last good record (0 before any).</summary>
    public long LastSeq { get; private set; }

    /// <summary>The hash of the last good record (the genesis hash before any).</summary>
    public byte[] LastHash { get; private set; } = LedgerHash.Genesis;

    /// <summary>The first problem found, or null while the chain is good.</summary>
    public LedgerProblem? Problem { get; private set; }

    /// <summary>Checks the next record; false (and <see cref="Problem"/> set) when it breaks the chain.</summary>
    public bool Add(LedgerEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (Problem is not null)
            return false;
        if (_fromAnchor && _expected == 0)
        {
            _expected = e.Seq;
            _prev = e.PrevHash;
            if (Checkpoint is { } first && e.Seq > first.Seq)
            {
                // The export starts after the checkpoint: it connects to it only if it starts right after it and links
                // to the signed hash. Otherwise its first previous hash (taken as given) could be anything.
                if (e.Seq > first.Seq + 1)
                    return Fail(e.Seq, $"the export starts at record {e.Seq}, after the signed checkpoint of {first.At} at record {first.Seq}: it cannot be checked against the checkpoint; export from record {first.Seq} or earlier (writ audit export --after {first.Seq - 1})");
                if (!e.PrevHash.AsSpan().SequenceEqual(first.Hash))
                    return Fail(e.Seq, $"ledger record {e.Seq} does not link to the signed checkpoint of {first.At} at record {first.Seq} (its previous hash is not the one signed): the chain was rewritten; restore the database from a backup");
            }
        }
        if (e.Seq > _expected)
            return Fail(_expected, e.Seq == _expected + 1
                ? $"ledger record {_expected} is missing (the next record is {e.Seq}): it was deleted; restore the database from a backup"
                : $"ledger records {_expected} to {e.Seq - 1} are missing (the next record is {e.Seq}): they were deleted; restore the database from a backup");
        if (e.Seq < _expected)
            return Fail(e.Seq, $"ledger record {e.Seq} appears again after record {_expected - 1}: records were duplicated or reordered; restore the database from a backup");
        if (e.PrevHash.Length != LedgerHash.Size || e.Hash.Length != LedgerHash.Size)
            return Fail(e.Seq, $"ledger record {e.Seq} has a hash of the wrong length: it was altered; restore the database from a backup");
        if (!e.PrevHash.AsSpan().SequenceEqual(_prev))
            return Fail(e.Seq, e.Seq == 1
                ? "ledger record 1 does not start the chain (its previous hash is not the genesis hash): it was altered; restore the database from a backup"
                : $"ledger record {e.Seq} does not link to record {e.Seq - 1} (its previous hash differs): one of the two was altered; restore the database from a backup");
        if (!LedgerHash.Compute(e, e.PrevHash).AsSpan().SequenceEqual(e.Hash))
            return Fail(e.Seq, $"ledger record {e.Seq} was altered (its hash does not match its contents): restore the database from a backup");
        _prev = e.Hash;
        _expected = e.Seq + 1;
        LastSeq = e.Seq;
        LastHash = e.Hash;
        Checked++;
        if (Anchor is not null && AnchorSeq is null && e.Hash.AsSpan().SequenceEqual(Anchor))
            AnchorSeq = e.Seq;
        if (Checkpoint is { } cp && e.Seq == cp.Seq && !e.Hash.AsSpan().SequenceEqual(cp.Hash))
            return Fail(e.Seq, $"ledger record {e.Seq} differs from the signed checkpoint of {cp.At} (its hash is not the one signed): the chain was rewritten; restore the database from a backup");
        return true;
    }

    /// <summary>
    /// Checks the end of the chain against the head the store keeps (null when there is none, e.g. an export file):
    /// the last record must be the head's seq and carry its hash.
    /// </summary>
    public bool Finish(LedgerHead? head)
    {
        if (Problem is not null)
            return false;
        if (Checkpoint is { } cp && LastSeq < cp.Seq)
            return Fail(LastSeq + 1, $"the ledger ends at record {LastSeq}, but a signed checkpoint of {cp.At} says record {cp.Seq} existed: records were deleted (or the ledger emptied and its head reset); restore the database from a backup");
        if (head is null)
            return true;
        if (head.Seq > LastSeq)
            return Fail(LastSeq + 1, head.Seq == LastSeq + 1
                ? $"ledger record {LastSeq + 1} is missing: the ledger head says record {head.Seq} is the last, but the ledger ends at {LastSeq}; records were deleted from the end; restore the database from a backup"
                : $"ledger records {LastSeq + 1} to {head.Seq} are missing: the ledger head says record {head.Seq} is the last, but the ledger ends at {LastSeq}; records were deleted from the end; restore the database from a backup");
        if (head.Seq < LastSeq)
            return Fail(head.Seq + 1, $"the ledger head says record {head.Seq} is the last, but records up to {LastSeq} exist: the head or the records were altered; restore the database from a backup");
        if (!head.Hash.AsSpan().SequenceEqual(LastHash))
            return Fail(head.Seq, $"ledger record {head.Seq} does not match the ledger head's hash: the record or the head was altered; restore the database from a backup");
        return true;
    }

    /// <summary>
    /// An anchor: a head hash exported earlier. <see cref="AnchorSeq"/> is set when a good record carries it, which
    /// proves the chain up to that record is the one anchored (it was not rewritten wholesale since).
    /// </summary>
    public byte[]? Anchor { get; set; }

    /// <summary>
    /// A signed checkpoint (its signature already checked; set it before the first <see cref="Add"/>): the chain must
    /// reach its seq (checked by <see cref="Finish"/>) and the record there must carry its hash. A part that starts
    /// after its seq must start right after it, with the checkpoint's hash as its first previous hash.
    /// </summary>
    public LedgerCheckpoint? Checkpoint { get; set; }

    /// <summary>The seq of the good record that carries <see cref="Anchor"/>, or null.</summary>
    public long? AnchorSeq { get; private set; }

    private bool Fail(long seq, string message)
    {
        Problem = new LedgerProblem(seq, message);
        return false;
    }
}
