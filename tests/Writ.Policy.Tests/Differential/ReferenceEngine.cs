using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Writ.Policy.Ast;
using Writ.Policy.Tests.Schema;

namespace Writ.Policy.Tests.Differential;

/// <summary>What the reference engine (or Writ) answered for one request: a decision, or a failure (bad input).</summary>
internal sealed record Answer(string? Decision, IReadOnlyList<string> Reasons, IReadOnlyList<string> Errors, string? Failure, string Detail = "")
{
    public bool SameAs(Answer other) =>
        (Failure is null) == (other.Failure is null)
        && (Failure is not null || (Decision == other.Decision && Reasons.SequenceEqual(other.Reasons) && Errors.SequenceEqual(other.Errors)));

    public override string ToString() =>
        Failure is not null ? "failure: " + Failure : $"{Decision} reasons [{string.Join(",", Reasons)}] errors [{string.Join(",", Errors)}] {Detail}";
}

/// <summary>Validation of a whole policy set: pass/fail and the ids of the policies with errors (null: not validated).</summary>
internal sealed record Validation(bool Passed, IReadOnlyList<string> Policies, string Detail)
{
    public bool SameAs(Validation other) => Passed == other.Passed && Policies.SequenceEqual(other.Policies);

    public override string ToString() => (Passed ? "passes" : "fails") + " [" + string.Join(",", Policies) + "] " + Detail;
}

internal sealed record CaseAnswer(Validation? Validation, IReadOnlyList<Answer> Answers);

/// <summary>
/// The reference process crashed (e.g. a V8 fatal error inside node) twice on the same batch: an infrastructure
/// failure of the test machine or of node, not a disagreement between Writ and the reference engine.
/// </summary>
internal sealed class ReferenceEngineCrashedException(string message) : Exception(message);

/// <summary>
/// The official Cedar engine (<c>@cedar-policy/cedar-wasm@4.12.0</c>) behind <c>tests/interop/cedar/diff.mjs</c>:
/// one long-lived node process, one JSON line per case in, one JSON line per case out. If the process dies before it
/// has answered a batch (a crash inside node, not an answer), the batch is sent once more to a fresh process; a second
/// crash throws <see cref="ReferenceEngineCrashedException"/>, which says so.
/// </summary>
internal sealed class ReferenceEngine : IDisposable
{
    private readonly StringBuilder _stderr = new();
    private readonly string _dir;
    private readonly string _script;
    private readonly IReadOnlyDictionary<string, string> _environment;
    private Process _process;

    public ReferenceEngine()
        : this(Path.Combine("cedar", "diff.mjs"), new Dictionary<string, string>())
    {
    }

    /// <summary>Runs <paramref name="script"/> (relative to tests/interop, or absolute) with node, with extra environment variables.</summary>
    internal ReferenceEngine(string script, IReadOnlyDictionary<string, string> environment)
    {
        _script = script;
        _environment = environment;
        _dir = Path.Combine(CedarTestData.RepoRoot, "tests", "interop");
        if (!File.Exists(Path.Combine(_dir, "node_modules", "@cedar-policy", "cedar-wasm", "package.json")))
        {
            Run("npm", _dir, "ci", "--no-audit", "--no-fund", "--loglevel=error");
        }

        _process = Start();
    }

    /// <summary>How many times the reference process crashed (and was restarted) so far.</summary>
    public int Crashes { get; private set; }

    private Process Start()
    {
        var dir = _dir;
        var psi = new ProcessStartInfo("node")
        {
            WorkingDirectory = dir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = new UTF8Encoding(false),
        };
        psi.ArgumentList.Add(_script);
        foreach (var (name, value) in _environment) psi.Environment[name] = value;
        lock (_stderr) _stderr.Clear();
        var process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start node for the Cedar reference engine; install Node.js 20+");
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_stderr) _stderr.AppendLine(e.Data);
        };
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>After a failure (e.g. a wasm trap, which leaves the module unusable) the next batch gets a fresh process.</summary>
    private void Restart()
    {
        Stop();
        _process = Start();
    }

    private static void Run(string file, string dir, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)) || p.ExitCode != 0)
        {
            throw new InvalidOperationException($"`{file} {string.Join(' ', args)}` in tests/interop failed: {output.Result} {error.Result}".ReplaceLineEndings(" "));
        }
    }

    /// <summary>Answers many cases, streaming them through the bridge (writes and reads overlap).</summary>
    public IReadOnlyList<CaseAnswer> Answer(IReadOnlyList<GenCase> cases, bool validate)
    {
        var replies = Exchange(cases.Select(c => ToLine(c, validate)).ToList());
        var answers = new List<CaseAnswer>(cases.Count);
        InvalidOperationException? failure = null;
        for (var i = 0; i < cases.Count; i++)
        {
            // Parse every reply of the batch even after a failure, to report the first one.
            try
            {
                answers.Add(Parse(replies[i], cases[i]));
            }
            catch (InvalidOperationException e)
            {
                failure ??= e;
            }
        }

        if (failure is not null)
        {
            Restart();
            throw failure;
        }

        return answers;
    }

    /// <summary>Whether each text parses as a static policy set in the reference engine.</summary>
    public IReadOnlyList<bool> Parses(IReadOnlyList<string> texts)
    {
        var request = new JsonObject { ["parse"] = new JsonArray(texts.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()) };
        var line = Exchange([request.ToJsonString()])[0];
        var o = JsonNode.Parse(line)!.AsObject();
        if (o["parsed"] is not JsonArray parsed)
        {
            Restart();
            throw new InvalidOperationException("the reference bridge failed on a parse batch: " + (o["fatal"]?.GetValue<string>() ?? line));
        }

        return parsed.Select(x => x!.GetValue<bool>()).ToList();
    }

    /// <summary>
    /// Sends the lines and reads one reply per line. A process that dies first has crashed (an answer, even "fatal", is a
    /// line): the batch is retried once in a fresh process, and a second crash is reported as the infrastructure failure it is.
    /// </summary>
    private List<string> Exchange(IReadOnlyList<string> lines)
    {
        string? firstCrash = null;
        while (true)
        {
            if (TryExchange(lines, out var replies, out var crash)) return replies;
            Crashes++;
            Restart();
            if (firstCrash is not null)
            {
                throw new ReferenceEngineCrashedException(
                    $"INFRASTRUCTURE FAILURE, not a mismatch: the Cedar reference engine process (node {_script}) crashed twice on the same batch of {lines.Count} " +
                    $"line(s), so this batch was not compared. First crash: {firstCrash}. Second crash: {crash}.");
            }

            firstCrash = crash;
            TestContext.Current.TestOutputHelper?.WriteLine($"the Cedar reference engine process crashed ({crash}); retrying the batch once in a fresh process");
        }
    }

    private bool TryExchange(IReadOnlyList<string> lines, out List<string> replies, out string crash)
    {
        var process = _process;
        var writer = Task.Run(() =>
        {
            foreach (var line in lines) process.StandardInput.WriteLine(line);
            process.StandardInput.Flush();
        });
        replies = new List<string>(lines.Count);
        crash = "";
        while (replies.Count < lines.Count)
        {
            var line = process.StandardOutput.ReadLine();
            if (line is null)
            {
                // A dead process also breaks the writer's pipe: that is part of the crash, not a second failure.
                try
                {
                    writer.GetAwaiter().GetResult();
                }
                catch (IOException)
                {
                }

                crash = DescribeExit(process);
                return false;
            }

            replies.Add(line);
        }

        writer.GetAwaiter().GetResult();
        return true;
    }

    private string DescribeExit(Process process)
    {
        string how;
        if (process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.WaitForExit();   // and let stderr drain
            var code = process.ExitCode;
            how = code > 128 && code < 160 ? $"killed by signal {code - 128} (exit code {code})" : $"exit code {code}";
        }
        else
        {
            how = "closed its output but did not exit";
        }

        string err;
        lock (_stderr) err = _stderr.ToString();
        var tail = string.Join(" | ", err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).TakeLast(6));
        return how + (tail.Length > 0 ? "; stderr: " + tail : "");
    }

    private static JsonObject Uid(EntityUid u) => new() { ["type"] = u.Type, ["id"] = u.Id };

    private static string ToLine(GenCase c, bool validate)
    {
        var policies = new JsonObject();
        var templates = new JsonObject();
        var est = new JsonArray();
        foreach (var p in c.Policies)
        {
            // Every fourth case goes to the reference in Cedar's JSON policy format as Writ writes it, so the official
            // reader checks Writ's writer: the answers must not change.
            // (Not for deeply nested policies: the reference reads JSON with a nesting limit of 128.)
            if (c.Seed % 4 == 1 && Writ.Policy.Syntax.Parser.TryParsePolicies(p.Text, out var parsed, out _) && parsed.Count == 1
                && Writ.Policy.Json.PolicyJson.ToJson(parsed[0]) is var json && JsonDepth(json) < 100)
            {
                (p.IsTemplate ? templates : policies)[p.Id] = json;
                est.Add(p.Id);
            }
            else
            {
                (p.IsTemplate ? templates : policies)[p.Id] = p.Text;
            }
        }

        var links = new JsonArray();
        foreach (var l in c.Links)
        {
            var values = new JsonObject();
            if (l.Principal is not null) values["?principal"] = Uid(l.Principal);
            if (l.Resource is not null) values["?resource"] = Uid(l.Resource);
            links.Add(new JsonObject { ["templateId"] = l.TemplateId, ["newId"] = l.NewId, ["values"] = values });
        }

        var requests = new JsonArray();
        foreach (var r in c.Requests)
        {
            requests.Add(new JsonObject
            {
                ["principal"] = Uid(r.Principal), ["action"] = Uid(r.Action), ["resource"] = Uid(r.Resource), ["context"] = r.ContextJson,
                ["validateRequest"] = r.ValidateRequest,
            });
        }

        var o = new JsonObject
        {
            ["id"] = c.Seed,
            ["policies"] = policies,
            ["templates"] = templates,
            ["links"] = links,
            ["est"] = est,
            ["entities"] = c.EntitiesJson,
            ["schema"] = c.Schema,
            ["validate"] = validate,
            ["requests"] = requests,
        };
        return o.ToJsonString();
    }

    private static int JsonDepth(string json)
    {
        int depth = 0, max = 0;
        var inString = false;
        for (var i = 0; i < json.Length; i++)
        {
            var ch = json[i];
            if (inString)
            {
                if (ch == '\\') i++;
                else if (ch == '"') inString = false;
            }
            else if (ch == '"') inString = true;
            else if (ch is '{' or '[') max = Math.Max(max, ++depth);
            else if (ch is '}' or ']') depth--;
        }

        return max;
    }

    private static List<string> Strings(JsonNode? n) => n?.AsArray().Select(x => x!.GetValue<string>()).ToList() ?? [];

    private static CaseAnswer Parse(string line, GenCase c)
    {
        var o = JsonNode.Parse(line)!.AsObject();
        if (o["fatal"] is { } fatal) throw new InvalidOperationException($"the reference bridge failed on seed {c.Seed}: {fatal}");
        Validation? validation = null;
        if (o["validation"] is JsonObject v)
        {
            validation = new Validation(v["passed"]!.GetValue<bool>(), Strings(v["policies"]),
                v["failure"]?.GetValue<string>() ?? string.Join("; ", Strings(v["messages"])));
        }

        var answers = new List<Answer>();
        foreach (var a in o["answers"]!.AsArray())
        {
            var ao = a!.AsObject();
            answers.Add(ao["failure"] is { } f
                ? new Answer(null, [], [], f.GetValue<string>())
                : new Answer(ao["decision"]!.GetValue<string>(), Strings(ao["reason"]), Strings(ao["errors"]), null, string.Join("; ", Strings(ao["messages"]))));
        }

        return new CaseAnswer(validation, answers);
    }

    public void Dispose() => Stop();

    private void Stop()
    {
        try
        {
            _process.StandardInput.Close();
        }
        catch (IOException)
        {
            // a crashed process: the unread input has nowhere to go
        }

        try
        {
            if (!_process.WaitForExit(TimeSpan.FromSeconds(10))) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }

        _process.Dispose();
    }
}
