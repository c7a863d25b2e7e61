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
//   CedarBench run DIR SIZE SECONDS WARMUP OUT.json [store|json]
//       single-thread decision loop over those files; writes the results. `store` (default): entities parsed once into
//       a store, as the Writ server holds them. `json`: every call parses its request and the entities it can reach from
//       JSON first, the way cedar-wasm is called, for a like-for-like row.
const string Usage = "usage: CedarBench generate DIR SIZE... | CedarBench run DIR SIZE SECONDS WARMUP_SECONDS OUT.json [store|json]";
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

if (args.Length is not (6 or 7) || args[0] != "run" || (args.Length == 7 && args[6] is not ("store" or "json")))
{
    Console.Error.WriteLine(Usage);
    return 2;
}

var dir = args[1];
var n = int.Parse(args[2], inv);
var seconds = double.Parse(args[3], inv);
var warmup = double.Parse(args[4], inv);
var output = args[5];
var perCallJson = args.Length == 7 && args[6] == "json";

var parseStart = Stopwatch.GetTimestamp();
if (!PolicySet.TryParse(File.ReadAllText(Path.Combine(dir, $"policies-{n}.cedar")), out var policies, out var parseErrors))
{
    Console.Error.WriteLine($"policies-{n}.cedar does not parse: {parseErrors[0]}; regenerate it with `CedarBench generate`");
    return 1;
}

var parseMs = Stopwatch.GetElapsedTime(parseStart).TotalMilliseconds; // the policy set only, cold (includes JIT)
if (!Entities.TryParseJson(File.ReadAllText(Path.Combine(dir, $"entities-{n}.json")), null, out var entities, out var error))
{
    Console.Error.WriteLine($"entities-{n}.json is not valid: {error}; regenerate it with `CedarBench generate`");
    return 1;
}

var requests = new List<Request>();
var requestJson = new List<string>();
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
        requestJson.Add(element.GetRawText());
    }
}

var reqs = requests.ToArray();
var reqTexts = requestJson.ToArray();
var sliceTexts = requests.Select(r => CedarJson.ToJson(Entities.Create(Reachable(r, entities!)))).ToArray();
Func<int, Response> decide = perCallJson
    ? i => Entities.TryParseJson(sliceTexts[i], null, out var es, out var e) && CedarJson.TryParseRequest(reqTexts[i], null, out var rq, out e)
        ? Authorizer.IsAuthorized(rq!, policies!, es!)
        : throw new InvalidOperationException("a request that parsed before no longer parses: " + e)
    : i => Authorizer.IsAuthorized(reqs[i], policies!, entities!);
if (perCallJson)
{
    // The per-call path must decide exactly as the store does (the entities a request can reach are all it needs).
    for (var i = 0; i < reqs.Length; i++)
    {
        var viaJson = decide(i);
        var viaStore = Authorizer.IsAuthorized(reqs[i], policies!, entities!);
        if (viaJson.Decision != viaStore.Decision || !viaJson.Reasons.SetEquals(viaStore.Reasons) || viaJson.Errors.Count != viaStore.Errors.Count)
        {
            Console.Error.WriteLine($"request #{i} decides differently with its entities parsed per call; the reachable-entity slice is incomplete");
            return 1;
        }
    }
}

// The decisions the engine gives, in the format the Node side writes too: decision|reasons|erroring policies.
var decisions = Enumerable.Range(0, reqs.Length).Select(i =>
{
    var response = decide(i);
    var reasons = string.Join(",", response.Reasons.Order(StringComparer.Ordinal));
    var errored = string.Join(",", response.Errors.Select(e => e.PolicyId).Distinct().Order(StringComparer.Ordinal));
    return $"{(response.IsAllowed ? "allow" : "deny")}|{reasons}|{errored}";
}).ToList();

Loop(warmup, null);
var latencies = new List<long>(capacity: 1 << 22);
var (count, elapsed) = Loop(seconds, latencies);
var sorted = latencies.ToArray();
Array.Sort(sorted);
double Micro(long ticks) => ticks * 1_000_000.0 / Stopwatch.Frequency;
var result = new Dictionary<string, object>
{
    ["engine"] = perCallJson ? "writ-json-per-call" : "writ",
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
        _ = decide(i);
        now = Stopwatch.GetTimestamp();
        times?.Add(now - t0);
        done++;
        if (++i == reqs.Length) i = 0;
    }

    return (done, (now - start) / (double)Stopwatch.Frequency);
}

// Every entity a request can reach: principal, action and resource, their ancestors, and entities referenced from
// attributes or the context (the same closure wasm-bench.mjs passes to cedar-wasm).
static List<Entity> Reachable(Request request, Entities store)
{
    var seen = new Dictionary<EntityUid, Entity>();
    var pending = new Stack<EntityUid>([request.Principal, request.Action, request.Resource]);
    void Visit(Value value)
    {
        switch (value)
        {
            case EntityValue e: pending.Push(e.Uid); break;
            case SetValue s: foreach (var item in s.Items) Visit(item); break;
            case RecordValue r: foreach (var field in r.Fields.Values) Visit(field); break;
        }
    }

    Visit(request.Context);
    while (pending.TryPop(out var uid))
    {
        if (seen.ContainsKey(uid) || !store.TryGet(uid, out var entity)) continue;
        seen.Add(uid, entity);
        foreach (var parent in entity.Parents) pending.Push(parent);
        foreach (var attr in entity.Attributes.Values) Visit(attr);
        foreach (var tag in entity.Tags.Values) Visit(tag);
    }

    return [.. seen.Values];
}
