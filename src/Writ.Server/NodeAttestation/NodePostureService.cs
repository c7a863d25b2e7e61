using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Writ.Protocol;
using Writ.Protocol.Errors;
using Writ.Server.Hosting;
using Writ.Server.Ledger;
using Writ.Server.Storage;
using RecheckProto = Writ.Protocol.Agent.NodeRecheck;

namespace Writ.Server.NodeAttestation;

/// <summary>
/// Continuous node attestation around any <see cref="IContinuousNodeAttestor"/>: every active node of a continuous type
/// is sent a fresh recheck every <see cref="IContinuousNodeAttestor.RecheckInterval"/> (a little early, jittered) over its
/// Sync stream; its answer (<c>AnswerNodeRecheck</c>) is appraised by the attestor. A bad answer, or no good answer within
/// <see cref="IContinuousNodeAttestor.RecheckGrace"/> (whether or not the agent was connected), marks the node drifted:
/// no new SVIDs (quarantine) and, with <see cref="DriftAction.Revoke"/>, the agent SVID and everything issued through the
/// node revoked and pushed. Each drift is a <c>node.drifted</c> ledger record, log event 1130 and the
/// <c>writ.server.node.drifts</c> metric. Outstanding rechecks live in this server's memory (one server for now).
/// </summary>
public sealed class NodePostureService(ServerContext server, ILogger log)
{
    /// <summary>How often the scheduler looks for due rechecks and missed deadlines.</summary>
    public static readonly TimeSpan Tick = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<string, Outstanding> _outstanding = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _due = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ChangeSignal> _signals = new(StringComparer.Ordinal);
    private readonly ChangeSignal _wake = new();

    /// <summary>The jitter source (tests pass a seeded one).</summary>
    public Random Jitter { get; init; } = Random.Shared;

    private sealed record Outstanding(NodeRecheck Recheck, string Type, string Serial, DateTimeOffset Deadline);

    /// <summary>The continuous attestor of <paramref name="type"/>, or null (not continuous, or not enabled any more).</summary>
    public IContinuousNodeAttestor? Attestor(string type) =>
        server.NodeAttestation.Registry.Types.Contains(type) ? server.NodeAttestation.Registry.Get(type) as IContinuousNodeAttestor : null;

    /// <summary>Raised when <paramref name="agentId"/> has a new recheck to send (its Sync stream waits on it).</summary>
    public ChangeSignal SignalFor(string agentId) => _signals.GetOrAdd(agentId, _ => new ChangeSignal());

    /// <summary>The recheck <paramref name="agentId"/> should answer now, as sent over Sync; null when none is outstanding.</summary>
    public RecheckProto? Pending(string agentId)
    {
        if (!_outstanding.TryGetValue(agentId, out var o))
            return null;
        return new RecheckProto
        {
            Id = o.Recheck.Id,
            AttestationType = o.Type,
            Payload = ByteString.CopyFrom(o.Recheck.Payload.Span),
            DeadlineUnix = o.Deadline.ToUnixTimeSeconds(),
        };
    }

    /// <summary>The loop (a hosted service): one <see cref="RunOnceAsync"/> per <see cref="Tick"/>, or at once when woken.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var generation = _wake.Generation;
            await RunOnceAsync(stop).ConfigureAwait(false);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(stop);
            await Task.WhenAny(Task.Delay(Tick, server.Time, wait.Token), _wake.WaitAsync(generation, wait.Token)).ConfigureAwait(false);
            await wait.CancelAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// One pass: every outstanding recheck past its deadline drifts its node (WRIT-NODE-RECHECK-MISSING); every active node
    /// of a continuous type that is due gets a new recheck, pushed to its Sync stream.
    /// </summary>
    public async Task RunOnceAsync(CancellationToken ct)
    {
        if (!server.NodeAttestation.Registry.Types.Any(t => Attestor(t) is not null))
            return;   // no continuous attestor enabled: nothing to recheck, no store read
        var now = server.Time.GetUtcNow();
        var nodes = await server.Store.Nodes.ListAsync(ct).ConfigureAwait(false);
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            present.Add(node.SpiffeId);
            if (node.Banned || node.Status != NodeStatus.Active || Attestor(node.AttestationType) is not { } attestor)
            {
                _outstanding.TryRemove(node.SpiffeId, out _);
                _due.TryRemove(node.SpiffeId, out _);
                continue;
            }
            if (_outstanding.TryGetValue(node.SpiffeId, out var o))
            {
                if (now > o.Deadline && _outstanding.TryRemove(new KeyValuePair<string, Outstanding>(node.SpiffeId, o)))
                {
                    await DriftAsync(node, attestor, NodePostureCodes.RecheckMissing,
                        $"no good answer to recheck {o.Recheck.Id} within {attestor.RecheckGrace.TotalSeconds:0.###} s of sending it", o.Serial, ct).ConfigureAwait(false);
                }
                continue;
            }
            // A node seen for the first time (server start) is spread over one interval; later ones follow their schedule.
            var due = _due.GetOrAdd(node.SpiffeId, _ => now + attestor.RecheckInterval * Jitter.NextDouble());
            if (now >= due)
            {
                Issue(node, attestor, now);
            }
        }
        foreach (var gone in _due.Keys.Concat(_outstanding.Keys).Where(k => !present.Contains(k)).ToList())
        {
            _due.TryRemove(gone, out _);
            _outstanding.TryRemove(gone, out _);
            _signals.TryRemove(gone, out _);
        }
    }

    private void Issue(AttestedNode node, IContinuousNodeAttestor attestor, DateTimeOffset now)
    {
        var recheck = attestor.NewRecheck(node, now);
        _outstanding[node.SpiffeId] = new Outstanding(recheck, node.AttestationType, node.SerialNumber, recheck.IssuedAt + attestor.RecheckGrace);
        // The next one a little early (up to a tenth of the interval), so a node never goes longer than the interval.
        _due[node.SpiffeId] = recheck.IssuedAt + attestor.RecheckInterval * (1 - (Jitter.NextDouble() / 10));
        server.Metrics.NodeRecheckSent(node.AttestationType);
        SignalFor(node.SpiffeId).Raise();
    }

    /// <summary>A node attested (or attested again, which is a fresh proof): its outstanding recheck is void; the next is an interval away.</summary>
    public void Attested(string agentId, IContinuousNodeAttestor attestor)
    {
        ArgumentNullException.ThrowIfNull(attestor);
        _outstanding.TryRemove(agentId, out _);
        _due[agentId] = server.Time.GetUtcNow() + attestor.RecheckInterval * (1 - (Jitter.NextDouble() / 10));
    }

    /// <summary>Sends <paramref name="agentId"/> a recheck at the next pass (after a readmit), and wakes the loop.</summary>
    public void RecheckNow(string agentId)
    {
        _outstanding.TryRemove(agentId, out _);
        _due[agentId] = DateTimeOffset.MinValue;
        _wake.Raise();
    }

    /// <summary>
    /// The agent's answer to its outstanding recheck <paramref name="id"/>: an unknown, already answered, expired or other
    /// node's id is refused (nothing changes); otherwise the attestor appraises it under the attestation time limit.
    /// Returns the node's status afterwards. An appraisal that throws or overruns is a server bug: logged, counted, and
    /// the node is NOT marked drifted for it.
    /// </summary>
    public async Task<NodeStatus> AnswerAsync(AttestedNode caller, string id, ReadOnlyMemory<byte> answer, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var limits = server.NodeAttestation.Limits;
        if (answer.Length > limits.MaxAnswerBytes)
        {
            throw new WritException(NodePostureCodes.RecheckTooLarge, WritErrorKind.InvalidArgument,
                $"the recheck answer is {answer.Length} bytes, more than the {limits.MaxAnswerBytes} accepted: send what the agent's attestor produces");
        }
        var now = server.Time.GetUtcNow();
        // Keyed by the authenticated caller: another node's recheck id is simply unknown here.
        if (!_outstanding.TryGetValue(caller.SpiffeId, out var o) || !string.Equals(o.Recheck.Id, id, StringComparison.Ordinal) || now > o.Deadline
            || !string.Equals(o.Serial, caller.SerialNumber, StringComparison.OrdinalIgnoreCase))
        {
            throw new WritException(NodePostureCodes.RecheckUnknown, WritErrorKind.FailedPrecondition,
                $"recheck '{NodeAttestorRegistry.Printable(id)}' is not outstanding for agent {caller.SpiffeId} (unknown, already answered or past its deadline): answer the latest recheck the server sent");
        }
        if (caller.Status != NodeStatus.Active || Attestor(caller.AttestationType) is not { } attestor
            || !_outstanding.TryRemove(new KeyValuePair<string, Outstanding>(caller.SpiffeId, o)))
        {
            throw new WritException(NodePostureCodes.RecheckUnknown, WritErrorKind.FailedPrecondition,
                $"recheck '{NodeAttestorRegistry.Printable(id)}' is no longer outstanding for agent {caller.SpiffeId}: answer the latest recheck the server sent");
        }
        NodeAppraisal appraisal;
        Task<NodeAppraisal>? run = null;
        using var appraiseCt = CancellationTokenSource.CreateLinkedTokenSource(ct);
        try
        {
            run = attestor.AppraiseAsync(caller, o.Recheck, answer, appraiseCt.Token);
            appraisal = await run.WaitAsync(limits.Timeout, server.Time, ct).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"node attestor '{attestor.Type}' returned no appraisal");
        }
        catch (Exception e) when (!(e is OperationCanceledException && ct.IsCancellationRequested))
        {
            await appraiseCt.CancelAsync().ConfigureAwait(false);
            var errorId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
            ServerLog.NodeRecheckFailed(log, e, caller.AttestationType, caller.SpiffeId, errorId);
            server.Metrics.NodeRecheckFailed(caller.AttestationType);
            throw new WritException(NodePostureCodes.RecheckFailed, WritErrorKind.Internal,
                $"the server could not appraise the recheck answer (error {errorId}); the node's status is unchanged and it is rechecked again");
        }
        if (!appraisal.Healthy)
        {
            await DriftAsync(caller, attestor, appraisal.DriftCode ?? NodeAttestationCodes.Failed, appraisal.DriftReason ?? "the recheck answer was refused", o.Serial, ct)
                .ConfigureAwait(false);
            return NodeStatus.Drifted;
        }
        var selectors = appraisal.Selectors ?? [];
        if (!selectors.SequenceEqual(caller.Selectors) || !(appraisal.AttestorState ?? []).AsSpan().SequenceEqual(caller.AttestorState ?? []))
        {
            await server.Store.Nodes.TryUpdatePostureAsync(caller.SpiffeId, caller.SerialNumber, selectors, appraisal.AttestorState, ct).ConfigureAwait(false);
        }
        ServerLog.NodeRecheckPassed(log, caller.SpiffeId, o.Recheck.Id);
        return NodeStatus.Active;
    }

    /// <summary>
    /// Marks <paramref name="node"/> drifted (conditional: an evicted node is not recreated, a drift seen on a replaced SVID
    /// is dropped) with its ledger record; then, by the attestor's <see cref="DriftAction"/>, revokes what the node was
    /// issued and pushes it. Returns whether the node drifted now.
    /// </summary>
    public async Task<bool> DriftAsync(AttestedNode node, IContinuousNodeAttestor attestor, string code, string reason, string? expectedSerial, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(attestor);
        reason = OneLine(reason);
        var action = attestor.DriftAction == DriftAction.Revoke ? "revoke" : "quarantine";
        var drifted = await server.Store.Nodes.TryMarkDriftedAsync(node.SpiffeId, expectedSerial, OneLine($"{code}: {reason}"), ct,
            [LedgerEvents.NodeDrift(node, code, reason, action)]).ConfigureAwait(false);
        _outstanding.TryRemove(node.SpiffeId, out _);
        if (!drifted)
            return false;
        ServerLog.NodeDrifted(log, node.SpiffeId, node.AttestationType, code, reason, action);
        server.Metrics.NodeDrifted(node.AttestationType, code);
        if (attestor.DriftAction == DriftAction.Revoke)
        {
            await server.Revocations.RevokeAgentAsync(node, $"node drifted: {code}", LedgerEvents.ServerActor, ct).ConfigureAwait(false);
        }
        server.Announce(Writ.Server.Sync.ChangeKinds.Nodes);   // open sync streams re-check their agent at once (a revoked one gets its revocations, then ends)
        return true;
    }

    private static string OneLine(string s)
    {
        var line = new string([.. s.Select(c => char.IsControl(c) ? ' ' : c)]).Trim();
        return line.Length > 512 ? line[..512] : line;
    }
}
