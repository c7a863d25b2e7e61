using System.Globalization;
using System.Text.Json;
using Grpc.Core;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Writ.Server.Ledger;
using Writ.Server.Storage;

namespace Writ.Cli.Commands;

/// <summary>`writ audit list|show|verify|export`: the tamper-evident ledger.</summary>
public static class AuditCommands
{
    private static readonly OptionSpec Socket = new("admin-socket", "the server's admin socket", "PATH", EnvVar: AdminConnection.SocketEnvVar);
    private static readonly OptionSpec OutputOpt = new("output", "table (default) or json", "FORMAT");

    public static IEnumerable<CommandSpec> All() =>
    [
        new("audit list", "List ledger records (oldest first) and the ledger head (seq and hash: keep it as an anchor).",
            [new("after", "only records after this seq (page with the last seq shown)", "SEQ"),
             new("limit", $"at most this many records (default 100, at most {Writ.Server.Api.AdminApi.MaxAuditLimit})", "N"),
             new("kind", "only records whose kind starts with this, e.g. entry. or policy.pushed", "PREFIX"),
             new("subject", "only records about this subject (a SPIFFE ID, entry id, policy:N)", "SUBJECT"), Socket, OutputOpt], List),
        new("audit show", "Show one ledger record by its seq or by the decision id it records.",
            [Socket, OutputOpt], Show, "SEQ|DECISION_ID"),
        new("audit verify", "Recompute the ledger's hash chain and name the first altered or missing record (exit 1); offline with --file.",
            [new("file", "verify an export file (JSON lines from 'writ audit export') here, without the server", "FILE"),
             new("anchor", "a head hash kept earlier that must still be in the chain", "HASH"),
             new("checkpoints", "with --file: the server's signed checkpoints (<data_dir>/checkpoints.jsonl); the export must reach the newest", "FILE"),
             new("checkpoint-key", "with --checkpoints: the server's checkpoint public key (default: checkpoint.pub beside the checkpoints file)", "FILE"),
             Socket, OutputOpt], Verify),
        new("audit export", "Write ledger records as JSON lines (one record per line, every hashed field), streaming.",
            [new("after", "only records after this seq", "SEQ"), new("file", "write to this file instead of standard output", "FILE"),
             new("output", "json (the only format: one JSON object per line)", "FORMAT"), Socket], Export),
    ];

    private static long Seq(ParsedArgs a, string name)
    {
        var v = a.Get(name);
        if (v is null)
            return 0;
        return long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new UsageException($"--{name} must be a record number (0 or more), got '{v}'");
    }

    private static async Task<int> List(ParsedArgs a, CommandContext ctx)
    {
        var limit = a.GetInt("limit") ?? 0;
        if (limit < 0)
            throw new UsageException($"--limit must be positive, got {limit}");
        using var c = AdminConnection.FromArgs(a);
        // The server answers in pages of bounded size (huge records make short pages): ask again until the limit is
        // reached or nothing more matches. The head reported is the last page's, so it is at or after every record listed.
        var want = limit == 0 ? Writ.Server.Api.AdminApi.DefaultAuditLimit : limit;
        var after = Seq(a, "after");
        var events = new List<AuditEvent>();
        ListAuditResponse r;
        do
        {
            var request = new ListAuditRequest { AfterSeq = after, Limit = want - events.Count, Kind = a.Get("kind") ?? "", Subject = a.Get("subject") ?? "" };
            r = await c.CallAsync(s => s.ListAuditAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
            events.AddRange(r.Events);
            if (r.Events.Count > 0)
                after = r.Events[^1].Seq;
        }
        while (r.More && r.Events.Count > 0 && events.Count < want);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { events = events.Select(EventJson).ToList(), head = new { seq = r.HeadSeq, hash = r.HeadHash } });
            return 0;
        }
        Output.Table(ctx.Out, ["SEQ", "TIME", "KIND", "ACTOR", "SUBJECT", "DECISION"],
            events.Select(e => (IReadOnlyList<string>)[e.Seq.ToString(CultureInfo.InvariantCulture), Time(e.AtUnixMicros), e.Kind, e.Actor, e.Subject, e.HasDecisionId ? e.DecisionId : "-"]));
        ctx.Out.WriteLine($"{events.Count} {(events.Count == 1 ? "record" : "records")}; ledger head: seq {r.HeadSeq} hash {r.HeadHash}");
        return 0;
    }

    private static async Task<int> Show(ParsedArgs a, CommandContext ctx)
    {
        if (a.Positionals.Count != 1)
            throw new UsageException("'writ audit show' needs one SEQ or DECISION_ID, e.g. writ audit show 17");
        var arg = a.Positionals[0];
        var request = long.TryParse(arg, NumberStyles.None, CultureInfo.InvariantCulture, out var seq)
            ? new GetAuditRequest { Seq = seq }
            : new GetAuditRequest { DecisionId = arg };
        using var c = AdminConnection.FromArgs(a);
        var e = await c.CallAsync(s => s.GetAuditAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, EventJson(e));
            return 0;
        }
        ctx.Out.WriteLine($"Seq:        {e.Seq}");
        ctx.Out.WriteLine($"Time:       {Time(e.AtUnixMicros)}");
        ctx.Out.WriteLine($"Kind:       {e.Kind}");
        ctx.Out.WriteLine($"Actor:      {e.Actor}");
        ctx.Out.WriteLine($"Subject:    {e.Subject}");
        ctx.Out.WriteLine($"Decision:   {(e.HasDecisionId ? e.DecisionId : "-")}");
        ctx.Out.WriteLine($"Prev hash:  {e.PrevHash}");
        ctx.Out.WriteLine($"Hash:       {e.Hash}");
        ctx.Out.WriteLine("Data:");
        ctx.Out.WriteLine(PrettyData(e.DataJson));
        return 0;
    }

    private static async Task<int> Verify(ParsedArgs a, CommandContext ctx)
    {
        var anchor = a.Get("anchor");
        if (anchor is not null && !IsHash(anchor))
            throw new UsageException($"--anchor must be {LedgerHash.Size * 2} hex digits (a head hash from 'writ audit list'), got '{anchor}'");
        if (a.Get("file") is { } file)
            return VerifyFile(a, ctx, file, anchor, ReadCheckpoint(a));
        if (a.Get("checkpoints") is not null || a.Get("checkpoint-key") is not null)
            throw new UsageException("--checkpoints and --checkpoint-key check an export file: give it with --file EXPORT (the server checks its own checkpoints)");
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.VerifyAuditAsync(new VerifyAuditRequest { AnchorHash = anchor ?? "" }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new
            {
                ok = r.Ok,
                @checked = r.Checked,
                first_bad_seq = r.FirstBadSeq == 0 ? (long?)null : r.FirstBadSeq,
                error = r.Error.Length == 0 ? null : r.Error,
                head = new { seq = r.HeadSeq, hash = r.HeadHash },
                anchor_seq = r.AnchorSeq == 0 ? (long?)null : r.AnchorSeq,
                checkpoint = r.CheckpointSeq == 0 ? null : new { seq = r.CheckpointSeq, hash = r.CheckpointHash, at = Unix(r.CheckpointAtUnix) },
                checkpoints_file = r.CheckpointsFile.Length == 0 ? null : r.CheckpointsFile,
                revocation_records = r.RevocationRecords,
                revocation_mismatches = r.RevocationMismatches,
            });
        }
        if (!r.Ok)
            throw new CommandFailedException(r.Error);
        if (!a.JsonOutput)
        {
            ctx.Out.WriteLine($"ledger verified: {r.Checked} {(r.Checked == 1 ? "record" : "records")}, chain intact; head seq {r.HeadSeq} hash {r.HeadHash}");
            ctx.Out.WriteLine($"revocations table matches the ledger's {r.RevocationRecords} revocation {(r.RevocationRecords == 1 ? "record" : "records")}");
            if (r.AnchorSeq > 0)
                ctx.Out.WriteLine($"anchor found at record {r.AnchorSeq}");
            ctx.Out.WriteLine(r.CheckpointSeq > 0
                ? $"signed checkpoint at record {r.CheckpointSeq} ({Unix(r.CheckpointAtUnix)}) matches; checkpoints: {r.CheckpointsFile}"
                : "no signed checkpoint yet: the server signs one every ledger.checkpoint_interval");
        }
        return 0;
    }

    /// <summary>Offline: the export file alone, so an auditor need not trust the server.</summary>
    private static int VerifyFile(ParsedArgs a, CommandContext ctx, string file, string? anchor, LedgerCheckpoint? checkpoint)
    {
        LedgerVerifier? verifier = null;
        var lineNo = 0;
        try
        {
            using var reader = new StreamReader(file);
            while (reader.ReadLine() is { } line)
            {
                lineNo++;
                if (line.Length == 0)
                    continue;
                if (!LedgerExport.TryParseLine(line, out var e, out var error))
                    throw new CommandFailedException($"{file}:{lineNo}: {error}: this is not a 'writ audit export' file, or it was edited");
                if (verifier is null)
                {
                    // An export from record 1 is checked from the genesis hash; one made with --after starts from its first record.
                    verifier = e!.Seq == 1 ? new LedgerVerifier() : LedgerVerifier.FromFirstRecord();
                    if (anchor is not null)
                        verifier.Anchor = Convert.FromHexString(anchor);
                    verifier.Checkpoint = checkpoint;
                }
                if (!verifier.Add(e!))
                    break;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read {file}: {e.Message.Split('\n')[0].Trim()}", code: CliErrors.File);
        }
        if (verifier is null)
            throw new CommandFailedException(checkpoint is null
                ? $"{file} has no ledger records: export them with 'writ audit export --file {file}'"
                : $"{file} has no ledger records, but a signed checkpoint of {checkpoint.At} says record {checkpoint.Seq} existed: the ledger was emptied; restore the database from a backup");
        verifier.Finish(null);
        if (verifier.Problem is { } p)
            throw new CommandFailedException($"{file}: {p.Message}");
        if (anchor is not null && verifier.AnchorSeq is null)
            throw new CommandFailedException($"{file}: the anchor hash {anchor} is not in this export: the chain was rewritten since the anchor was taken, or the export does not reach it");
        var from = verifier.LastSeq - verifier.Checked + 1;
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new
            {
                ok = true,
                @checked = verifier.Checked,
                first_seq = from,
                last = new { seq = verifier.LastSeq, hash = Convert.ToHexStringLower(verifier.LastHash) },
                anchor_seq = verifier.AnchorSeq,
                checkpoint = checkpoint is null ? null : new { seq = checkpoint.Seq, hash = Convert.ToHexStringLower(checkpoint.Hash), at = checkpoint.At },
            });
            return 0;
        }
        ctx.Out.WriteLine($"{file}: {verifier.Checked} {(verifier.Checked == 1 ? "record" : "records")} ({from} to {verifier.LastSeq}) chain intact; last hash {Convert.ToHexStringLower(verifier.LastHash)}");
        if (from > 1)
            ctx.Out.WriteLine($"note: the export starts at record {from}; its link to record {from - 1} is taken as given (verify an export from record 1, or pass --anchor)");
        if (verifier.AnchorSeq is { } at)
            ctx.Out.WriteLine($"anchor found at record {at}");
        if (checkpoint is not null)
            ctx.Out.WriteLine($"signed checkpoint at record {checkpoint.Seq} ({checkpoint.At}) matches");
        return 0;
    }

    /// <summary>The newest checkpoint of --checkpoints, every line's signature checked with --checkpoint-key; null without --checkpoints.</summary>
    private static LedgerCheckpoint? ReadCheckpoint(ParsedArgs a)
    {
        var path = a.Get("checkpoints");
        var keyPath = a.Get("checkpoint-key");
        if (path is null)
        {
            return keyPath is null ? null
                : throw new UsageException("--checkpoint-key goes with --checkpoints FILE (the server's <data_dir>/checkpoints.jsonl)");
        }
        keyPath ??= Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, LedgerCheckpointer.PublicKeyFile);
        try
        {
            using var key = LedgerCheckpoint.ReadPublicKey(keyPath);
            var newest = LedgerCheckpoint.ReadNewest(path, key, out var error);
            if (error is not null)
                throw new CommandFailedException(error);
            return newest ?? throw new CommandFailedException($"{path} holds no checkpoint: the server signs one every ledger.checkpoint_interval once the ledger has records");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new CommandFailedException($"cannot read the checkpoints: {e.Message.Split('\n')[0].Trim()}; give --checkpoints <data_dir>/checkpoints.jsonl and --checkpoint-key <data_dir>/checkpoint.pub", code: CliErrors.File);
        }
    }

    private static string Unix(long seconds) => LedgerJson.Rfc3339(DateTimeOffset.FromUnixTimeSeconds(seconds));

    private static async Task<int> Export(ParsedArgs a, CommandContext ctx)
    {
        var after = Seq(a, "after");
        if (a.Get("output") is { } format && format != "json")
            throw new UsageException($"--output is the format and export writes JSON lines only (--output json), got '{format}'; write to a file with --file FILE");
        var path = a.Get("file");
        using var c = AdminConnection.FromArgs(a);
        string? tmp = null;
        TextWriter writer;
        if (path is null)
        {
            writer = ctx.Out;
        }
        else
        {
            var full = Path.GetFullPath(path);
            OutputDirectory.Prepare(Path.GetDirectoryName(full)!);
            tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6))}.tmp");
            try
            {
                writer = new StreamWriter(new FileStream(tmp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = Output.SecretFile }));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CommandFailedException($"cannot write {path}: {e.Message.Split('\n')[0].Trim()}; give --file a file in a directory you can write", code: CliErrors.File);
            }
        }
        long count = 0;
        try
        {
            using var call = c.Client.ExportAudit(new ListAuditRequest { AfterSeq = after }, cancellationToken: ctx.Cancellation);
            try
            {
                await foreach (var e in call.ResponseStream.ReadAllAsync(ctx.Cancellation).ConfigureAwait(false))
                {
                    await writer.WriteAsync(LedgerExport.ToLine(FromProto(e))).ConfigureAwait(false);
                    await writer.WriteAsync('\n').ConfigureAwait(false);
                    count++;
                }
            }
            catch (RpcException e)
            {
                throw AdminConnection.Translate(e, c.SocketPath);
            }
            await writer.FlushAsync(ctx.Cancellation).ConfigureAwait(false);
            if (tmp is not null)
            {
                await writer.DisposeAsync().ConfigureAwait(false);
                try
                {
                    File.Move(tmp, path!, overwrite: true);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new CommandFailedException($"cannot write {path}: {e.Message.Split('\n')[0].Trim()}; nothing was written there", code: CliErrors.File);
                }
                tmp = null;
                ctx.Error.WriteLine($"exported {count} {(count == 1 ? "record" : "records")} to {path}");
            }
        }
        finally
        {
            if (tmp is not null)
            {
                await writer.DisposeAsync().ConfigureAwait(false);
                File.Delete(tmp);
            }
        }
        return 0;
    }

    internal static LedgerEvent FromProto(AuditEvent e) => new()
    {
        Seq = e.Seq,
        At = DateTimeOffset.UnixEpoch.AddTicks(e.AtUnixMicros * 10),
        Kind = e.Kind,
        Actor = e.Actor,
        Subject = e.Subject,
        DecisionId = e.HasDecisionId ? e.DecisionId : null,
        DataJson = e.DataJson,
        PrevHash = Convert.FromHexString(e.PrevHash),
        Hash = Convert.FromHexString(e.Hash),
    };

    private static object EventJson(AuditEvent e) => new
    {
        seq = e.Seq,
        at = Time(e.AtUnixMicros),
        at_unix_micros = e.AtUnixMicros,
        kind = e.Kind,
        actor = e.Actor,
        subject = e.Subject,
        decision_id = e.HasDecisionId ? e.DecisionId : null,
        data = ParseData(e.DataJson),
        data_json = e.DataJson,
        prev_hash = e.PrevHash,
        hash = e.Hash,
    };

    private static JsonElement? ParseData(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string PrettyData(string json) =>
        ParseData(json) is { } el ? JsonSerializer.Serialize(el, Output.JsonOptions) : json;

    private static string Time(long micros) => LedgerJson.Rfc3339(DateTimeOffset.UnixEpoch.AddTicks(micros * 10));

    private static bool IsHash(string s) => s.Length == LedgerHash.Size * 2 && s.All(Uri.IsHexDigit);
}
