using Grpc.Core;
using Writ.Protocol.Admin;
using Writ.Server.Ledger;
using Writ.Server.Registration;
using Writ.Server.Storage;

namespace Writ.Server.Api;

/// <summary>The ledger's admin surface: list, show, verify, export.</summary>
public sealed partial class AdminApi
{
    public const int DefaultAuditLimit = 100;
    public const int MaxAuditLimit = 5000;
    private const int AuditPage = 1000;
    /// <summary>Record data per page read or listed: a page stays well under the 16 MiB message limit whatever the records hold.</summary>
    public const long AuditPageBytes = 4 << 20;

    public override async Task<ListAuditResponse> ListAudit(ListAuditRequest request, ServerCallContext context)
    {
        var limit = request.Limit switch
        {
            0 => DefaultAuditLimit,
            < 0 or > MaxAuditLimit => throw new ValidationException($"--limit must be between 1 and {MaxAuditLimit}, got {request.Limit}; page with --after SEQ"),
            var n => n,
        };
        if (request.AfterSeq < 0)
            throw new ValidationException($"--after must be 0 or a record number, got {request.AfterSeq}");
        var ct = context.CancellationToken;
        // The head first: every record listed is then at or before it, or appended later (never a head older than a listed record).
        var head = await server.Store.Ledger.HeadAsync(ct).ConfigureAwait(false);
        // One more than asked tells whether more follow; the byte budget keeps the answer under the message limit.
        var events = await server.Store.Ledger.ListPageAsync(request.AfterSeq, limit + 1, AuditPageBytes, NullIfEmpty(request.Kind), NullIfEmpty(request.Subject), ct).ConfigureAwait(false);
        var more = events.Count > limit || events.Sum(e => (long)e.DataJson.Length) >= AuditPageBytes;
        var response = new ListAuditResponse { HeadSeq = head.Seq, HeadHash = Convert.ToHexStringLower(head.Hash), More = more };
        response.Events.AddRange(events.Take(limit).Select(ToProto));
        return response;
    }

    public override async Task<AuditEvent> GetAudit(GetAuditRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (request.DecisionId.Length > 0)
        {
            return ToProto(await server.Store.Ledger.GetByDecisionAsync(request.DecisionId, ct).ConfigureAwait(false)
                ?? throw new StoreNotFoundException($"no ledger record has decision id '{request.DecisionId}': copy it from the workload's error or 'writ audit list'"));
        }
        if (request.Seq <= 0)
            throw new ValidationException("give a record number (SEQ >= 1) or a decision id: writ audit show SEQ|DECISION_ID");
        return ToProto(await server.Store.Ledger.GetAsync(request.Seq, ct).ConfigureAwait(false)
            ?? throw new StoreNotFoundException($"ledger record {request.Seq} does not exist: 'writ audit list' shows the records and the head"));
    }

    public override async Task<VerifyAuditResponse> VerifyAudit(VerifyAuditRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var verifier = new LedgerVerifier();
        if (request.AnchorHash.Length > 0)
            verifier.Anchor = ParseHash(request.AnchorHash, "anchor hash");
        // The newest signed checkpoint before the head: it is then never newer than the head checked.
        var checkpoints = server.Checkpoints;
        verifier.Checkpoint = checkpoints.ReadNewest(out var checkpointError);
        // The revocations table is read between two heads: a row read has its record at or before the second head (the
        // chain checked), and a record at or before the first head had its row committed before the table was read.
        var revocations = new RevocationCrossCheck();
        var now = server.Time.GetUtcNow();
        var headBeforeRows = await server.Store.Ledger.HeadAsync(ct).ConfigureAwait(false);
        var rows = await server.Store.Revocations.ListAsync(now, includeExpired: true, ct).ConfigureAwait(false);
        var head = await server.Store.Ledger.HeadAsync(ct).ConfigureAwait(false);
        long after = 0;
        var done = false;
        while (!done)
        {
            var page = await server.Store.Ledger.ListPageAsync(after, AuditPage, AuditPageBytes, null, null, ct).ConfigureAwait(false);
            foreach (var e in page)
            {
                // Records appended after the head was read are not part of this check.
                if (e.Seq > head.Seq || !verifier.Add(e))
                {
                    done = true;
                    break;
                }
                revocations.Add(e);
            }
            if (page.Count == 0)
                break;
            after = page[^1].Seq;
        }
        var ok = verifier.Finish(head);
        var mismatches = ok ? revocations.Check(rows, now, headBeforeRows.Seq) : [];
        var response = new VerifyAuditResponse
        {
            Ok = ok,
            Checked = verifier.Checked,
            HeadSeq = head.Seq,
            HeadHash = Convert.ToHexStringLower(head.Hash),
            AnchorSeq = verifier.AnchorSeq ?? 0,
            CheckpointSeq = verifier.Checkpoint?.Seq ?? 0,
            CheckpointHash = verifier.Checkpoint is { } cp ? Convert.ToHexStringLower(cp.Hash) : "",
            CheckpointAtUnix = verifier.Checkpoint?.AtUnix ?? 0,
            CheckpointsFile = checkpoints.FilePath,
            RevocationRecords = revocations.Records,
        };
        response.RevocationMismatches.AddRange(mismatches);
        if (!ok)
        {
            response.FirstBadSeq = verifier.Problem!.Seq;
            response.Error = verifier.Problem.Message;
            if (verifier.Checkpoint is not null)
                response.Error += $" (an export can be checked offline against the signed checkpoints: writ audit verify --file EXPORT --checkpoints {checkpoints.FilePath})";
            ServerLog.LedgerVerifyFailed(log, verifier.Problem.Seq, response.Error);
        }
        else if (mismatches.Count > 0)
        {
            response.Ok = false;
            response.Error = mismatches.Count == 1
                ? mismatches[0]
                : $"{mismatches[0]} (and {mismatches.Count - 1} more revocation mismatches: writ audit verify --output json lists them)";
            ServerLog.LedgerVerifyFailed(log, 0, response.Error);
        }
        else if (checkpointError is not null)
        {
            response.Ok = false;
            response.Error = checkpointError;
            ServerLog.LedgerVerifyFailed(log, 0, checkpointError);
        }
        else if (verifier.Anchor is not null && verifier.AnchorSeq is null)
        {
            response.Ok = false;
            response.Error = $"the anchor hash {request.AnchorHash} is not in the ledger: the chain was rewritten since that anchor was taken (or it is from another server); restore the database from a backup";
            ServerLog.LedgerVerifyFailed(log, 0, response.Error);
        }
        else
        {
            ServerLog.LedgerVerified(log, verifier.Checked, head.Seq);
        }
        return response;
    }

    public override async Task ExportAudit(ListAuditRequest request, IServerStreamWriter<AuditEvent> responseStream, ServerCallContext context)
    {
        if (request.AfterSeq < 0)
            throw new ValidationException($"--after must be 0 or a record number, got {request.AfterSeq}");
        var ct = context.CancellationToken;
        var after = request.AfterSeq;
        long count = 0;
        // Page by page: a million records never sit in memory, and the stream's flow control paces the reads.
        while (true)
        {
            var page = await server.Store.Ledger.ListPageAsync(after, AuditPage, AuditPageBytes, NullIfEmpty(request.Kind), NullIfEmpty(request.Subject), ct).ConfigureAwait(false);
            foreach (var e in page)
            {
                if (request.Limit > 0 && count >= request.Limit)
                    break;
                await responseStream.WriteAsync(ToProto(e), ct).ConfigureAwait(false);
                count++;
            }
            if (page.Count == 0 || (request.Limit > 0 && count >= request.Limit))
                break;
            after = page[^1].Seq;
        }
        ServerLog.LedgerExported(log, AdminCaller.Of(context), count, request.AfterSeq);
    }

    internal static AuditEvent ToProto(LedgerEvent e) => new()
    {
        Seq = e.Seq,
        AtUnixMicros = LedgerHash.ToMicros(e.At),
        Kind = e.Kind,
        Actor = e.Actor,
        Subject = e.Subject,
        DecisionId = e.DecisionId ?? "",
        HasDecisionId = e.DecisionId is not null,
        DataJson = e.DataJson,
        PrevHash = Convert.ToHexStringLower(e.PrevHash),
        Hash = Convert.ToHexStringLower(e.Hash),
    };

    private static byte[] ParseHash(string hex, string what)
    {
        try
        {
            var b = Convert.FromHexString(hex);
            if (b.Length == LedgerHash.Size)
                return b;
        }
        catch (FormatException)
        {
        }
        throw new ValidationException($"the {what} must be {LedgerHash.Size * 2} hex digits (a head hash from 'writ audit list' or 'writ audit verify')");
    }
}
