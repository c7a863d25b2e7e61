using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Writ.Benchmarks.Policy;
using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;

// Usage:
//   CedarBench generate DIR SIZE...                  writes policies-SIZE.cedar, entities-SIZE.json, requests-SIZE.json
//   CedarBench run DIR SIZE SECONDS WARMUP OUT.json  single-thread decision loop over those files; writes the results
const string Usage = "usage: CedarBench generate DIR SIZE... | CedarBench run DIR SIZE SECONDS WARMUP_SECONDS OUT.json";
var inv = CultureInfo.InvariantCulture;
if (args.Length >= 3 && args[0] == "generate")
{
    Directory.CreateDirectory(args[1]);
    foreach (var sizeText in args[2..])
    {
        var size = int.Parse(sizeText, inv);
        var set = WorkloadPolicySets.Generate(size);
        File.WriteAllText(Path.Combine(args[1], $"policies-{size}.cedar"), set.PolicyText);
        File.WriteAllText(Path.Combine(args[1], $"entities-{size}.json"), set.EntitiesJson);
        File.WriteAllText(Path.Combine(args[1], $"requests-{size}.json"), set.RequestsJson);
    }

    return 0;
}

if (args.Length != 6 || args[0] != "run")
{
    Console.Error.WriteLine(Usage);
    return 2;
}

var dir = args[1];
var n = int.Parse(args[2], inv);
var seconds = double.Parse(args[3], inv);
var warmup = double.Parse(args[4], inv);
var output = args[5];

var parseStart = Stopwatch.GetTimestamp();
if (!PolicySet.TryParse(File.ReadAllText(Path.Combine(dir, $"policies-{n}.cedar")), out var policies, out var parseErrors))
{
    Console.Error.WriteLine($"policies-{n}.cedar does not parse: {parseErrors[0]}; regenerate it with `CedarBench generate`");
    return 1;
}

if (!Entities.TryParseJson(File.ReadAllText(Path.Combine(dir, $"entities-{n}.json")), null, out var entities, out var error))
{
    Console.Error.WriteLine($"entities-{n}.json is not valid: {error}; regenerate it with `CedarBench generate`");
    return 1;
}

var parseMs = Stopwatch.GetElapsedTime(parseStart).TotalMilliseconds;
var requests = new List<Request>();
using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, $"requests-{n}.json"))))
{
    foreach (var element in doc.RootElement.EnumerateArray())
    {
        if (!CedarJson.TryParseRequest(element.GetRawText(), null, out var request, out error))
        {
            Console.Error.WriteLine($"requests-{n}.json has an invalid request: {error}; regenerate it with `CedarBench generate`");
            return 1;
        }

        requests.Add(request!);
    }
}

// The decisions the engine gives, in the format the Node side writes too: decision|reasons|erroring policies.
var decisions = requests.Select(r =>
{
    var response = Authorizer.IsAuthorized(r, policies!, entities!);
    var reasons = string.Join(",", response.Reasons.Order(StringComparer.Ordinal));
    var errored = string.Join(",", response.Errors.Select(e => e.PolicyId).Distinct().Order(StringComparer.Ordinal));
    return $"{(response.IsAllowed ? "allow" : "deny")}|{reasons}|{errored}";
}).ToList();

var reqs = requests.ToArray();
Loop(warmup, null);
var latencies = new List<long>(capacity: 1 << 22);
var (count, elapsed) = Loop(seconds, latencies);
var sorted = latencies.ToArray();
Array.Sort(sorted);
double Micro(long ticks) => ticks * 1_000_000.0 / Stopwatch.Frequency;
var result = new Dictionary<string, object>
{
    ["engine"] = "writ",
    ["runtime"] = ".NET " + Environment.Version,
    ["size"] = n,
    ["policies"] = policies!.Policies.Count,
    ["entities"] = entities!.Count,
    ["parseMs"] = Math.Round(parseMs, 2),
    ["decisions"] = decisions,
    ["count"] = count,
    ["seconds"] = Math.Round(elapsed, 3),
    ["perSecond"] = Math.Round(count / elapsed),
    ["p50us"] = Math.Round(Micro(sorted[(int)(0.50 * (sorted.Length - 1))]), 2),
    ["p99us"] = Math.Round(Micro(sorted[(int)(0.99 * (sorted.Length - 1))]), 2),
};
File.WriteAllText(output, JsonSerializer.Serialize(result));
return 0;

// Decides the request mix round-robin on this thread for the given time; each decision timed on its own.
(long Count, double Seconds) Loop(double duration, List<long>? times)
{
    var end = Stopwatch.GetTimestamp() + (long)(duration * Stopwatch.Frequency);
    var start = Stopwatch.GetTimestamp();
    long done = 0;
    var i = 0;
    var now = start;
    while (now < end)
    {
        var t0 = Stopwatch.GetTimestamp();
        _ = Authorizer.IsAuthorized(reqs[i], policies!, entities!);
        now = Stopwatch.GetTimestamp();
        times?.Add(now - t0);
        done++;
        if (++i == reqs.Length) i = 0;
    }

    return (done, (now - start) / (double)Stopwatch.Frequency);
}
