using System.Security.Cryptography;
using Writ.Protocol.Errors;
using Writ.Server.Ledger;
using Writ.Server.NodeAttestation;
using Writ.Server.Storage;
using Writ.Spiffe.X509;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>The conformance suite on the continuous (re-attestable) test attestor.</summary>
public sealed class ContinuousTestAttestorConformanceTests : NodeAttestorConformance
{
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private int _names;

    protected override bool SingleUse => false;

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time) => new ContinuousTestAttestor(_key);

    protected override Task<AgentEvidence> ValidEvidenceAsync() => Task.FromResult(Make("example.org"));

    protected override Task<AgentEvidence> ForeignTrustDomainEvidenceAsync() => Task.FromResult(Make("other.example"));

    protected override Task<AgentEvidence?> ExpiredEvidenceAsync() => Task.FromResult<AgentEvidence?>(null);

    protected override Task<AgentEvidence?> NotYetValidEvidenceAsync() => Task.FromResult<AgentEvidence?>(null);

    private AgentEvidence Make(string td)
    {
        var evidence = ContinuousTestAttestor.Evidence(_key, $"node{Interlocked.Increment(ref _names)}", "good", td);
        return new AgentEvidence(evidence, nonce => ContinuousTestAttestor.ChallengeAnswer(_key, nonce, evidence));
    }
}

/// <summary>
/// Continuous node attestation on the server (issue #14 item 4) with the test attestor: the recheck schedule, answers,
/// drift (quarantine and revoke), missing answers, re-attestation, and the races that must not resurrect or re-admit a node.
/// Real SQLite store, CA, policy and ledger; the clock is fake and the scheduler is driven one pass at a time.
/// </summary>
public sealed class NodePostureTests : IAsyncLifetime
{
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private NodeAttestationHarness H = null!;
    private ContinuousTestAttestor _attestor = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        H = await NodeAttestationHarness.CreateAsync();
        _attestor = new ContinuousTestAttestor(_key);
        H.Use(NodeAttestationLimits.Default, new JoinTokenNodeAttestor(H.Store.JoinTokens), _attestor);
    }

    public async ValueTask DisposeAsync() => await H.DisposeAsync();

    private NodePostureService Posture => H.Server.Posture;

    private async Task<AttestedNode> AttestAsync(string name, string posture = "good")
    {
        var r = await AttestRawAsync(name, posture);
        return (await H.Store.Nodes.GetAsync(r.AgentId.ToString(), Ct))!;
    }

    private async Task<NodeAttestationResult> AttestRawAsync(string name, string posture = "good")
    {
        var evidence = ContinuousTestAttestor.Evidence(_key, name, posture);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return await H.Server.NodeAttestation.AttestAsync(ContinuousTestAttestor.TypeName, evidence, Csr.Create(key),
            (c, _) => Task.FromResult<ReadOnlyMemory<byte>>(ContinuousTestAttestor.ChallengeAnswer(_key, c, evidence)), "test", Ct);
    }

    /// <summary>Moves the clock one interval and runs a scheduler pass: every active node gets its recheck.</summary>
    private async Task<Writ.Protocol.Agent.NodeRecheck> RecheckAsync(AttestedNode node)
    {
        H.Ca.Time.Advance(_attestor.RecheckInterval);
        await Posture.RunOnceAsync(Ct);
        return Posture.Pending(node.SpiffeId) ?? throw new InvalidOperationException($"no recheck outstanding for {node.SpiffeId}");
    }

    private Task<NodeStatus> AnswerAsync(AttestedNode node, Writ.Protocol.Agent.NodeRecheck recheck, string posture) =>
        Posture.AnswerAsync(node, recheck.Id, ContinuousTestAttestor.RecheckAnswer(_key, recheck.Payload.Memory, posture), Ct);

    private async Task<AttestedNode> NodeAsync(string id) => (await H.Store.Nodes.GetAsync(id, Ct))!;

    private async Task<IReadOnlyList<LedgerEvent>> LedgerAsync(string kind) => await H.Store.Ledger.ListAsync(0, 1000, kind, null, Ct);

    [Fact]
    public async Task A_good_answer_keeps_the_node_active_and_cannot_be_replayed()
    {
        var node = await AttestAsync("n1");
        Assert.Equal([.. "good"u8], node.AttestorState!);
        var recheck = await RecheckAsync(node);
        Assert.Equal(ContinuousTestAttestor.TypeName, recheck.AttestationType);
        Assert.Equal((H.Ca.Time.GetUtcNow() + _attestor.RecheckGrace).ToUnixTimeSeconds(), recheck.DeadlineUnix);

        Assert.Equal(NodeStatus.Active, await AnswerAsync(node, recheck, "good"));
        Assert.Null(Posture.Pending(node.SpiffeId));
        var replay = await Assert.ThrowsAsync<WritException>(() => AnswerAsync(node, recheck, "good"));
        Assert.Equal(NodePostureCodes.RecheckUnknown, replay.Code);
        Assert.Equal(NodeStatus.Active, (await NodeAsync(node.SpiffeId)).Status);
    }

    [Fact]
    public async Task A_drifted_node_is_quarantined_renewal_and_reattestation_are_refused()
    {
        var node = await AttestAsync("n1");
        var recheck = await RecheckAsync(node);

        Assert.Equal(NodeStatus.Drifted, await AnswerAsync(node, recheck, "tampered"));

        var drifted = await NodeAsync(node.SpiffeId);
        Assert.Equal(NodeStatus.Drifted, drifted.Status);
        Assert.StartsWith($"{ContinuousTestAttestor.PostureChanged}: posture is 'tampered'", drifted.StatusReason, StringComparison.Ordinal);
        var record = Assert.Single(await LedgerAsync(LedgerEvents.NodeDrifted));
        Assert.Contains($"\"code\":\"{ContinuousTestAttestor.PostureChanged}\"", record.DataJson, StringComparison.Ordinal);
        Assert.Contains("\"action\":\"quarantine\"", record.DataJson, StringComparison.Ordinal);
        // Quarantine does not revoke: the agent SVID stays valid (its Sync and recheck answers stay open).
        Assert.False(H.Server.Revocations.IsSerialRevoked(node.SerialNumber));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var renew = await Assert.ThrowsAsync<WritException>(() => H.Server.NodeAttestation.RenewAsync(drifted, PublicKeyOf(key), Ct));
        Assert.Equal(NodePostureCodes.AgentDrifted, renew.Code);
        Assert.Equal(WritErrorKind.PermissionDenied, renew.Kind);
        Assert.Contains("writ agent readmit", renew.Message, StringComparison.Ordinal);

        // The node's own (reusable) evidence cannot bring it back: only an admin's readmit does.
        var again = await Assert.ThrowsAsync<WritException>(() => AttestRawAsync("n1"));
        Assert.Equal(NodePostureCodes.NodeDrifted, again.Code);
        Assert.Contains("writ agent readmit", again.Message, StringComparison.Ordinal);
        Assert.Equal(drifted.SerialNumber, (await NodeAsync(node.SpiffeId)).SerialNumber);

        // No rechecks for a drifted node; after a readmit one goes out at the next pass.
        await Posture.RunOnceAsync(Ct);
        Assert.Null(Posture.Pending(node.SpiffeId));
        Assert.True(await H.Store.Nodes.TryReadmitAsync(node.SpiffeId, Ct));
        Posture.RecheckNow(node.SpiffeId);
        await Posture.RunOnceAsync(Ct);
        var afterReadmit = Posture.Pending(node.SpiffeId);
        Assert.NotNull(afterReadmit);
        Assert.Equal(NodeStatus.Active, await AnswerAsync(await NodeAsync(node.SpiffeId), afterReadmit, "good"));
    }

    [Fact]
    public async Task Missing_answers_drift_the_node_after_the_grace_and_not_before()
    {
        var node = await AttestAsync("n1");
        await RecheckAsync(node);

        H.Ca.Time.Advance(_attestor.RecheckGrace);   // exactly at the deadline: still in time
        await Posture.RunOnceAsync(Ct);
        Assert.Equal(NodeStatus.Active, (await NodeAsync(node.SpiffeId)).Status);

        H.Ca.Time.Advance(TimeSpan.FromSeconds(1));
        await Posture.RunOnceAsync(Ct);
        var drifted = await NodeAsync(node.SpiffeId);
        Assert.Equal(NodeStatus.Drifted, drifted.Status);
        Assert.StartsWith(NodePostureCodes.RecheckMissing, drifted.StatusReason, StringComparison.Ordinal);
        Assert.Single(await LedgerAsync(LedgerEvents.NodeDrifted));
    }

    [Fact]
    public async Task A_late_answer_is_refused_and_changes_nothing()
    {
        var node = await AttestAsync("n1");
        var recheck = await RecheckAsync(node);
        H.Ca.Time.Advance(_attestor.RecheckGrace + TimeSpan.FromSeconds(1));
        var late = await Assert.ThrowsAsync<WritException>(() => AnswerAsync(node, recheck, "good"));
        Assert.Equal(NodePostureCodes.RecheckUnknown, late.Code);
        Assert.Equal(NodeStatus.Active, (await NodeAsync(node.SpiffeId)).Status);   // the scheduler, not the answer, drifts it
    }

    [Fact]
    public async Task An_answer_to_another_nodes_recheck_is_refused()
    {
        var n1 = await AttestAsync("n1");
        var n2 = await AttestAsync("n2");
        H.Ca.Time.Advance(_attestor.RecheckInterval);
        await Posture.RunOnceAsync(Ct);
        var r1 = Posture.Pending(n1.SpiffeId)!;
        var r2 = Posture.Pending(n2.SpiffeId)!;

        // n1 answers n2's recheck (even with a valid MAC over n2's nonce): unknown for n1, nothing changes for either.
        var e = await Assert.ThrowsAsync<WritException>(() => AnswerAsync(n1, r2, "tampered"));
        Assert.Equal(NodePostureCodes.RecheckUnknown, e.Code);
        Assert.Equal(NodeStatus.Active, (await NodeAsync(n1.SpiffeId)).Status);
        Assert.Equal(NodeStatus.Active, (await NodeAsync(n2.SpiffeId)).Status);
        Assert.Equal(r2.Id, Posture.Pending(n2.SpiffeId)!.Id);

        Assert.Equal(NodeStatus.Active, await AnswerAsync(n1, r1, "good"));
        Assert.Equal(NodeStatus.Active, await AnswerAsync(n2, r2, "good"));
    }

    [Fact]
    public async Task An_oversized_answer_is_refused_before_the_attestor_sees_it()
    {
        var node = await AttestAsync("n1");
        var recheck = await RecheckAsync(node);
        var e = await Assert.ThrowsAsync<WritException>(() =>
            Posture.AnswerAsync(node, recheck.Id, new byte[H.Server.NodeAttestation.Limits.MaxAnswerBytes + 1], Ct));
        Assert.Equal(NodePostureCodes.RecheckTooLarge, e.Code);
        Assert.Equal(NodeStatus.Active, await AnswerAsync(node, recheck, "good"));   // still outstanding
    }

    [Fact]
    public async Task An_appraisal_that_throws_is_a_server_bug_and_does_not_drift_the_node()
    {
        var node = await AttestAsync("n1");
        var recheck = await RecheckAsync(node);
        _attestor.AppraisalFault = new InvalidOperationException("Password=hunter2");
        var e = await Assert.ThrowsAsync<WritException>(() => AnswerAsync(node, recheck, "tampered"));
        Assert.Equal(NodePostureCodes.RecheckFailed, e.Code);
        Assert.DoesNotContain("hunter2", e.Message, StringComparison.Ordinal);
        Assert.Equal(NodeStatus.Active, (await NodeAsync(node.SpiffeId)).Status);
        Assert.Empty(await LedgerAsync(LedgerEvents.NodeDrifted));
    }

    [Fact]
    public async Task A_drift_racing_an_eviction_does_not_recreate_the_node()
    {
        var node = await AttestAsync("n1");
        var recheck = await RecheckAsync(node);
        // The admin evicts the node after the answer was appraised, right before the drift is written.
        H.Store.BeforeDriftWrite = () => H.Store.Nodes.DeleteAsync(node.SpiffeId, Ct);
        await AnswerAsync(node, recheck, "tampered");
        Assert.Null(await H.Store.Nodes.GetAsync(node.SpiffeId, Ct));
        Assert.Empty(await LedgerAsync(LedgerEvents.NodeDrifted));
        await Posture.RunOnceAsync(Ct);
        Assert.Null(Posture.Pending(node.SpiffeId));
    }

    [Fact]
    public async Task Drift_with_revoke_revokes_the_agent_svid()
    {
        _attestor.DriftAction = DriftAction.Revoke;
        var node = await AttestAsync("n1");
        var recheck = await RecheckAsync(node);
        Assert.Equal(NodeStatus.Drifted, await AnswerAsync(node, recheck, "tampered"));
        Assert.True(H.Server.Revocations.IsSerialRevoked(node.SerialNumber));
        var revoked = await H.Store.Revocations.ListAsync(H.Ca.Time.GetUtcNow(), false, Ct);
        Assert.Contains(revoked, r => r.Reason == $"node drifted: {ContinuousTestAttestor.PostureChanged}");
        Assert.Contains("\"action\":\"revoke\"", Assert.Single(await LedgerAsync(LedgerEvents.NodeDrifted)).DataJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_active_node_attests_again_keeps_its_id_and_voids_its_outstanding_recheck()
    {
        var first = await AttestAsync("n1");
        var recheck = await RecheckAsync(first);
        var again = await AttestAsync("n1");
        Assert.Equal(first.SpiffeId, again.SpiffeId);
        Assert.NotEqual(first.SerialNumber, again.SerialNumber);
        Assert.Equal(first.CreatedAt, again.CreatedAt);
        Assert.Single(await LedgerAsync(LedgerEvents.NodeReattested));
        Assert.Null(Posture.Pending(first.SpiffeId));
        var stale = await Assert.ThrowsAsync<WritException>(() => AnswerAsync(again, recheck, "good"));
        Assert.Equal(NodePostureCodes.RecheckUnknown, stale.Code);
    }

    [Fact]
    public async Task A_banned_node_cannot_attest_again()
    {
        var node = await AttestAsync("n1");
        await H.Store.Nodes.UpdateAsync(node with { Banned = true }, Ct);
        var e = await Assert.ThrowsAsync<WritException>(() => AttestRawAsync("n1"));
        Assert.Equal(NodeAttestationCodes.AgentBanned, e.Code);
    }

    [Fact]
    public async Task A_continuous_node_is_not_renewed_it_attests_again()
    {
        var node = await AttestAsync("n1");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var e = await Assert.ThrowsAsync<WritException>(() => H.Server.NodeAttestation.RenewAsync(node, PublicKeyOf(key), Ct));
        Assert.Equal(NodePostureCodes.Reattest, e.Code);
        Assert.Equal(node.SerialNumber, (await NodeAsync(node.SpiffeId)).SerialNumber);
    }

    private static System.Security.Cryptography.X509Certificates.PublicKey PublicKeyOf(ECDsa key) => new(key);
}
