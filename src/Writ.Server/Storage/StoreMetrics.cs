using System.Diagnostics.Metrics;

namespace Writ.Server.Storage;

/// <summary>
/// Store round trips (issue #16: store queries per change, independent of the number of agents): one count per store
/// operation (one pooled connection use: a statement or a transaction), labelled with the operation's fixed name, e.g.
/// "read entry changes". Exported as <c>writ_store_queries_total{operation}</c> (docs/telemetry.md).
/// </summary>
public static class StoreMetrics
{
    public const string MeterName = "Writ.Server.Store";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Queries = Meter.CreateCounter<long>("writ.store.queries", "{query}",
        "Store round trips (one statement or transaction each), by operation.");

    private static long _total;

    /// <summary>All store operations of this process so far (every store instance).</summary>
    public static long Total => Interlocked.Read(ref _total);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> Labels = new(StringComparer.Ordinal);

    /// <param name="operation">the store operation's fixed name (the code's literal, never data), e.g. "read entry changes".</param>
    internal static void Count(string operation)
    {
        Interlocked.Increment(ref _total);
        if (!Queries.Enabled)
            return;
        Queries.Add(1, new KeyValuePair<string, object?>("operation", Labels.GetOrAdd(operation, LabelOf)));
    }

    /// <summary>"re-attest node" → "re_attest_node": lower case letters and '_' only.</summary>
    internal static string LabelOf(string operation) =>
        new([.. operation.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_')]);
}
