using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;
using Writ.Server.Hosting;
using Writ.Server.Issuance;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.Server.NodeAttestation;

/// <summary>Bounds on one node attestation: evidence and each challenge answer in bytes, the attestor's time, challenge rounds.</summary>
public sealed record NodeAttestationLimits(int MaxEvidenceBytes, TimeSpan Timeout, int MaxChallenges)
{
    public static NodeAttestationLimits Default { get; } = new(64 * 1024, TimeSpan.FromSeconds(30), 8);

    /// <summary>
    /// A challenge answer (or recheck answer) may be larger than the evidence: a tpm quote carries the node's measured-boot
    /// event log, commonly 30–100 KB on real firmware.
    /// </summary>
    public int MaxAnswerBytes { get; init; } = 1024 * 1024;
}

/// <summary>An attested (or renewed) agent: its ID, its SVID chain (leaf first) and the AttestNode decision.</summary>
public sealed record NodeAttestationResult(SpiffeId AgentId, IReadOnlyList<X509Certificate2> Chain, string DecisionId);

/// <summary>
/// Node attestation around any <see cref="INodeAttestor"/>: size limit → attestor (under a time limit, with its
/// challenge rounds) → Cedar decision (AttestNode) → burn the single-use evidence and store the node in one transaction.
/// A refusal at any step burns nothing. Also the agent SVID renewal, whose write is conditional so it never undoes a ban
/// or an eviction.
/// </summary>
public sealed class NodeAttestationService(ServerContext server, NodeAttestorRegistry registry, ILogger log, NodeAttestationLimits? limits = null)
{
    public const string AgentPathPrefix = "/writ/agent/";

    private readonly IssuancePipeline _pipeline = new(server, log);

    public NodeAttestationLimits Limits { get; } = limits ?? NodeAttestationLimits.Default;

    public NodeAttestorRegistry Registry => registry;

    /// <summary>The attestors every server has: <c>join_token</c>.</summary>
    public static NodeAttestorRegistry DefaultRegistry(IWritStore store) => new([new JoinTokenNodeAttestor(store.JoinTokens)]);

    /// <summary>
    /// The attestors of this configuration: <c>join_token</c>; <c>tpm</c> when its EK trust (tpm.ek_ca_dir, tpm.ek_hashes)
    /// is configured; <c>x509pop</c> when its CA bundle is; <c>k8s_psat</c> when <c>k8s_clusters</c> names a cluster
    /// (its offline clusters validate through <paramref name="oidc"/>, else through an OIDC validator of its own on
    /// <paramref name="time"/>).
    /// </summary>
    public static NodeAttestorRegistry ConfiguredRegistry(IWritStore store, Configuration.ServerOptions options, Oidc.IOidcTokenValidator? oidc = null,
        TimeProvider? time = null, ILoggerFactory? logs = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        logs ??= Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
        List<INodeAttestor> attestors = [new JoinTokenNodeAttestor(store.JoinTokens)];
        if (options.Tpm is { Enabled: true } t)
            attestors.Add(new Tpm.TpmNodeAttestor(t, store.TpmReferenceSets));
        if (options.X509Pop is { } x)
            attestors.Add(new X509Pop.X509PopNodeAttestor(x.LoadCaBundle(), x.AgentPath));
        if (options.K8sPsat is { Enabled: true } k)
        {
            if (oidc is null && k.Clusters.Any(c => !c.UsesApi))
                oidc = new Oidc.OidcTokenValidator(time ?? TimeProvider.System, logs.CreateLogger<Oidc.OidcTokenValidator>());
            attestors.Add(K8sPsat.K8sPsatNodeAttestor.Create(k, oidc, logs.CreateLogger<K8sPsat.K8sPsatNodeAttestor>()));
        }
        return new(attestors);
    }

    /// <summary>
    /// Attests an agent: <paramref name="challenge"/> carries the attestor's challenges to the agent. Refusals are
    /// <see cref="WritException"/>s with a stable code; nothing is written unless the agent gets its SVID.
    /// </summary>
    /// <summary>The metric reason for a refusal: its code without the area, e.g. WRIT-ATTEST-TOKEN-USED → token_used.</summary>
    public static string ReasonLabel(string code)
    {
        ArgumentNullException.ThrowIfNull(code);
        var rest = code.StartsWith("WRIT-", StringComparison.Ordinal) ? code[5..] : code;
        rest = rest.StartsWith("ATTEST-", StringComparison.Ordinal) ? rest[7..] : rest;
        return rest.Replace('-', '_').ToLowerInvariant();
    }

    public async Task<NodeAttestationResult> AttestAsync(string type, ReadOnlyMemory<byte> payload, ReadOnlyMemory<byte> csr, NodeChallenge challenge, string peer,
        CancellationToken ct)
    {
        try
        {
            return await AttestCoreAsync(type, payload, csr, challenge, peer, ct).ConfigureAwait(false);
        }
        catch (WritException e)
        {
            await RefusedAsync(type, peer, e).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Logs, counts and records a refused node attestation, also one refused before it reached an attestor (the agent
    /// API's malformed requests): a Cedar denial is already in the ledger as its decision; every other refusal (bad
    /// evidence, an attack) is recorded here, within a flood limit.
    /// </summary>
    public async Task RefusedAsync(string type, string peer, WritException e)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(e);
        ServerLog.AttestationRefused(log, NodeAttestorRegistry.Printable(type), peer, e.Code, e.Message);
        // Labels stay bounded: a registered attestor's type (else "unknown") and the refusal's stable code.
        server.Metrics.NodeAttestationFailed(registry.Types.Contains(type) ? type : "unknown", ReasonLabel(e.Code));
        if (e.Code != NodeAttestationCodes.Denied && _refusals.TryRecord(server.Time.GetUtcNow(), out var suppressed))
        {
            await RecordRefusalAsync(registry.Types.Contains(type) ? type : "unknown", peer, e, suppressed).ConfigureAwait(false);
        }
    }

    private readonly Ledger.RefusalWindow _refusals = new(RefusalsRecordedPerMinute);

    /// <summary>How many refused node attestations per minute are recorded one by one; the rest are counted in the next record.</summary>
    public const int RefusalsRecordedPerMinute = 120;

    private async Task RecordRefusalAsync(string type, string peer, WritException e, long suppressed)
    {
        try
        {
            await server.LedgerWriter.AppendAsync([Ledger.LedgerEvents.NodeAttestationRefusal(type, peer, e.Code, e.Message, suppressed)], []).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The agent still gets its refusal; the store being down is reported by everything else that writes.
            ServerLog.NodeAttestorFailed(log, ex, type, "ledger");
        }
    }

    private async Task<NodeAttestationResult> AttestCoreAsync(string type, ReadOnlyMemory<byte> payload, ReadOnlyMemory<byte> csr, NodeChallenge challenge, string peer,
        CancellationToken ct)
    {
        if (payload.Length > Limits.MaxEvidenceBytes)
            throw TooLarge("the attestation evidence", payload.Length);
        var attestor = registry.Get(type);
        // The CSR is checked before anything else can happen, so a malformed request costs nothing.
        if (csr.Length > Limits.MaxEvidenceBytes)
            throw TooLarge("the agent CSR", csr.Length);
        if (!Csr.TryVerify(csr.Span, out var key, out var csrError))
            throw new WritException(NodeAttestationCodes.BadCsr, WritErrorKind.InvalidArgument, $"the agent CSR was refused: {csrError}");
        var facts = await RunAttestorAsync(attestor, new NodeEvidence(payload, server.Options.TrustDomain, server.Time.GetUtcNow()) { Csr = csr }, challenge, ct).ConfigureAwait(false);
        var id = facts.AgentId.ToString();
        var existing = await server.Store.Nodes.GetAsync(id, ct).ConfigureAwait(false);
        if (existing is not null)
        {
            // Reusable evidence (tpm, x509pop) may attest an existing node again and keep its ID, unless it is banned or
            // drifted: a drifted node comes back only through an admin's readmit.
            if (existing.Banned)
                throw Banned(id);
            if (!attestor.Reattestable || existing.AttestationType != facts.Type)
                throw NodeExists(id);
            if (attestor.ReattestConflict(existing, facts) is { } conflict)
                throw NodeExists(id, conflict);
            if (existing.Status == NodeStatus.Drifted)
                throw Drifted(id, existing.StatusReason);
            // Fresh evidence is held to the node's baseline: a restart must not turn a drift into the new normal.
            if (attestor is IContinuousNodeAttestor appraiser
                && await appraiser.AppraiseReattestationAsync(existing, facts, ct).ConfigureAwait(false) is { Healthy: false } drift)
            {
                var code = drift.DriftCode ?? NodeAttestationCodes.Failed;
                var reason = drift.DriftReason ?? "the fresh evidence differs from the node's baseline";
                await server.Posture.DriftAsync(existing, appraiser, code, reason, existing.SerialNumber, ct).ConfigureAwait(false);
                throw Drifted(id, $"{code}: {reason}");
            }
        }

        var outcome = await _pipeline.AttestNodeAsync(new NodeFacts(id, facts.Type, [.. facts.Selectors.Select(s => s.ToString())], facts.Aliases), key, renewal: false, ct)
            .ConfigureAwait(false);
        if (outcome.Chain is not { } chain)
            throw new WritException(NodeAttestationCodes.Denied, WritErrorKind.PermissionDenied, outcome.Decision.DeniedDetail);

        var leaf = chain[0];
        var now = server.Time.GetUtcNow();
        var node = new AttestedNode
        {
            SpiffeId = id,
            AttestationType = facts.Type,
            SerialNumber = leaf.SerialNumber,
            ExpiresAt = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()),
            Selectors = facts.Selectors,
            Aliases = facts.Aliases,
            AttestorState = facts.AttestorState,
            CreatedAt = now,
            UpdatedAt = now,
        };
        if (existing is not null)
            return await ReattestAsync(node, facts, chain, outcome.Decision.Id, ct).ConfigureAwait(false);
        // The burn and the node in one transaction: of two agents racing with the same evidence exactly one is stored.
        // A loser's SVID was recorded in the ledger (records precede hand-out) but is never handed out.
        var stored = await server.Store.Nodes.CreateAttestedAsync(node, facts.Burn, now, ct).ConfigureAwait(false);
        if (stored != NodeCreateOutcome.Created)
        {
            throw stored switch
            {
                NodeCreateOutcome.NodeExists => NodeExists(id),
                NodeCreateOutcome.EvidenceUsed => JoinTokenNodeAttestor.Used(),
                NodeCreateOutcome.EvidenceExpired => new WritException(NodeAttestationCodes.TokenExpired, WritErrorKind.PermissionDenied,
                    "the single-use attestation evidence expired while it was being checked: generate new evidence (a new join token) and retry"),
                _ => new WritException(NodeAttestationCodes.TokenUnknown, WritErrorKind.PermissionDenied,
                    "the single-use attestation evidence was deleted while it was being checked: generate new evidence (a new join token)"),
            };
        }
        ServerLog.AgentAttested(log, id, facts.Type, leaf.SerialNumber);
        if (attestor is IContinuousNodeAttestor continuous)
            server.Posture.Attested(id, continuous);
        return new NodeAttestationResult(facts.AgentId, chain, outcome.Decision.Id);
    }

    /// <summary>
    /// The write of a re-attestation: conditional (<see cref="INodeStore.TryReattestAsync"/>), so a ban, an eviction or a
    /// drift that lands while the attestor and the decision ran wins and the new SVID is never handed out.
    /// </summary>
    private async Task<NodeAttestationResult> ReattestAsync(AttestedNode node, AttestedNodeFacts facts, IReadOnlyList<X509Certificate2> chain, string decisionId,
        CancellationToken ct)
    {
        var stored = await server.Store.Nodes.TryReattestAsync(node, ct, [Ledger.LedgerEvents.Node(Ledger.LedgerEvents.NodeReattested, node.SpiffeId, node)])
            .ConfigureAwait(false);
        if (!stored)
        {
            var now = await server.Store.Nodes.GetAsync(node.SpiffeId, ct).ConfigureAwait(false);
            throw now switch
            {
                { Banned: true } => Banned(node.SpiffeId),
                { Status: NodeStatus.Drifted } => Drifted(node.SpiffeId, now.StatusReason),
                _ => new WritException(NodeAttestationCodes.AgentSuperseded, WritErrorKind.PermissionDenied,
                    $"agent {node.SpiffeId} was evicted while it attested again: attest again"),
            };
        }
        ServerLog.AgentReattested(log, node.SpiffeId, facts.Type, node.SerialNumber);
        if (registry.Get(facts.Type) is IContinuousNodeAttestor continuous)
            server.Posture.Attested(node.SpiffeId, continuous);
        return new NodeAttestationResult(facts.AgentId, chain, decisionId);
    }

    /// <summary>
    /// Renews an authenticated agent's SVID for <paramref name="key"/>. The new serial is stored only while the node is
    /// not banned and still has the serial the agent authenticated with (<see cref="INodeStore.TryRenewAsync"/>): a ban,
    /// eviction or competing renewal that lands while the decision and signature run wins, and the new SVID is never
    /// handed out.
    /// </summary>
    public async Task<NodeAttestationResult> RenewAsync(AttestedNode caller, PublicKey key, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if (caller.Status == NodeStatus.Drifted)
            throw Quarantined(caller);
        // Every SVID of a continuous attestor's agent is backed by a fresh proof (tpm: a new TPM signature over the key).
        if (server.Posture.Attestor(caller.AttestationType) is not null)
        {
            throw new WritException(NodePostureCodes.Reattest, WritErrorKind.FailedPrecondition,
                $"agent {caller.SpiffeId} is attested by {caller.AttestationType}, whose SVIDs are not renewed: attest again; tpm agents do that themselves");
        }
        var outcome = await _pipeline.AttestNodeAsync(NodeFacts.Of(caller), key, renewal: true, ct).ConfigureAwait(false);
        if (outcome.Chain is not { } chain)
            throw new WritException(NodeAttestationCodes.Denied, WritErrorKind.PermissionDenied, outcome.Decision.DeniedDetail);
        var leaf = chain[0];
        var renewed = !server.Revocations.IsSerialRevoked(caller.SerialNumber)
            && await server.Store.Nodes.TryRenewAsync(caller.SpiffeId, caller.SerialNumber, leaf.SerialNumber, new DateTimeOffset(leaf.NotAfter.ToUniversalTime()), ct)
                .ConfigureAwait(false);
        if (!renewed)
        {
            var now = await server.Store.Nodes.GetAsync(caller.SpiffeId, ct).ConfigureAwait(false);
            var refusal = now is { Banned: true } ? Banned(caller.SpiffeId) : new WritException(NodeAttestationCodes.AgentSuperseded, WritErrorKind.PermissionDenied,
                $"agent {caller.SpiffeId} was evicted, revoked or renewed elsewhere while renewing: re-authenticate");
            ServerLog.AgentRefused(log, "RenewAgent", refusal.Message);
            throw refusal;
        }
        ServerLog.AgentRenewed(log, caller.SpiffeId, leaf.SerialNumber);
        return new NodeAttestationResult(SpiffeId.Parse(caller.SpiffeId), chain, outcome.Decision.Id);
    }

    /// <summary>Runs the attestor under the time limit; its facts must name an agent of this trust domain and type.</summary>
    private async Task<AttestedNodeFacts> RunAttestorAsync(INodeAttestor attestor, NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
    {
        using var attestorCt = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var rounds = 0;
        async Task<ReadOnlyMemory<byte>> Bounded(ReadOnlyMemory<byte> c, CancellationToken t)
        {
            if (++rounds > Limits.MaxChallenges)
                throw new WritException(NodeAttestationCodes.BadRequest, WritErrorKind.InvalidArgument, $"node attestor '{attestor.Type}' asked more than {Limits.MaxChallenges} challenges");
            var answer = await challenge(c, t).ConfigureAwait(false);
            return answer.Length > Limits.MaxAnswerBytes ? throw TooLarge("the challenge answer", answer.Length, Limits.MaxAnswerBytes) : answer;
        }
        Task<AttestedNodeFacts>? run = null;
        AttestedNodeFacts facts;
        try
        {
            run = attestor.AttestAsync(evidence, Bounded, attestorCt.Token);
            // WaitAsync cuts off an attestor that ignores its token too; the abandoned task is left to finish or not.
            facts = await run.WaitAsync(Limits.Timeout, server.Time, ct).ConfigureAwait(false);
        }
        catch (TimeoutException) when (run is { IsCompleted: false })
        {
            await attestorCt.CancelAsync().ConfigureAwait(false);
            throw new WritException(NodeAttestationCodes.Timeout, WritErrorKind.DeadlineExceeded,
                $"node attestor '{attestor.Type}' did not finish within {Limits.Timeout.TotalSeconds:0.###} s: retry; if it persists, check what the attestor depends on");
        }
        catch (Exception e) when (e is not WritException && !(e is OperationCanceledException && ct.IsCancellationRequested))
        {
            throw Failed(attestor.Type, e);
        }
        if (facts is null || facts.Type != attestor.Type || facts.Selectors is null || facts.Aliases is null)
            throw Failed(attestor.Type, new InvalidOperationException($"node attestor '{attestor.Type}' returned incomplete facts"));
        if (facts.AgentId.TrustDomain != server.Options.TrustDomain || !facts.AgentId.Path.StartsWith($"{AgentPathPrefix}{attestor.Type}/", StringComparison.Ordinal))
        {
            throw new WritException(NodeAttestationCodes.ForeignId, WritErrorKind.PermissionDenied,
                $"the evidence names agent {facts.AgentId}, which is not an agent of trust domain {server.Options.TrustDomain.Name} attested by {attestor.Type}: use evidence made for this server");
        }
        return facts;
    }

    private WritException Failed(string type, Exception e)
    {
        var errorId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        ServerLog.NodeAttestorFailed(log, e, type, errorId);
        return new WritException(NodeAttestationCodes.Failed, WritErrorKind.Internal, $"node attestor '{type}' failed (error {errorId}): the server log has the details");
    }

    private WritException TooLarge(string what, int size, int? limit = null) => new(NodeAttestationCodes.TooLarge, WritErrorKind.InvalidArgument,
        $"{what} is {size} bytes, more than the {limit ?? Limits.MaxEvidenceBytes} a node attestation accepts: send the evidence the agent's attestor produces");

    private static WritException Banned(string id) => new(NodeAttestationCodes.AgentBanned, WritErrorKind.PermissionDenied,
        $"agent {id} is banned: an admin must evict it ('writ agent evict') before it may attest again");

    private static WritException Drifted(string id, string? reason) => new(NodePostureCodes.NodeDrifted, WritErrorKind.PermissionDenied,
        $"agent {id} has drifted ({reason ?? "continuous attestation failed"}): an admin must readmit it: writ agent readmit {id}");

    /// <summary>The refusal of an SVID to a drifted (quarantined) node.</summary>
    public static WritException Quarantined(AttestedNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return new(NodePostureCodes.AgentDrifted, WritErrorKind.PermissionDenied,
            $"agent {node.SpiffeId} has drifted ({node.StatusReason ?? "continuous attestation failed"}) and gets no new SVIDs until an admin readmits it: writ agent readmit {node.SpiffeId}");
    }

    private static WritException NodeExists(string id, string? why = null) => new(NodeAttestationCodes.NodeExists, WritErrorKind.PermissionDenied,
        $"agent {id} is already attested{(why is null ? "" : $" ({why})")}; evict it first ('writ agent evict')");
}
