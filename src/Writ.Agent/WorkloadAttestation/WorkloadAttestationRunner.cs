using System.Collections.ObjectModel;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Writ.Agent.PeerTracking;
using Writ.Protocol.Evidence;

namespace Writ.Agent.WorkloadAttestation;

/// <summary>
/// Attests the peer of a Workload API connection: pins the process, runs every attestor
/// concurrently with a per-attestor timeout, and re-checks the pin afterwards so that evidence
/// gathered from a process that exited, was replaced by a recycled pid, or exec'd another program
/// during attestation is thrown away. A failing or timing-out attestor is logged and recorded in
/// <see cref="ProcessEvidence.AttestorErrors"/>; its selectors are dropped and the others still count.
/// </summary>
public sealed partial class WorkloadAttestationRunner
{
    private readonly IWorkloadAttestor[] _attestors;
    private readonly IProcFs _proc;
    private readonly TimeSpan _timeout;
    private readonly ILogger _log;
    private readonly TimeProvider _time;

    public WorkloadAttestationRunner(IEnumerable<IWorkloadAttestor> attestors, IProcFs proc, TimeSpan timeout, ILogger log)
        : this(attestors, proc, timeout, log, TimeProvider.System)
    {
    }

    public WorkloadAttestationRunner(IEnumerable<IWorkloadAttestor> attestors, IProcFs proc, TimeSpan timeout, ILogger log, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(attestors);
        ArgumentNullException.ThrowIfNull(proc);
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        _attestors = [.. attestors];
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (IWorkloadAttestor a in _attestors)
        {
            if (a is null || !Selector.IsValidType(a.Name))
            {
                throw new ArgumentException("every workload attestor needs a lowercase name (letters, digits, '_' or '-'); fix the attestor configuration", nameof(attestors));
            }

            if (!names.Add(a.Name))
            {
                throw new ArgumentException($"workload attestor '{a.Name}' is configured twice; configure each attestor once", nameof(attestors));
            }
        }

        _proc = proc;
        _timeout = timeout;
        _log = log;
        _time = time;
    }

    /// <summary>
    /// Attests the process behind <paramref name="peer"/> (as read from SO_PEERCRED). Returns an
    /// error (never evidence) if the process cannot be pinned or does not survive attestation
    /// unchanged. Cancelling <paramref name="ct"/> throws <see cref="OperationCanceledException"/>.
    /// Prefer <see cref="AttestConnectionAsync"/>, which also closes the pid-reuse window between
    /// connect and pin where the kernel allows it.
    /// </summary>
    public Task<WorkloadAttestationResult> AttestAsync(PeerCredentials peer, CancellationToken ct) =>
        AttestAsync(peer, null, ct);

    /// <summary>
    /// Reads the peer's credentials and pidfd from a connected Unix socket and attests it. On
    /// kernels without SO_PEERPIDFD it falls back to pid + start time only.
    /// </summary>
    public async Task<WorkloadAttestationResult> AttestConnectionAsync(System.Net.Sockets.Socket connection, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (!PeerCredentialReader.TryRead(connection, out PeerCredentials peer, out string? error))
        {
            return WorkloadAttestationResult.Failed(WorkloadAttestationCodes.PeerUnreadable, error!);
        }

        if (!PeerProcessHandle.TryOpen(connection, out PeerProcessHandle? handle, out bool unsupported, out error))
        {
            if (!unsupported)
            {
                return WorkloadAttestationResult.Failed(WorkloadAttestationCodes.PeerUnreadable, $"cannot attest peer process {peer.Pid}: {error}");
            }

            LogNoPidFd(_log, error!);
        }

        using (handle)
        {
            return await AttestAsync(peer, handle, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Where attestation failures are counted (set by the agent host).</summary>
    public Telemetry.WritAgentMetrics Metrics { get; set; } = Telemetry.WritAgentMetrics.Unhosted;

    /// <summary>
    /// Attests <paramref name="peer"/>; with <paramref name="peerProcess"/> (its pidfd) the pin is
    /// also proven to be of the process that connected, not of a later owner of the same pid.
    /// </summary>
    public async Task<WorkloadAttestationResult> AttestAsync(PeerCredentials peer, PeerProcessHandle? peerProcess, CancellationToken ct)
    {
        // With the pidfd, the pin also proves it is of the process that connected (not of a later owner of the pid).
        if (!ProcessPin.TryCreate(_proc, peer.Pid, peerProcess, out ProcessPin? pin, out string? pinError))
        {
            LogPinFailed(_log, peer.Pid, pinError!);
            Metrics.AttestationFailed("pin_failed");
            return WorkloadAttestationResult.Failed(WorkloadAttestationCodes.PeerUnreadable, $"cannot attest peer process {peer.Pid}: {pinError}");
        }

        var process = new WorkloadProcess(peer, pin!);
        AttestorResult[] results = await RunAllAsync(process, ct).ConfigureAwait(false);
        ct.ThrowIfCancellationRequested();

        if (!pin!.Verify(_proc, peerProcess, out string? reason))
        {
            LogReplaced(_log, peer.Pid, reason!);
            Metrics.AttestationFailed("process_changed");
            return WorkloadAttestationResult.Failed(WorkloadAttestationCodes.PidReused,
                $"process {peer.Pid} exited or was replaced during attestation ({reason}); let the client reconnect");
        }

        var selectors = new SortedSet<Selector>(SelectorComparer.Instance);
        var facts = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var errors = new List<string>();
        foreach (AttestorResult r in results)
        {
            foreach ((string key, string value) in r.Facts)
            {
                facts[$"{r.Attestor}.{key}"] = Printable(value);
            }

            if (r.Error is not null)
            {
                errors.Add(r.Error);
                continue;
            }

            selectors.UnionWith(r.Selectors);
        }

        LogAttested(_log, peer.Pid, selectors.Count, errors.Count);
        var evidence = new ProcessEvidence(
            process,
            [.. selectors],
            new ReadOnlyDictionary<string, string>(facts),
            errors.AsReadOnly());
        return new WorkloadAttestationResult(evidence, null);
    }

    /// <summary>
    /// Runs every attestor at once under one timeout. Attestors that may block get a thread-pool thread each
    /// (<see cref="Task.Run(Func{Task})"/>) so one stuck attestor cannot hold up the others; a
    /// <see cref="INonBlockingWorkloadAttestor"/> is called on this thread, and when it answers at once (its usual case)
    /// no thread hop, timer wait or continuation is involved: on a busy machine each hop is a thread wake-up, which
    /// was most of a Workload API call's latency.
    /// </summary>
    private async Task<AttestorResult[]> RunAllAsync(WorkloadProcess process, CancellationToken ct)
    {
        using var timeout = new CancellationTokenSource(_timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
        var tasks = new Task<AttestorResult>[_attestors.Length];
        for (int i = 0; i < _attestors.Length; i++)
        {
            IWorkloadAttestor attestor = _attestors[i];
            if (attestor is not INonBlockingWorkloadAttestor)
            {
                tasks[i] = Task.Run(() => attestor.AttestAsync(process, linked.Token), CancellationToken.None);
            }
        }

        for (int i = 0; i < _attestors.Length; i++)
        {
            if (tasks[i] is null)
            {
                try
                {
                    tasks[i] = _attestors[i].AttestAsync(process, linked.Token);
                }
                catch (Exception ex)
                {
                    tasks[i] = Task.FromException<AttestorResult>(ex);
                }
            }
        }

        var results = new AttestorResult[_attestors.Length];
        for (int i = 0; i < _attestors.Length; i++)
        {
            results[i] = tasks[i].IsCompletedSuccessfully
                ? Validate(_attestors[i].Name, tasks[i].Result)
                : await CompleteAsync(_attestors[i].Name, tasks[i], process, ct, timeout, linked.Token).ConfigureAwait(false);
        }

        return results;
    }

    private async Task<AttestorResult> CompleteAsync(string name, Task<AttestorResult> task, WorkloadProcess process, CancellationToken ct,
        CancellationTokenSource timeout, CancellationToken linked)
    {
        try
        {
            AttestorResult? result = await task.WaitAsync(linked).ConfigureAwait(false);
            return Validate(name, result);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            Observe(task);
            throw;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            Observe(task);
            LogTimedOut(_log, name, process.Peer.Pid, _timeout.TotalMilliseconds);
            Metrics.AttestationFailed("timeout");
            return AttestorResult.Failure(name, string.Create(CultureInfo.InvariantCulture,
                $"{WorkloadAttestationCodes.Timeout}: attestor '{name}' did not finish within {_timeout.TotalMilliseconds:0} ms; its selectors were ignored (raise the attestor timeout if this repeats)"));
        }
        catch (Exception ex)
        {
            LogThrew(_log, name, process.Peer.Pid, ex);
            Metrics.AttestationFailed("attestor_error");
            return AttestorResult.Failure(name, $"{WorkloadAttestationCodes.AttestorFailed}: attestor '{name}' failed with {ex.GetType().Name}; its selectors were ignored (see the agent log)");
        }
    }

    private static AttestorResult Validate(string name, AttestorResult? result)
    {
        if (result is null)
        {
            return AttestorResult.Failure(name, $"{WorkloadAttestationCodes.AttestorFailed}: attestor '{name}' returned no result; its selectors were ignored (attestor bug)");
        }

        IReadOnlyDictionary<string, string> facts = result.Facts ?? ReadOnlyDictionary<string, string>.Empty;
        if (result.Error is not null)
        {
            // Every line starts with its code: the attestor's own (WRIT-…: reason) or, for a reason without one, Unavailable.
            string line = OneLine(result.Error);
            int colon = line.IndexOf(": ", StringComparison.Ordinal);
            (string code, string reason) = line.StartsWith("WRIT-", StringComparison.Ordinal) && colon > 0 && !line[..colon].Contains(' ', StringComparison.Ordinal)
                ? (line[..colon], line[(colon + 2)..])
                : (WorkloadAttestationCodes.Unavailable, line);
            return AttestorResult.Failure(name, $"{code}: attestor '{name}': {reason}", facts);
        }

        // The one selector rule (the server refuses evidence with a selector that breaks it, and with it every selector).
        if (result.Selectors is null || result.Selectors.Any(s => s is null || !Selector.IsValid(s.Type, s.Value, out _) || s.Value.Length > WorkloadEvidence.MaxTextLength))
        {
            return AttestorResult.Failure(name, $"{WorkloadAttestationCodes.AttestorFailed}: attestor '{name}' returned a malformed selector; its selectors were ignored (attestor bug)", facts);
        }

        return new AttestorResult(name, result.Selectors, facts, null);
    }

    private static string OneLine(string text)
    {
        string line = Printable(text.ReplaceLineEndings(" ").Trim());
        return line.Length <= 500 ? line : line[..500];
    }

    /// <summary>
    /// A fact as the server accepts it (<see cref="WorkloadEvidence.TryCreate"/>): control characters (a NUL or escape in
    /// a process name, say) written as <c>\xNN</c> and a backslash as <c>\\</c>, and at most <see cref="WorkloadEvidence.MaxTextLength"/> characters.
    /// Facts are diagnostics read by people and policy; one the server refuses would cost the workload its evidence.
    /// </summary>
    internal static string Printable(string value)
    {
        bool clean = value.Length <= WorkloadEvidence.MaxTextLength;
        foreach (char c in value)
        {
            if (char.IsControl(c) || c == '\\')
            {
                clean = false;
                break;
            }
        }

        if (clean)
        {
            return value;
        }

        var sb = new System.Text.StringBuilder(Math.Min(value.Length, WorkloadEvidence.MaxTextLength));
        foreach (char c in value)
        {
            // A backslash is escaped too, so the escaping is one-to-one: a name spelling "\\x0a" differs from a newline.
            string part = c == '\\' ? "\\\\" : char.IsControl(c) ? "\\x" + ((int)c).ToString("x2", CultureInfo.InvariantCulture) : c.ToString();
            if (sb.Length + part.Length > WorkloadEvidence.MaxTextLength - 3)
            {
                sb.Append("...");
                break;
            }

            sb.Append(part);
        }

        return sb.ToString();
    }

    private static void Observe(Task task) =>
        _ = task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);

    private sealed class SelectorComparer : IComparer<Selector>
    {
        public static readonly SelectorComparer Instance = new();

        public int Compare(Selector? x, Selector? y)
        {
            int c = string.CompareOrdinal(x?.Type, y?.Type);
            return c != 0 ? c : string.CompareOrdinal(x?.Value, y?.Value);
        }
    }

    [LoggerMessage(EventId = 3100, Level = LogLevel.Warning, Message = "Workload attestation: cannot pin peer process {Pid}: {Reason}")]
    private static partial void LogPinFailed(ILogger logger, int pid, string reason);

    [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "Workload attestation: process {Pid} changed during attestation, evidence discarded: {Reason}")]
    private static partial void LogReplaced(ILogger logger, int pid, string reason);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Warning, Message = "Workload attestor {Attestor} timed out after {TimeoutMs} ms for process {Pid}")]
    private static partial void LogTimedOut(ILogger logger, string attestor, int pid, double timeoutMs);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Error, Message = "Workload attestor {Attestor} threw for process {Pid}")]
    private static partial void LogThrew(ILogger logger, string attestor, int pid, Exception exception);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Debug, Message = "Workload attestation without a peer pidfd: {Reason}")]
    private static partial void LogNoPidFd(ILogger logger, string reason);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Debug, Message = "Workload process {Pid} attested: {SelectorCount} selectors, {ErrorCount} attestor errors")]
    private static partial void LogAttested(ILogger logger, int pid, int selectorCount, int errorCount);
}
