using Writ.Server.Ledger;
using Writ.Server.Storage;
using static Writ.Server.Tests.Storage.Entries;

namespace Writ.Server.Tests.Storage;

/// <summary>
/// Node posture (continuous attestation, issue #14): status, reason and attestor state persist, and every posture write
/// is conditional so a drift never recreates an evicted node and a readmit never undoes a ban.
/// </summary>
public abstract partial class StoreConformanceTests
{
    private const string PostureId = "spiffe://example.org/writ/agent/test_continuous/n1";

    private static AttestedNode ContinuousNode() => Node(PostureId) with { AttestationType = "test_continuous", AttestorState = [1, 2, 3] };

    [Fact]
    public async Task Node_status_reason_and_attestor_state_round_trip()
    {
        var drifted = ContinuousNode() with { Status = NodeStatus.Drifted, StatusReason = "WRIT-TEST-DRIFT: pcr 7 changed" };
        await Store.Nodes.CreateAsync(drifted, Ct);
        Assert.Equal(drifted with { CreatedAt = Start, UpdatedAt = Start }, await Store.Nodes.GetAsync(PostureId, Ct));

        await Store.Nodes.UpdateAsync(drifted with { Status = NodeStatus.Active, StatusReason = null, AttestorState = null }, Ct);
        var read = (await Store.Nodes.GetAsync(PostureId, Ct))!;
        Assert.Equal(NodeStatus.Active, read.Status);
        Assert.Null(read.StatusReason);
        Assert.Null(read.AttestorState);

        Assert.Equal(NodeCreateOutcome.Created, await Store.Nodes.CreateAttestedAsync(ContinuousNode() with { SpiffeId = PostureId + "b" }, null, Start, Ct));
        Assert.Equal([1, 2, 3], (await Store.Nodes.GetAsync(PostureId + "b", Ct))!.AttestorState);
    }

    [Fact]
    public async Task Marking_drifted_is_conditional_and_never_recreates_an_evicted_node()
    {
        await Store.Nodes.CreateAsync(ContinuousNode(), Ct);
        Assert.False(await Store.Nodes.TryMarkDriftedAsync(PostureId, "ffff", "WRIT-TEST: old serial", Ct, [Drift()]));   // replaced SVID
        Assert.True(await Store.Nodes.TryMarkDriftedAsync(PostureId, "0a1b2c", "WRIT-TEST: drift", Ct, [Drift()]));
        Assert.False(await Store.Nodes.TryMarkDriftedAsync(PostureId, null, "WRIT-TEST: again", Ct, [Drift()]));          // already drifted
        var node = (await Store.Nodes.GetAsync(PostureId, Ct))!;
        Assert.Equal(NodeStatus.Drifted, node.Status);
        Assert.Equal("WRIT-TEST: drift", node.StatusReason);

        await Store.Nodes.DeleteAsync(PostureId, Ct);
        Assert.False(await Store.Nodes.TryMarkDriftedAsync(PostureId, null, "WRIT-TEST: after eviction", Ct, [Drift()]));
        Assert.Null(await Store.Nodes.GetAsync(PostureId, Ct));
        // Only the one drift that happened is in the ledger.
        Assert.Single(await AllLedgerAsync(Store), e => e.Kind == LedgerEvents.NodeDrifted);
    }

    [Fact]
    public async Task Readmit_needs_a_drifted_node_and_never_undoes_a_ban()
    {
        await Store.Nodes.CreateAsync(ContinuousNode(), Ct);
        Assert.False(await Store.Nodes.TryReadmitAsync(PostureId, Ct, [Readmit()]));   // active: nothing to readmit
        Assert.True(await Store.Nodes.TryMarkDriftedAsync(PostureId, null, "WRIT-TEST: drift", Ct));
        Assert.True(await Store.Nodes.TryReadmitAsync(PostureId, Ct, [Readmit()]));
        var node = (await Store.Nodes.GetAsync(PostureId, Ct))!;
        Assert.Equal(NodeStatus.Active, node.Status);
        Assert.Null(node.StatusReason);

        Assert.True(await Store.Nodes.TryMarkDriftedAsync(PostureId, null, "WRIT-TEST: drift", Ct));
        await Store.Nodes.UpdateAsync((await Store.Nodes.GetAsync(PostureId, Ct))! with { Banned = true }, Ct);
        Assert.False(await Store.Nodes.TryReadmitAsync(PostureId, Ct, [Readmit()]));
        Assert.True((await Store.Nodes.GetAsync(PostureId, Ct))!.Banned);
        Assert.False(await Store.Nodes.TryReadmitAsync("spiffe://example.org/writ/agent/none", Ct, [Readmit()]));
        Assert.Single(await AllLedgerAsync(Store), e => e.Kind == LedgerEvents.NodeReadmitted);
    }

    [Fact]
    public async Task Reattest_updates_only_an_active_unbanned_node()
    {
        await Store.Nodes.CreateAsync(ContinuousNode(), Ct);
        var fresh = ContinuousNode() with { SerialNumber = "ff01", ExpiresAt = Start.AddHours(3), Selectors = [Sel("test_continuous:n1")], AttestorState = [9] };
        Assert.True(await Store.Nodes.TryReattestAsync(fresh, Ct));
        var read = (await Store.Nodes.GetAsync(PostureId, Ct))!;
        Assert.Equal(("ff01", Start.AddHours(3)), (read.SerialNumber, read.ExpiresAt));
        Assert.Equal([9], read.AttestorState);
        Assert.Equal([Sel("test_continuous:n1")], read.Selectors);

        Assert.True(await Store.Nodes.TryMarkDriftedAsync(PostureId, null, "WRIT-TEST: drift", Ct));
        Assert.False(await Store.Nodes.TryReattestAsync(fresh with { SerialNumber = "ff02" }, Ct));
        Assert.Equal("ff01", (await Store.Nodes.GetAsync(PostureId, Ct))!.SerialNumber);

        await Store.Nodes.DeleteAsync(PostureId, Ct);
        Assert.False(await Store.Nodes.TryReattestAsync(fresh, Ct));
        Assert.Null(await Store.Nodes.GetAsync(PostureId, Ct));
    }

    [Fact]
    public async Task A_passed_recheck_updates_selectors_and_state_of_the_same_active_node_only()
    {
        await Store.Nodes.CreateAsync(ContinuousNode(), Ct);
        Assert.True(await Store.Nodes.TryUpdatePostureAsync(PostureId, "0a1b2c", [Sel("test_continuous:pcr:1")], [7], Ct));
        var read = (await Store.Nodes.GetAsync(PostureId, Ct))!;
        Assert.Equal([Sel("test_continuous:pcr:1")], read.Selectors);
        Assert.Equal([7], read.AttestorState);
        Assert.False(await Store.Nodes.TryUpdatePostureAsync(PostureId, "ffff", [], null, Ct));
        Assert.True(await Store.Nodes.TryMarkDriftedAsync(PostureId, null, "WRIT-TEST: drift", Ct));
        Assert.False(await Store.Nodes.TryUpdatePostureAsync(PostureId, "0a1b2c", [], null, Ct));
        Assert.Equal([7], (await Store.Nodes.GetAsync(PostureId, Ct))!.AttestorState);
    }

    private static LedgerEvent Drift() => LedgerEvents.NodeDrift(ContinuousNode(), "WRIT-TEST", "drift", "quarantine");

    private static LedgerEvent Readmit() => LedgerEvents.NodeReadmit("uid:0", ContinuousNode());
}
