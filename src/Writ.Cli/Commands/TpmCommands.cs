using System.Globalization;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Writ.Tpm.EventLog;
using Writ.Tpm.Marshalling;
using TpmReferenceRules = Writ.Server.Storage.TpmReferenceRules;

namespace Writ.Cli.Commands;

/// <summary>
/// `writ tpm reference create|list|delete` (issue #14): the named PCR values TPM nodes are matched against; and
/// `writ tpm eventlog show`, which replays a measured-boot log to the PCR values a reference set would name.
/// </summary>
public static class TpmCommands
{
    private static readonly OptionSpec Socket = new("admin-socket", "the server's admin socket", "PATH", EnvVar: AdminConnection.SocketEnvVar);
    private static readonly OptionSpec OutputOpt = new("output", "table (default) or json", "FORMAT");
    private static readonly OptionSpec Name = new("name", "the reference set's name: 1-64 of a-z 0-9 . _ -, e.g. prod-2026q4", "NAME", Required: true);

    public static IEnumerable<CommandSpec> All() =>
    [
        new("tpm reference create", "Register a named set of PCR values; TPM nodes whose quoted PCRs satisfy it get the selector tpm:pcr_set:NAME.",
            [Name,
             new("pcr", "an allowed PCR value, bank:index:hex (bank sha1, sha256 or sha384; index 0-23); repeat it; several for one PCR are alternatives", "BANK:INDEX:HEX",
                 Repeatable: true, Required: true),
             Socket, OutputOpt], Create),
        new("tpm reference list", "List the TPM reference sets.", [Socket, OutputOpt], List),
        new("tpm reference delete", "Delete a TPM reference set (nodes lose its tpm:pcr_set selector at their next attestation or re-quote).",
            [Name, Socket, OutputOpt], Delete),
        new("tpm eventlog show", "Parse a TCG measured-boot event log and print the PCR values it replays to and whether Secure Boot was on.",
            [new("bank", "the PCR bank to replay: sha1, sha256 (default), sha384 or sha512", "BANK"), OutputOpt], ShowEventLog,
            Positionals: "FILE"),
    ];

    /// <summary>The file is not a TCG event log Writ accepts (truncated, malformed, or without the bank asked for).</summary>
    public const string EventLogInvalid = "WRIT-CLI-EVENTLOG-INVALID";

    private static Task<int> ShowEventLog(ParsedArgs a, CommandContext ctx)
    {
        if (a.Positionals.Count != 1)
        {
            throw new UsageException("give one event log file, e.g. writ tpm eventlog show /sys/kernel/security/tpm0/binary_bios_measurements");
        }
        var path = a.Positionals[0];
        var bank = a.Get("bank") ?? PcrBank.Sha256;
        if (PcrBank.AlgorithmOf(bank) is null)
        {
            throw new UsageException($"--bank must be sha1, sha256, sha384 or sha512, got '{bank}'");
        }
        byte[] bytes;
        try
        {
            // securityfs reports size 0: read up to the limit rather than trusting the length.
            using var stream = File.OpenRead(path);
            using var buffer = new MemoryStream();
            var chunk = new byte[81920];
            int n;
            while ((n = stream.Read(chunk)) > 0)
            {
                buffer.Write(chunk, 0, n);
                if (buffer.Length > TcgEventLog.MaxLogBytes)
                {
                    throw new CommandFailedException($"{path} is larger than {TcgEventLog.MaxLogBytes} bytes: not an event log Writ accepts", code: EventLogInvalid);
                }
            }
            bytes = buffer.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read {path}: {e.Message.Split('\n')[0].Trim()} (the kernel's log needs root)", code: CliErrors.File);
        }
        TcgEventLog log;
        IReadOnlyDictionary<int, byte[]> pcrs;
        bool? secureBoot;
        try
        {
            log = TcgEventLog.Parse(bytes);
            pcrs = log.Replay(bank);
            secureBoot = log.SecureBoot;
        }
        catch (TpmFormatException e)
        {
            throw new CommandFailedException($"{path} is not a TCG event log Writ accepts: {e.Message}", code: EventLogInvalid);
        }
        var secure = secureBoot switch { true => "on", false => "off", null => "unknown" };
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new
            {
                format = log.Format == TcgEventLogFormat.CryptoAgile ? "crypto-agile" : "sha1",
                banks = log.Banks,
                events = log.Events.Count,
                secure_boot = secure,
                bank,
                pcrs = pcrs.ToDictionary(p => p.Key.ToString(CultureInfo.InvariantCulture), p => Convert.ToHexStringLower(p.Value)),
            });
            return Task.FromResult(0);
        }
        ctx.Out.WriteLine($"Format:      {(log.Format == TcgEventLogFormat.CryptoAgile ? "crypto-agile" : "sha1 (legacy)")}, banks {string.Join(", ", log.Banks)}, {log.Events.Count} events");
        ctx.Out.WriteLine($"Secure Boot: {secure}");
        Output.Table(ctx.Out, ["PCR", "VALUE"], pcrs.Select(p => (IReadOnlyList<string>)[$"{bank}:{p.Key}", Convert.ToHexStringLower(p.Value)]));
        return Task.FromResult(0);
    }

    private static async Task<int> Create(ParsedArgs a, CommandContext ctx)
    {
        var request = new CreateTpmReferenceSetRequest { Name = a.Get("name")! };
        request.Pcrs.AddRange(a.GetAll("pcr").Select(ParsePcr));
        using var c = AdminConnection.FromArgs(a);
        var set = await c.CallAsync(s => s.CreateTpmReferenceSetAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, Json(set));
            return 0;
        }
        Print(ctx, [set]);
        ctx.Out.WriteLine($"Created TPM reference set '{set.Name}' with {set.Pcrs.Count} PCR value(s); nodes that satisfy it get tpm:pcr_set:{set.Name}");
        return 0;
    }

    private static async Task<int> List(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.ListTpmReferenceSetsAsync(new ListTpmReferenceSetsRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { sets = r.Sets.Select(Json).ToList() });
            return 0;
        }
        Print(ctx, r.Sets);
        ctx.Out.WriteLine($"{r.Sets.Count} TPM reference set(s)");
        return 0;
    }

    private static async Task<int> Delete(ParsedArgs a, CommandContext ctx)
    {
        var name = a.Get("name")!;
        using var c = AdminConnection.FromArgs(a);
        await c.CallAsync(s => s.DeleteTpmReferenceSetAsync(new DeleteTpmReferenceSetRequest { Name = name }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { deleted = name });
            return 0;
        }
        ctx.Out.WriteLine($"Deleted TPM reference set '{name}'");
        return 0;
    }

    /// <summary>The shape bank:index:hex only; the server checks the bank, the index range and the digest length.</summary>
    private static TpmPcrReference ParsePcr(string text) =>
        TpmReferenceRules.TrySplit(text, out var pcr)
            ? new TpmPcrReference { Bank = pcr.Bank, Index = pcr.Index, DigestHex = pcr.DigestHex }
            : throw new UsageException($"--pcr '{text}' is not bank:index:hex, e.g. --pcr sha256:7:<64 hex digits>");

    private static void Print(CommandContext ctx, IEnumerable<TpmReferenceSet> sets) =>
        Output.Table(ctx.Out, ["NAME", "PCR", "VALUE", "CREATED AT"],
            sets.SelectMany(s => s.Pcrs.Select(p => (IReadOnlyList<string>)[s.Name, $"{p.Bank}:{p.Index}", p.DigestHex, Output.Time(s.CreatedAtUnix)])));

    private static object Json(TpmReferenceSet s) => new
    {
        name = s.Name,
        pcrs = s.Pcrs.Select(p => new { bank = p.Bank, index = p.Index, digest = p.DigestHex }).ToList(),
        created_at = Output.Time(s.CreatedAtUnix),
    };
}
