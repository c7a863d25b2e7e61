using System.Security.Cryptography;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Storage;

/// <summary>Node attestation's writes: the burn with the node in one transaction, and the renewal conditional on no ban.</summary>
public abstract partial class StoreConformanceTests
{
    private async Task<byte[]> StoredTokenAsync(string id, DateTimeOffset expires)
    {
        var (hash, token) = NewToken(id, expires);
        await Store.JoinTokens.CreateAsync(token, Ct);
        return hash;
    }

    private static SingleUseEvidence Burn(byte[] hash) => new(SingleUseEvidence.JoinToken, hash);

    [Fact]
    public async Task Join_token_check_reads_without_consuming()
    {
        var hash = await StoredTokenAsync("tok-1", Start.AddMinutes(10));
        Assert.Equal(JoinTokenOutcome.Usable, (await Store.JoinTokens.CheckAsync(hash, Start, Ct)).Outcome);
        Assert.Equal(JoinTokenOutcome.Usable, (await Store.JoinTokens.CheckAsync(hash, Start, Ct)).Outcome);
        Assert.Equal(JoinTokenOutcome.Expired, (await Store.JoinTokens.CheckAsync(hash, Start.AddMinutes(10), Ct)).Outcome);
        Assert.Equal(JoinTokenOutcome.Unknown, (await Store.JoinTokens.CheckAsync(SHA256.HashData("guess"u8), Start, Ct)).Outcome);
        Assert.Equal(JoinTokenOutcome.Consumed, (await Store.JoinTokens.ConsumeAsync(hash, Start, Ct)).Outcome);
        Assert.Equal(JoinTokenOutcome.AlreadyUsed, (await Store.JoinTokens.CheckAsync(hash, Start, Ct)).Outcome);
    }

    [Fact]
    public async Task Attested_node_is_stored_with_its_burn_and_the_burnt_token_stores_no_second_node()
    {
        var hash = await StoredTokenAsync("tok-1", Start.AddMinutes(10));
        Assert.Equal(NodeCreateOutcome.Created, await Store.Nodes.CreateAttestedAsync(Node("spiffe://example.org/agent/a"), Burn(hash), Start, Ct));
        Assert.Equal(JoinTokenOutcome.AlreadyUsed, (await Store.JoinTokens.CheckAsync(hash, Start, Ct)).Outcome);
        Assert.Equal(Node("spiffe://example.org/agent/a") with { CreatedAt = Start, UpdatedAt = Start }, await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct));

        Assert.Equal(NodeCreateOutcome.EvidenceUsed, await Store.Nodes.CreateAttestedAsync(Node("spiffe://example.org/agent/b"), Burn(hash), Start, Ct));
        Assert.Null(await Store.Nodes.GetAsync("spiffe://example.org/agent/b", Ct));
    }

    [Fact]
    public async Task An_existing_node_or_a_dead_token_writes_nothing_and_burns_nothing()
    {
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/agent/a") with { Banned = true }, Ct);
        var hash = await StoredTokenAsync("tok-1", Start.AddMinutes(10));
        Assert.Equal(NodeCreateOutcome.NodeExists, await Store.Nodes.CreateAttestedAsync(Node("spiffe://example.org/agent/a"), Burn(hash), Start, Ct));
        Assert.True((await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct))!.Banned);
        Assert.Equal(JoinTokenOutcome.Usable, (await Store.JoinTokens.CheckAsync(hash, Start, Ct)).Outcome);

        Assert.Equal(NodeCreateOutcome.EvidenceExpired, await Store.Nodes.CreateAttestedAsync(Node("spiffe://example.org/agent/b"), Burn(hash), Start.AddMinutes(10), Ct));
        Assert.Equal(NodeCreateOutcome.EvidenceUnknown, await Store.Nodes.CreateAttestedAsync(Node("spiffe://example.org/agent/b"), Burn(SHA256.HashData("guess"u8)), Start, Ct));
        Assert.Null(await Store.Nodes.GetAsync("spiffe://example.org/agent/b", Ct));
        Assert.Equal(JoinTokenOutcome.Usable, (await Store.JoinTokens.CheckAsync(hash, Start, Ct)).Outcome);
    }

    [Fact]
    public async Task Agents_racing_with_one_token_on_two_servers_store_exactly_one_node()
    {
        var hash = await StoredTokenAsync("tok-race", Start.AddHours(1));
        var other = await OpenExtraAsync();
        using var go = new ManualResetEventSlim();
        var tasks = Enumerable.Range(0, 10).Select(i => Task.Run(async () =>
        {
            go.Wait(Ct);
            var store = i % 2 == 0 ? Store : other;
            return await store.Nodes.CreateAttestedAsync(Node($"spiffe://example.org/agent/n{i}"), Burn(hash), Start, Ct);
        }, Ct)).ToArray();
        go.Set();
        var outcomes = await Task.WhenAll(tasks);
        Assert.Single(outcomes, o => o == NodeCreateOutcome.Created);
        Assert.Equal(9, outcomes.Count(o => o == NodeCreateOutcome.EvidenceUsed));
        Assert.Single(await Store.Nodes.ListAsync(Ct));
    }

    [Fact]
    public async Task Renewal_write_is_conditional_so_a_ban_that_landed_after_the_read_survives()
    {
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/agent/a"), Ct);
        var read = (await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct))!;   // the renewal reads the node...
        await Store.Nodes.UpdateAsync(read with { Banned = true }, Ct);                    // ...an admin bans it...
        Assert.False(await Store.Nodes.TryRenewAsync(read.SpiffeId, read.SerialNumber, "ff01", Start.AddHours(2), Ct));   // ...the write loses
        var after = (await Store.Nodes.GetAsync(read.SpiffeId, Ct))!;
        Assert.True(after.Banned);
        Assert.Equal(read.SerialNumber, after.SerialNumber);
    }

    [Fact]
    public async Task Renewal_write_is_conditional_so_a_revocation_that_landed_after_the_check_survives()
    {
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/agent/a"), Ct);
        var read = (await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct))!;   // the renewal passed its revocation check...
        await Store.Revocations.RevokeAsync([RevokedSerial(read.SerialNumber)], [RevokedEvent(read.SerialNumber.ToUpperInvariant())], Ct);   // ...the SVID is revoked...
        Assert.False(await Store.Nodes.TryRenewAsync(read.SpiffeId, read.SerialNumber, "ff01", Start.AddHours(2), Ct));   // ...the write loses
        Assert.Equal(read.SerialNumber, (await Store.Nodes.GetAsync(read.SpiffeId, Ct))!.SerialNumber);
    }

    [Fact]
    public async Task Renewal_write_needs_the_serial_it_read_and_an_existing_node()
    {
        await Store.Nodes.CreateAsync(Node("spiffe://example.org/agent/a"), Ct);
        Time.Advance(TimeSpan.FromMinutes(5));
        Assert.True(await Store.Nodes.TryRenewAsync("spiffe://example.org/agent/a", "0a1b2c", "ff01", Start.AddHours(2), Ct));
        var renewed = (await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct))!;
        Assert.Equal(("ff01", Start.AddHours(2), Start.AddMinutes(5), Start), (renewed.SerialNumber, renewed.ExpiresAt, renewed.UpdatedAt, renewed.CreatedAt));

        Assert.False(await Store.Nodes.TryRenewAsync("spiffe://example.org/agent/a", "0a1b2c", "ff02", Start.AddHours(3), Ct));   // renewed elsewhere
        Assert.Equal("ff01", (await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct))!.SerialNumber);
        await Store.Nodes.DeleteAsync("spiffe://example.org/agent/a", Ct);
        Assert.False(await Store.Nodes.TryRenewAsync("spiffe://example.org/agent/a", "ff01", "ff03", Start.AddHours(3), Ct));   // evicted
        Assert.Null(await Store.Nodes.GetAsync("spiffe://example.org/agent/a", Ct));
    }
}
