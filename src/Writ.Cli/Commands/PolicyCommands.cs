using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Writ.Cli.CommandLine;
using Writ.Cli.Policy;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;
using Writ.Policy.Validation;

namespace Writ.Cli.Commands;

/// <summary>`writ policy ...`: Cedar policy tooling (validate, authorize, format, test).</summary>
public static class PolicyCommands
{
    private static readonly OptionSpec OutputOpt = new("output", "text (default) or json", "FORMAT");

    // Cedar messages quote with backticks; keep them readable in JSON (the output is not embedded in HTML).
    private static readonly JsonSerializerOptions JsonOut = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static bool WantsJson(ParsedArgs args) => args.Get("output") switch
    {
        null or "text" => false,
        "json" => true,
        var other => throw new UsageException($"--output must be text or json, got '{other}'"),
    };

    private static void WriteJson(CommandContext ctx, object value) => ctx.Out.WriteLine(JsonSerializer.Serialize(value, value.GetType(), JsonOut));

    public static IEnumerable<CommandSpec> All() =>
    [
        new("policy validate", "Check Cedar policies against a schema (exit 0 valid, 1 invalid).",
            [new("policies", "Cedar policy file (.cedar, or .json in Cedar's JSON policy format)", "FILE", Required: true),
             new("schema", "schema in the Cedar (.cedarschema) or JSON (.json) syntax", "FILE", Required: true), OutputOpt], Validate),
        new("policy authorize", "Decide one request: ALLOW or DENY, the determining policies and the policies that errored.",
            [new("policies", "Cedar policy file (.cedar, or .json in Cedar's JSON policy format)", "FILE", Required: true),
             new("entities", "entities file (Cedar's entities JSON)", "FILE", Required: true),
             new("principal", "principal entity, e.g. 'Workload::\"spiffe://example.org/web\"'", "UID", Required: true),
             new("action", "action entity, e.g. 'Action::\"get\"'", "UID", Required: true),
             new("resource", "resource entity, e.g. 'Secret::\"/payments/db\"'", "UID", Required: true),
             new("context", "context record as JSON, or @FILE to read it from a file (default: {})", "JSON"),
             new("schema", "schema (Cedar or JSON syntax): directs entity/context parsing and validates the request", "FILE"),
             new("links", "template links: JSON array of {templateId, newId, values} (Cedar's templateLinks)", "FILE"),
             new("expect", "allow or deny: exit 1 when the decision differs", "DECISION"), OutputOpt], Authorize),
        new("policy format", "Print Cedar policy files in canonical form (or rewrite them with --write, or check with --check).",
            [new("check", "print the files that are not formatted and exit 1 if any", IsFlag: true),
             new("write", "rewrite files in place (atomically)", IsFlag: true)], Format, "FILE..."),
        new("policy test", "Run policy test files (Cedar integration-test shape); print mismatches and 'N passed, N failed'.",
            [new("root", "directory the paths inside test files are relative to (default: the current directory)", "DIR"), OutputOpt], Test, "PATH..."),
    ];

    // ------------------------------------------------------------------ validate

    private sealed record Diagnostic(string Kind, string File, string? PolicyId, int Line, int Column, string Message)
    {
        public override string ToString()
        {
            var at = Line > 0 ? $"{File}:{Line}:{Column}: " : $"{File}: ";
            var kind = Kind == "warning" ? "warning: " : "";
            return PolicyId is null ? $"{at}{kind}{Message}" : $"{at}{kind}policy {PolicyId}: {Message}";
        }
    }

    private static Task<int> Validate(ParsedArgs args, CommandContext ctx)
    {
        var json = WantsJson(args);
        var policiesPath = args.Require("policies");
        var schemaPath = args.Require("schema");
        var diagnostics = new List<Diagnostic>();
        var schemaOk = PolicyInputs.TryLoadSchema(schemaPath, out var schema, out var schemaErrors);
        ThrowIfUnreadable(schemaPath, schemaOk, schemaErrors);
        diagnostics.AddRange(schemaErrors.Select(e => Located("schema", schemaPath, e)));
        var policiesOk = PolicyInputs.TryLoadPolicies(policiesPath, out var set, out var parseErrors);
        ThrowIfUnreadable(policiesPath, policiesOk, parseErrors);
        diagnostics.AddRange(parseErrors.Select(e => Located("parse", policiesPath, e)));

        ValidationResult? result = null;
        if (schemaOk && policiesOk)
        {
            result = Validator.Validate(set!, schema!);
            diagnostics.AddRange(result.Errors.Select(e => new Diagnostic("validation", policiesPath, e.PolicyId, e.Line, e.Column, PolicyInputs.OneLine(e.Message))));
            diagnostics.AddRange(result.Warnings.Select(w => new Diagnostic("warning", policiesPath, w.PolicyId, w.Line, w.Column, PolicyInputs.OneLine(w.Message))));
        }
        var errors = diagnostics.Where(d => d.Kind != "warning").ToList();
        var valid = errors.Count == 0;
        if (json)
        {
            WriteJson(ctx, new
            {
                valid,
                policies = set?.Policies.Count ?? 0,
                templates = set?.Templates.Count ?? 0,
                diagnostics = diagnostics.Select(d => new
                {
                    kind = d.Kind,
                    file = d.File,
                    policy = d.PolicyId,
                    line = d.Line,
                    column = d.Column,
                    message = d.Message,
                }).ToList(),
            });
        }
        else
        {
            foreach (var d in diagnostics)
            {
                ctx.Out.WriteLine(d.ToString());
            }
            if (valid)
            {
                ctx.Out.WriteLine($"valid: {Count(set!.Policies.Count, "policy", "policies")} and {Count(set.Templates.Count, "template", "templates")} in {policiesPath} pass validation against {schemaPath}");
            }
        }
        if (!valid)
        {
            var what = !schemaOk ? $"the schema {schemaPath} does not parse" : !policiesOk ? $"{policiesPath} does not parse" : $"{policiesPath} does not validate against {schemaPath}";
            throw new CommandFailedException($"{what}: {Count(errors.Count, "error", "errors")} (listed above); fix {(errors.Count == 1 ? "it" : "them")} and run again", code: CliErrors.PolicyInvalid);
        }
        return Task.FromResult(CommandRunner.ExitOk);
    }

    /// <summary>A file that cannot be read at all is a one-line failure; its parse errors are diagnostics.</summary>
    private static void ThrowIfUnreadable(string path, bool ok, IReadOnlyList<string> errors)
    {
        if (!ok && errors.Count == 1 && !errors[0].StartsWith(path + ":", StringComparison.Ordinal))
        {
            throw new CommandFailedException(errors[0], code: CliErrors.PolicyInvalid);
        }
    }

    /// <summary>Splits a `file:line:col: message` (or `file: message`) error into its parts.</summary>
    private static Diagnostic Located(string kind, string file, string error)
    {
        if (!error.StartsWith(file + ":", StringComparison.Ordinal))
        {
            return new Diagnostic(kind, file, null, 0, 0, error);
        }
        var rest = error[(file.Length + 1)..];
        var parts = rest.Split(':', 3);
        return parts.Length == 3 && int.TryParse(parts[0], CultureInfo.InvariantCulture, out var line) && int.TryParse(parts[1], CultureInfo.InvariantCulture, out var col)
            ? new Diagnostic(kind, file, null, line, col, parts[2].TrimStart())
            : new Diagnostic(kind, file, null, 0, 0, rest.TrimStart());
    }

    private static string Count(int n, string one, string many) => n.ToString(CultureInfo.InvariantCulture) + " " + (n == 1 ? one : many);

    // ------------------------------------------------------------------ authorize

    private static Task<int> Authorize(ParsedArgs args, CommandContext ctx)
    {
        var json = WantsJson(args);
        var principal = Uid(args, "principal");
        var action = Uid(args, "action");
        var resource = Uid(args, "resource");
        bool? expectAllow = args.Get("expect") switch
        {
            null => null,
            "allow" => true,
            "deny" => false,
            var other => throw new UsageException($"--expect must be allow or deny, got '{other}'"),
        };

        CedarSchema? schema = null;
        if (args.Get("schema") is { } schemaPath && !PolicyInputs.TryLoadSchema(schemaPath, out schema, out var schemaErrors))
        {
            throw new CommandFailedException(First(schemaErrors, $"run 'writ policy validate --schema {schemaPath}' for all of them"), code: CliErrors.PolicyInvalid);
        }
        var policiesPath = args.Require("policies");
        if (!PolicyInputs.TryLoadPolicies(policiesPath, out var policies, out var parseErrors))
        {
            throw new CommandFailedException(First(parseErrors, "run 'writ policy validate' for all of them"), code: CliErrors.PolicyInvalid);
        }
        if (args.Get("links") is { } linksPath)
        {
            if (!PolicyInputs.TryLoadLinks(linksPath, policies!, out policies, out var linkError))
            {
                throw new CommandFailedException(linkError, code: CliErrors.PolicyInvalid);
            }
        }
        if (!PolicyInputs.TryLoadEntities(args.Require("entities"), schema, out var entities, out var entitiesError))
        {
            throw new CommandFailedException(entitiesError, code: CliErrors.PolicyInvalid);
        }
        var context = RecordValue.Empty;
        if (args.Get("context") is { } contextArg)
        {
            var contextJson = contextArg;
            var where = "--context";
            if (contextArg.StartsWith('@'))
            {
                where = contextArg[1..];
                if (!PolicyInputs.TryReadText(where, "context file", out contextJson, out var readError))
                {
                    throw new CommandFailedException(readError);
                }
            }
            if (!CedarJson.TryParseContext(contextJson, schema, action, out var parsed, out var contextError))
            {
                throw new CommandFailedException($"{where}: {PolicyInputs.OneLine(contextError)}", code: CliErrors.PolicyInvalid);
            }
            context = parsed!;
        }
        if (schema is not null && !RequestCheck.TryCheck(schema, principal, action, resource, out var requestError))
        {
            throw new CommandFailedException("the request does not match the schema: " + requestError, code: CliErrors.PolicyInvalid);
        }

        var response = Authorizer.IsAuthorized(new Request(principal, action, resource, context), policies!, entities!);
        var decision = response.IsAllowed ? "ALLOW" : "DENY";
        if (json)
        {
            WriteJson(ctx, new
            {
                decision = response.IsAllowed ? "allow" : "deny",
                determining = response.DeterminingPolicies.Select(p => new
                {
                    id = p.Id,
                    effect = p.Effect == Effect.Permit ? "permit" : "forbid",
                    line = p.Span.Line,
                    column = p.Span.Column,
                    annotations = p.Annotations,
                }).ToList(),
                errors = response.Errors.Select(e => new
                {
                    policy = e.PolicyId,
                    line = e.Error.Span.Line,
                    column = e.Error.Span.Column,
                    message = PolicyInputs.OneLine(e.Error.Message),
                }).ToList(),
            });
        }
        else
        {
            ctx.Out.WriteLine(decision);
            if (response.DeterminingPolicies.Count == 0)
            {
                ctx.Out.WriteLine(response.IsAllowed ? "determining policies: none" : "determining policies: none (no permit applies: denied by default)");
            }
            else
            {
                ctx.Out.WriteLine("determining policies:");
                foreach (var p in response.DeterminingPolicies)
                {
                    var at = p.Span.Line > 0 ? $" at {policiesPath}:{p.Span.Line}:{p.Span.Column}" : "";
                    var notes = string.Concat(p.Annotations.Select(a => $" @{a.Key}({EntityUid.Quote(a.Value)})"));
                    ctx.Out.WriteLine($"  {(p.Effect == Effect.Permit ? "permit" : "forbid")} {p.Id}{at}{notes}");
                }
            }
            if (response.Errors.Count > 0)
            {
                ctx.Out.WriteLine("errors (these policies were skipped):");
                foreach (var e in response.Errors)
                {
                    var at = e.Error.Span.Line > 0 ? $"{policiesPath}:{e.Error.Span.Line}:{e.Error.Span.Column}: " : "";
                    ctx.Out.WriteLine($"  {e.PolicyId}: {at}{PolicyInputs.OneLine(e.Error.Message)}");
                }
            }
        }
        if (expectAllow is { } want && want != response.IsAllowed)
        {
            throw new CommandFailedException($"expected {(want ? "ALLOW" : "DENY")} but the decision is {decision}", code: CliErrors.PolicyCheckFailed);
        }
        return Task.FromResult(CommandRunner.ExitOk);
    }

    private static EntityUid Uid(ParsedArgs args, string name) =>
        PolicyInputs.TryParseEntityUid(args.Require(name), out var uid, out var error) ? uid! : throw new UsageException($"--{name}: {error}");

    private static string First(IReadOnlyList<string> errors, string more) =>
        errors.Count <= 1 ? errors[0] : $"{errors[0]} (and {errors.Count - 1} more; {more})";

    // ------------------------------------------------------------------ format

    private static Task<int> Format(ParsedArgs args, CommandContext ctx)
    {
        var check = args.Flag("check");
        var write = args.Flag("write");
        if (check && write)
        {
            throw new UsageException("give --check or --write, not both");
        }
        if (args.Positionals.Count == 0)
        {
            throw new UsageException("'writ policy format' needs at least one FILE, e.g. writ policy format policies.cedar");
        }
        // format everything first: one bad file means nothing is written
        var results = new List<(string Path, string Original, string Formatted)>();
        foreach (var path in args.Positionals)
        {
            if (!PolicyInputs.TryReadText(path, "policy file", out var text, out var readError))
            {
                throw new CommandFailedException(readError);
            }
            if (!PolicyFileFormatter.TryFormat(path, text, out var formatted, out var error))
            {
                throw new CommandFailedException(write ? error + "; nothing was written" : error, code: CliErrors.PolicyInvalid);
            }
            results.Add((path, text, formatted));
        }
        if (check)
        {
            var changed = results.Where(r => !string.Equals(r.Original, r.Formatted, StringComparison.Ordinal)).ToList();
            foreach (var r in changed)
            {
                ctx.Out.WriteLine($"would reformat: {r.Path}");
            }
            if (changed.Count > 0)
            {
                throw new CommandFailedException($"{Count(changed.Count, "file is", "files are")} not formatted; run 'writ policy format --write' on {(changed.Count == 1 ? "it" : "them")}", code: CliErrors.PolicyInvalid);
            }
            ctx.Out.WriteLine($"{Count(results.Count, "file", "files")} already formatted");
            return Task.FromResult(CommandRunner.ExitOk);
        }
        if (write)
        {
            foreach (var r in results.Where(r => !string.Equals(r.Original, r.Formatted, StringComparison.Ordinal)))
            {
                WriteInPlace(r.Path, r.Formatted);
                ctx.Out.WriteLine($"reformatted: {r.Path}");
            }
            return Task.FromResult(CommandRunner.ExitOk);
        }
        foreach (var r in results)
        {
            ctx.Out.Write(r.Formatted);
        }
        return Task.FromResult(CommandRunner.ExitOk);
    }

    /// <summary>Replaces a file atomically (temp file in the same directory, renamed over it), keeping its mode.</summary>
    private static void WriteInPlace(string path, string content)
    {
        try
        {
            var target = new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);
            var mode = OperatingSystem.IsWindows() ? Output.PublicFile : File.GetUnixFileMode(target);
            Output.WriteFilesAtomically(Path.GetDirectoryName(target)!, [(Path.GetFileName(target), content, mode)]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot rewrite {path}: {PolicyInputs.OneLine(e.Message)}; the file is unchanged", code: CliErrors.File);
        }
    }

    // ------------------------------------------------------------------ test

    private static Task<int> Test(ParsedArgs args, CommandContext ctx)
    {
        if (args.Positionals.Count == 0)
        {
            throw new UsageException("'writ policy test' needs at least one PATH (a test file or a directory of them)");
        }
        var json = WantsJson(args);
        var root = args.Get("root") ?? Directory.GetCurrentDirectory();
        if (!Directory.Exists(root))
        {
            throw new CommandFailedException($"--root {root} is not a directory; give the directory the test files' paths are relative to");
        }
        var files = new List<string>();
        foreach (var p in args.Positionals)
        {
            if (!PolicyTestRunner.TryExpand(p, out var found, out var error))
            {
                throw new CommandFailedException(error);
            }
            files.AddRange(found);
        }
        var report = new PolicyTestRunner(root).Run(files);
        if (json)
        {
            WriteJson(ctx, new
            {
                files = report.Files,
                passed = report.Passed,
                failed = report.Failed,
                mismatches = report.Mismatches.Select(m => new { file = m.File, @case = m.Case, expected = m.Expected, got = m.Got }).ToList(),
            });
        }
        else
        {
            foreach (var m in report.Mismatches)
            {
                ctx.Out.WriteLine(m.ToString());
            }
            ctx.Out.WriteLine($"{report.Passed} passed, {report.Failed} failed");
        }
        return Task.FromResult(report.Failed == 0 ? CommandRunner.ExitOk : CommandRunner.ExitFailure);
    }
}
