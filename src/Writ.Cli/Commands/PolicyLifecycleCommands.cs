using System.Globalization;
using Writ.Cli.Admin;
using Writ.Cli.Audit;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Writ.Server.Policy;
using Writ.Server.Storage;

namespace Writ.Cli.Commands;

/// <summary>`writ policy push|list|show|diff|rollback`: the server's versioned policy set.</summary>
public static class PolicyLifecycleCommands
{
    private static readonly OptionSpec Socket = new("admin-socket", "the server's admin socket", "PATH", EnvVar: AdminConnection.SocketEnvVar);
    private static readonly OptionSpec OutputOpt = new("output", "text (default) or json", "FORMAT");

    public static IEnumerable<CommandSpec> All() =>
    [
        new("policy push", "Validate a policy set against the Writ schema and make it the server's active version (refused with every error, nothing changed).",
            [new("file", "a .cedar file, or a directory: all its *.cedar files in name order", "FILE|DIR", Required: true),
             new("comment", "why (kept with the version and in the ledger)", "TEXT"), Socket, OutputOpt], Push),
        new("policy list", "List the server's policy versions, newest first (* = active).", [Socket, OutputOpt], List),
        new("policy show", "Print the files of a policy version (default: the active one).",
            [new("write", "write the files into this directory instead of printing them", "DIR"), Socket, OutputOpt], Show, "[VERSION]"),
        new("policy diff", "Unified diff of two policy versions (B defaults to the active one), or of --file against the active one.",
            [new("file", "a candidate .cedar file or directory to compare with the active version", "FILE|DIR"), Socket], Diff, "[A [B]]"),
        new("policy rollback", "Make a new version with the text of an earlier one (validated again; recorded as policy.rolled_back).",
            [new("comment", "why", "TEXT"), Socket, OutputOpt], Rollback, "VERSION"),
    ];

    /// <summary>Reads a file (its name kept) or a directory's *.cedar files in ordinal name order.</summary>
    internal static List<PolicyFileRecord> ReadFiles(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                var names = Directory.GetFiles(path, "*.cedar").Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
                if (names.Count == 0)
                    throw new CommandFailedException($"{path} has no *.cedar files: put the policy set there, or give --file FILE");
                return [.. names.Select(n => new PolicyFileRecord(n, File.ReadAllText(Path.Combine(path, n))))];
            }
            if (!File.Exists(path))
                throw new CommandFailedException($"{path} does not exist: give a .cedar file or a directory of them");
            return [new PolicyFileRecord(Path.GetFileName(path), File.ReadAllText(path))];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read {path}: {e.Message.Split('\n')[0].Trim()}", code: CliErrors.File);
        }
    }

    private static async Task<int> Push(ParsedArgs a, CommandContext ctx)
    {
        var path = a.Require("file");
        var files = ReadFiles(path);
        // Checked here first so every error is shown (the server checks again and refuses with the first).
        if (!WritPolicyCompiler.TryCompile(files, out _, out var errors))
        {
            foreach (var e in errors)
                ctx.Out.WriteLine(e);
            throw new CommandFailedException($"policy push refused: {errors.Count} {(errors.Count == 1 ? "error" : "errors")} against the Writ schema (listed above); nothing changed on the server; fix {(errors.Count == 1 ? "it" : "them")} and push again", code: CliErrors.PolicyInvalid);
        }
        var request = new PushPolicyRequest { Comment = a.Get("comment") ?? "" };
        request.Files.AddRange(files.Select(f => new PolicyFile { Name = f.Name, Text = f.Text }));
        using var c = AdminConnection.FromArgs(a);
        var v = await c.CallAsync(s => s.PushPolicyAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        PrintResult(a, ctx, v, v.Unchanged
            ? $"unchanged: the active policy version {v.Version} already has this text; no new version"
            : $"pushed policy version {v.Version} ({Policies(v.PolicyCount)} in {Count(files.Count, "file")}, sha256 {Short(v.Sha256)}); it is active now");
        return 0;
    }

    private static async Task<int> Rollback(ParsedArgs a, CommandContext ctx)
    {
        if (a.Positionals.Count != 1)
            throw new UsageException("'writ policy rollback' needs the VERSION to go back to, e.g. writ policy rollback 3");
        var to = Version(a.Positionals[0]);
        using var c = AdminConnection.FromArgs(a);
        var v = await c.CallAsync(s => s.RollbackPolicyAsync(new RollbackPolicyRequest { ToVersion = to, Comment = a.Get("comment") ?? "" }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        PrintResult(a, ctx, v, v.Unchanged
            ? $"unchanged: the active policy version {v.Version} already has the text of version {to}; no new version"
            : $"rolled back: policy version {v.Version} has the text of version {to} and is active now");
        return 0;
    }

    private static void PrintResult(ParsedArgs a, CommandContext ctx, PolicyVersion v, string text)
    {
        if (a.JsonOutput)
            Output.Json(ctx.Out, VersionJson(v, withFiles: false));
        else
            ctx.Out.WriteLine(text);
    }

    private static async Task<int> List(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.ListPoliciesAsync(new ListPoliciesRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { versions = r.Versions.Select(v => VersionJson(v, withFiles: false)).ToList() });
            return 0;
        }
        Output.Table(ctx.Out, ["VERSION", "ACTIVE", "CREATED", "AUTHOR", "SHA256", "POLICIES", "COMMENT"],
            r.Versions.Select(v => (IReadOnlyList<string>)[
                v.Version.ToString(CultureInfo.InvariantCulture), v.Active ? "*" : "", Output.Time(v.CreatedAtUnix), v.Author, Short(v.Sha256),
                v.PolicyCount.ToString(CultureInfo.InvariantCulture),
                v.RolledBackFrom > 0 ? $"{v.Comment} (rollback to {v.RolledBackFrom})" : v.Comment]));
        return 0;
    }

    private static async Task<int> Show(ParsedArgs a, CommandContext ctx)
    {
        var version = a.Positionals.Count switch
        {
            0 => 0,
            1 => Version(a.Positionals[0]),
            _ => throw new UsageException("'writ policy show' takes at most one VERSION"),
        };
        if (a.Get("write") is { } target)
        {
            OutputDirectory.Prepare(target, create: false);   // refused before asking the server
        }
        using var c = AdminConnection.FromArgs(a);
        var v = await c.CallAsync(s => s.GetPolicyAsync(new GetPolicyRequest { Version = version }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.Get("write") is { } dir)
        {
            if (v.Files.Any(f => f.Name != Path.GetFileName(f.Name) || f.Name is "." or ".."))
                throw new CommandFailedException($"policy version {v.Version} has a file name that is not a plain name; print it instead of --write");
            OutputDirectory.WriteFiles(dir, [.. v.Files.Select(f => (f.Name, f.Text, Output.PublicFile))]);
            ctx.Out.WriteLine($"wrote {Count(v.Files.Count, "file")} of policy version {v.Version} to {dir}");
            return 0;
        }
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, VersionJson(v, withFiles: true));
            return 0;
        }
        if (v.Files.Count == 1)
        {
            ctx.Out.Write(v.Files[0].Text);   // exactly the pushed text: show > file round-trips
            return 0;
        }
        foreach (var f in v.Files)
        {
            ctx.Out.WriteLine($"// ---- file: {f.Name} ----");
            ctx.Out.Write(f.Text);
            if (!f.Text.EndsWith('\n'))
                ctx.Out.WriteLine();
        }
        return 0;
    }

    private static async Task<int> Diff(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        async Task<PolicyVersion> Get(long v) =>
            await c.CallAsync(s => s.GetPolicyAsync(new GetPolicyRequest { Version = v }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        IReadOnlyList<PolicyFileRecord> left, right;
        string leftLabel, rightLabel;
        if (a.Get("file") is { } path)
        {
            if (a.Positionals.Count > 0)
                throw new UsageException("give --file (compared with the active version) or versions A [B], not both");
            var active = await Get(0).ConfigureAwait(false);
            left = Files(active);
            leftLabel = $"v{active.Version}";
            right = ReadFiles(path);
            rightLabel = "candidate";
        }
        else
        {
            if (a.Positionals.Count is 0 or > 2)
                throw new UsageException("'writ policy diff' needs version A (and optionally B; default the active one), or --file CANDIDATE");
            var va = await Get(Version(a.Positionals[0])).ConfigureAwait(false);
            var vb = await Get(a.Positionals.Count == 2 ? Version(a.Positionals[1]) : 0).ConfigureAwait(false);
            left = Files(va);
            right = Files(vb);
            leftLabel = $"v{va.Version}";
            rightLabel = $"v{vb.Version}";
        }
        var text = DiffSets(leftLabel, left, rightLabel, right);
        ctx.Out.Write(text.Length == 0 ? $"no differences between {leftLabel} and {rightLabel}\n" : text);
        return 0;
    }

    /// <summary>Per file name (in the order of the left set, then files only on the right): a unified diff. Two one-file sets are compared directly.</summary>
    internal static string DiffSets(string leftLabel, IReadOnlyList<PolicyFileRecord> left, string rightLabel, IReadOnlyList<PolicyFileRecord> right)
    {
        var sb = new System.Text.StringBuilder();
        if (left.Count == 1 && right.Count == 1)
        {
            // One file each: compare them whatever their names (a set pushed from another file name).
            return LineDiff.Unified($"{leftLabel}/{left[0].Name}", left[0].Text, $"{rightLabel}/{right[0].Name}", right[0].Text);
        }
        var names = left.Select(f => f.Name).Concat(right.Select(f => f.Name)).Distinct(StringComparer.Ordinal);
        foreach (var n in names)
        {
            var l = left.FirstOrDefault(f => f.Name == n);
            var r = right.FirstOrDefault(f => f.Name == n);
            sb.Append(LineDiff.Unified(l is null ? "/dev/null" : $"{leftLabel}/{n}", l?.Text ?? "", r is null ? "/dev/null" : $"{rightLabel}/{n}", r?.Text ?? ""));
        }
        return sb.ToString();
    }

    private static List<PolicyFileRecord> Files(PolicyVersion v) => [.. v.Files.Select(f => new PolicyFileRecord(f.Name, f.Text))];

    private static long Version(string text) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0
            ? v
            : throw new UsageException($"'{text}' is not a policy version; 'writ policy list' shows them (1, 2, ...)");

    private static object VersionJson(PolicyVersion v, bool withFiles) => new
    {
        version = v.Version,
        active = v.Active,
        unchanged = v.Unchanged,
        created_at = Output.Time(v.CreatedAtUnix),
        author = v.Author,
        sha256 = v.Sha256,
        policies = v.PolicyCount,
        comment = v.Comment,
        rolled_back_from = v.RolledBackFrom == 0 ? (long?)null : v.RolledBackFrom,
        files = withFiles ? v.Files.Select(f => new { name = f.Name, text = f.Text }).ToList() : null,
    };

    private static string Short(string sha) => sha.Length > 12 ? sha[..12] : sha;

    private static string Policies(int n) => n == 1 ? "1 policy" : $"{n} policies";

    private static string Count(int n, string what) => n == 1 ? $"1 {what}" : $"{n} {what}s";
}
