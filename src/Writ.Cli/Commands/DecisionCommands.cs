using System.Globalization;
using System.Text;
using System.Text.Json;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;

namespace Writ.Cli.Commands;

/// <summary>`writ explain` (why a decision came out as it did) and `writ policy whatif` (what a candidate policy set would change).</summary>
public static class DecisionCommands
{
    private static readonly OptionSpec Socket = new("admin-socket", "the server's admin socket", "PATH", EnvVar: AdminConnection.SocketEnvVar);
    private static readonly OptionSpec OutputOpt = new("output", "text (default) or json", "FORMAT");

    public const int MaxPolicyFiles = 1000;
    public const long MaxPolicyBytes = 16 << 20;

    public static IEnumerable<CommandSpec> All() =>
    [
        new("explain", "Show one decision (issuance d-… or call c-…): inputs, evidence, determining policies, policy version and outcome; a call is re-evaluated with the policy version it was made under.",
            [new("decision-id", "the decision id (d-… or c-…), from a workload's or caller's error or 'writ audit list'", "ID"), Socket, OutputOpt], ExplainAsync, "[DECISION_ID]"),
        new("policy whatif", "Replay recent recorded decisions (issuances and calls) against a candidate policy set and list those whose outcome would change. Nothing is stored.",
            [new("file", "candidate policy set: a .cedar file, or a directory of .cedar files", "FILE|DIR", Required: true),
             new("limit", "how many recent decisions to replay (default 1000)", "N"), Socket, OutputOpt], WhatIfAsync),
    ];

    private static bool WantsJson(ParsedArgs a) => a.Get("output") switch
    {
        null or "text" or "table" => false,
        "json" => true,
        var other => throw new UsageException($"--output must be text or json, got '{other}'"),
    };

    private static async Task<int> ExplainAsync(ParsedArgs a, CommandContext ctx)
    {
        var json = WantsJson(a);
        if (a.Positionals.Count > 1 || (a.Get("decision-id") is not null && a.Positionals.Count > 0))
        {
            throw new UsageException("give one decision id, as the argument or --decision-id");
        }
        var id = a.Get("decision-id") ?? a.Positionals.FirstOrDefault() ?? throw new UsageException("missing the decision id: writ explain d-…");
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(x => x.ExplainAsync(new ExplainRequest { DecisionId = id }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        using var doc = JsonDocument.Parse(r.Json);
        if (json)
        {
            ctx.Out.WriteLine(JsonSerializer.Serialize(doc.RootElement, Output.JsonOptions));
            return 0;
        }
        ctx.Out.Write(Render(doc.RootElement));
        return 0;
    }

    /// <summary>The human form of an explain record.</summary>
    public static string Render(JsonElement d)
    {
        var sb = new StringBuilder();
        string S(JsonElement o, string name) => o.ValueKind == JsonValueKind.Object && o.TryGetProperty(name, out var v)
            ? v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText()
            : "";
        void Line(string label, string value)
        {
            if (value.Length > 0)
                sb.Append(CultureInfo.InvariantCulture, $"{label,-22}{value}\n");
        }
        Line("decision", S(d, "decision_id"));
        Line("outcome", S(d, "decision").ToUpperInvariant() + (S(d, "reason") is { Length: > 0 } reason ? " — " + reason : ""));
        Line("recorded", $"{S(d, "at")} (ledger #{S(d, "seq")}, {S(d, "ledger_kind")}, by {S(d, "actor")})");
        Line("stage", S(d, "stage") switch
        {
            "match" => "match (the registration entry refused it before policy was asked)",
            "policy" => "policy (Cedar decided)",
            "admin" => "admin (minted over the admin API by a server from before admin minting was decided by policy)",
            "live" => "live (the caller was refused before policy was asked: revoked, instance gone or drifted, no resource)",
            var s => s,
        });
        Line("policy version", S(d, "policy_version") is { Length: > 0 } v ? $"{v} (sha256 {S(d, "policy_sha256")})" : "");
        if (d.TryGetProperty("determining_policies", out var det) && det.ValueKind == JsonValueKind.Array)
        {
            Line("determining policies", det.GetArrayLength() == 0 ? "(none: no policy applied, deny by default)" : string.Join(", ", det.EnumerateArray().Select(x => x.GetString())));
        }
        if (d.TryGetProperty("errors", out var errs) && errs.ValueKind == JsonValueKind.Array && errs.GetArrayLength() > 0)
        {
            Line("policy errors", string.Join("; ", errs.EnumerateArray().Select(x => x.GetString())));
        }
        Line("spiffe id", S(d, "spiffe_id"));
        Line("caller", S(d, "caller") is { Length: > 0 } caller ? caller + (S(d, "credential") is { Length: > 0 } cred ? $" ({cred})" : "") : "");
        Line("resource", S(d, "resource"));
        Line("request", S(d, "method") is { Length: > 0 } method ? $"{method} {S(d, "host")}{S(d, "path")}" : "");
        Line("code", S(d, "code"));
        Line("reported by", S(d, "reported_by") is { Length: > 0 } by ? $"{by} ({S(d, "surface")}, decided {S(d, "decided_at")})" : "");
        if (d.TryGetProperty("reevaluated", out var re) && re.ValueKind == JsonValueKind.Object)
        {
            Line("re-evaluated", S(re, "note") is { Length: > 0 } note
                ? note
                : $"{S(re, "decision").ToUpperInvariant()} under policy version {S(re, "policy_version")}"
                  + (re.TryGetProperty("determining_policies", out var rd) && rd.GetArrayLength() > 0 ? " by " + string.Join(", ", rd.EnumerateArray().Select(x => x.GetString())) : "")
                  + (S(re, "agrees") == "false" ? " — DISAGREES with the reported outcome" : " — agrees with the reported outcome"));
        }
        Line("entry", S(d, "entry_id"));
        Line("agent", S(d, "agent"));
        Line("serial", S(d, "serial"));
        Line("jti", S(d, "jti"));
        if (d.TryGetProperty("audience", out var aud) && aud.ValueKind == JsonValueKind.Array)
        {
            Line("audience", string.Join(", ", aud.EnumerateArray().Select(x => x.GetString())));
        }
        Line("ttl", S(d, "ttl_seconds") is { Length: > 0 } ttl ? ttl + "s" + (S(d, "requested_ttl_seconds") is { Length: > 0 } req ? $" (requested {req}s)" : "") : "");
        if (d.TryGetProperty("request", out var req2) && req2.ValueKind == JsonValueKind.Object)
        {
            sb.Append("request\n");
            foreach (var part in new[] { "principal", "action", "resource" })
            {
                var u = req2.GetProperty(part);
                sb.Append(CultureInfo.InvariantCulture, $"  {part,-20}{S(u, "type")}::\"{S(u, "id")}\"\n");
            }
            if (req2.TryGetProperty("context", out var ctx))
            {
                sb.Append(CultureInfo.InvariantCulture, $"  {"context",-20}{ctx.GetRawText()}\n");
            }
        }
        if (d.TryGetProperty("evidence", out var ev) && ev.ValueKind == JsonValueKind.Object)
        {
            sb.Append(CultureInfo.InvariantCulture, $"evidence (instance {S(ev, "instance_id")})\n");
            if (ev.TryGetProperty("selectors", out var sels))
            {
                foreach (var s in sels.EnumerateArray())
                    sb.Append(CultureInfo.InvariantCulture, $"  selector  {s.GetString()}\n");
            }
            if (ev.TryGetProperty("facts", out var facts) && facts.ValueKind == JsonValueKind.Object)
            {
                foreach (var f in facts.EnumerateObject())
                    sb.Append(CultureInfo.InvariantCulture, $"  fact      {f.Name} = {f.Value.GetString()}\n");
            }
        }
        if (d.TryGetProperty("entities", out var ents) && ents.ValueKind == JsonValueKind.Array)
        {
            sb.Append("entities\n");
            foreach (var e in ents.EnumerateArray())
            {
                var uid = e.GetProperty("uid");
                sb.Append(CultureInfo.InvariantCulture, $"  {S(uid, "type")}::\"{S(uid, "id")}\"\n");
                if (e.TryGetProperty("attrs", out var attrs))
                {
                    foreach (var at in attrs.EnumerateObject())
                        sb.Append(CultureInfo.InvariantCulture, $"    {at.Name} = {at.Value.GetRawText()}\n");
                }
            }
        }
        return sb.ToString();
    }

    private static async Task<int> WhatIfAsync(ParsedArgs a, CommandContext ctx)
    {
        var json = WantsJson(a);
        var limit = 0;
        if (a.Get("limit") is { } l && (!int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 100_000))
        {
            throw new UsageException($"--limit '{l}' is not a whole number from 1 to 100000: give e.g. --limit 1000");
        }
        var files = ReadPolicyFiles(a.Require("file"));
        using var c = AdminConnection.FromArgs(a);
        var request = new WhatIfRequest { Limit = limit };
        request.Files.AddRange(files);
        var r = await c.CallAsync(x => x.WhatIfAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (json)
        {
            Output.Json(ctx.Out, new
            {
                replayed = r.Replayed,
                changes = r.Changes.Select(ch => new
                {
                    decision_id = ch.DecisionId,
                    action = ch.Action,
                    spiffe_id = ch.SpiffeId,
                    workload = ch.Workload,
                    was = ch.Was,
                    would_be = ch.WouldBe,
                    determining_policies = ch.DeterminingPolicies.ToArray(),
                }).ToArray(),
            });
            return 0;
        }
        if (r.Changes.Count > 0)
        {
            Output.Table(ctx.Out, ["decision", "action", "spiffe id", "workload", "was", "would be", "determining policies"],
                r.Changes.Select(ch => (IReadOnlyList<string>)[ch.DecisionId, ch.Action, ch.SpiffeId, ch.Workload, ch.Was, ch.WouldBe,
                    ch.DeterminingPolicies.Count == 0 ? "(none)" : string.Join(",", ch.DeterminingPolicies)]));
        }
        ctx.Out.WriteLine($"{r.Changes.Count} of {r.Replayed} replayed decisions would change");
        return 0;
    }

    /// <summary>A .cedar file, or every .cedar file of a directory (sorted by name; sub-directories ignored).</summary>
    public static IReadOnlyList<PolicyFile> ReadPolicyFiles(string path)
    {
        string[] paths;
        if (Directory.Exists(path))
        {
            paths = [.. Directory.GetFiles(path, "*.cedar", SearchOption.TopDirectoryOnly).Order(StringComparer.Ordinal)];
            if (paths.Length == 0)
            {
                throw new UsageException($"directory '{path}' has no .cedar files: give a .cedar file or a directory that holds some");
            }
        }
        else if (File.Exists(path))
        {
            paths = [path];
        }
        else
        {
            throw new UsageException($"'{path}' does not exist: give a .cedar file or a directory of .cedar files");
        }
        if (paths.Length > MaxPolicyFiles)
        {
            throw new UsageException($"'{path}' has {paths.Length} .cedar files, more than {MaxPolicyFiles}: merge some");
        }
        long total = 0;
        var files = new List<PolicyFile>();
        foreach (var p in paths)
        {
            var info = new FileInfo(p);
            total += info.Length;
            if (total > MaxPolicyBytes)
            {
                throw new UsageException($"the policy files under '{path}' are larger than {MaxPolicyBytes >> 20} MiB: this is not a policy set");
            }
            string text;
            try
            {
                text = File.ReadAllText(p, new UTF8Encoding(false, throwOnInvalidBytes: true));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or DecoderFallbackException)
            {
                throw new CommandFailedException($"cannot read '{p}': {e.Message.ReplaceLineEndings(" ")}", code: CliErrors.File);
            }
            files.Add(new PolicyFile { Name = Path.GetFileName(p), Text = text });
        }
        return files;
    }
}
