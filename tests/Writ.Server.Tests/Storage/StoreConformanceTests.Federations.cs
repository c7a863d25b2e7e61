using Writ.Server.Ledger;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Storage;

/// <summary>Federation relationships (issue #16): foreign bundles in the bundles table, the refresh lease, entries' federates_with, on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    private static FederationRelationship Fed(string td, string profile = FederationRelationship.HttpsWeb) => new()
    {
        TrustDomain = td,
        BundleEndpointUrl = $"https://{td}:8443/",
        Profile = profile,
        EndpointSpiffeId = profile == FederationRelationship.HttpsSpiffe ? $"spiffe://{td}/writ/server" : "",
    };

    private StoredBundle ForeignBundle(string td, long seq) => new(td, $"{{\"keys\":[],\"spiffe_sequence\":{seq}}}", seq, Time.GetUtcNow());

    [Fact]
    public async Task A_federation_relationship_is_stored_with_its_bootstrap_bundle_listed_and_deleted_with_it()
    {
        var before = await Store.Entries.CurrentRevisionAsync(Ct);
        var stored = await Store.Federations.CreateAsync(Fed("b.test", FederationRelationship.HttpsSpiffe), ForeignBundle("b.test", 3), Ct,
            [LedgerEvents.Federation(LedgerEvents.FederationCreated, "uid:1000", Fed("b.test"))]);
        Assert.Equal(Start, stored.CreatedAt);
        Assert.Equal(Start, stored.NextRefresh);
        Assert.Null(stored.LastRefresh);
        Assert.True(await Store.Entries.CurrentRevisionAsync(Ct) > before);   // sync streams of every server wake
        await Store.Federations.CreateAsync(Fed("a.test"), null, Ct);

        await ReopenAsync();
        var list = await Store.Federations.ListAsync(Ct);
        Assert.Equal(["a.test", "b.test"], list.Select(f => f.Relationship.TrustDomain));
        Assert.Null(list[0].Bundle);
        Assert.Equal(3, list[1].Bundle!.Sequence);
        Assert.Equal("spiffe://b.test/writ/server", list[1].Relationship.EndpointSpiffeId);
        Assert.Equal(3, (await Store.Bundles.GetAsync("b.test", Ct))!.Sequence);

        await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => Store.Federations.CreateAsync(Fed("b.test"), null, Ct));
        await Store.Federations.DeleteAsync("b.test", Ct, [LedgerEvents.Federation(LedgerEvents.FederationDeleted, "uid:1000", Fed("b.test"))]);
        Assert.Null(await Store.Bundles.GetAsync("b.test", Ct));
        Assert.Null(await Store.Federations.GetAsync("b.test", Ct));
        await StoreAssert.ThrowsOneLineAsync<StoreNotFoundException>(() => Store.Federations.DeleteAsync("b.test", Ct));
        var all = await AllLedgerAsync(Store);
        Assert.Equal(["federation.created", "federation.deleted"], all.Select(e => e.Kind));
        AssertChained(all);
    }

    [Fact]
    public async Task No_relationship_for_the_stores_own_trust_domain_and_its_bundle_is_untouched()
    {
        await Store.Metadata.SetIfAbsentAsync("trust_domain", "own.test", Ct);
        await Store.Bundles.PutAsync(new StoredBundle("own.test", "{\"keys\":[]}", 7, Start), Ct);
        await StoreAssert.ThrowsOneLineAsync<ArgumentException>(() => Store.Federations.CreateAsync(Fed("own.test"), ForeignBundle("own.test", 1), Ct));
        Assert.Empty(await Store.Federations.ListAsync(Ct));
        Assert.Equal(7, (await Store.Bundles.GetAsync("own.test", Ct))!.Sequence);
        Assert.Empty(await AllLedgerAsync(Store));
    }

    [Fact]
    public async Task Of_two_servers_only_one_gets_the_refresh_lease_and_the_outcome_is_recorded()
    {
        var r = await Store.Federations.CreateAsync(Fed("b.test"), null, Ct);
        var other = await OpenExtraAsync();
        var leases = await Task.WhenAll(
            Store.Federations.TryLeaseRefreshAsync("b.test", r.NextRefresh, Start.AddSeconds(30), Ct),
            other.Federations.TryLeaseRefreshAsync("b.test", r.NextRefresh, Start.AddSeconds(31), Ct));
        Assert.Single(leases, l => l);

        Time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(await Store.Federations.RecordRefreshAsync("b.test", null, "WRIT-FED-FETCH: down", Start.AddMinutes(1), Ct));
        var failed = (await Store.Federations.GetAsync("b.test", Ct))!;
        Assert.Equal("WRIT-FED-FETCH: down", failed.LastError);
        Assert.Null(failed.LastRefresh);
        Assert.Null(await Store.Bundles.GetAsync("b.test", Ct));

        var before = await Store.Entries.CurrentRevisionAsync(Ct);
        Assert.True(await Store.Federations.RecordRefreshAsync("b.test", ForeignBundle("b.test", 2), null, Start.AddMinutes(5), Ct,
            [new LedgerEvent { At = default, Kind = LedgerEvents.FederationBundleUpdated, Actor = "server", Subject = "federation:b.test", DataJson = "{}" }]));
        var ok = (await other.Federations.GetAsync("b.test", Ct))!;
        Assert.Null(ok.LastError);
        Assert.Equal(Start.AddSeconds(5), ok.LastRefresh);
        Assert.Equal(Start.AddMinutes(5), ok.NextRefresh);
        Assert.Equal(2, (await other.Bundles.GetAsync("b.test", Ct))!.Sequence);
        Assert.True(await Store.Entries.CurrentRevisionAsync(Ct) > before);
        Assert.False(await Store.Federations.RecordRefreshAsync("gone.test", null, null, Start, Ct));
        Assert.Equal(["federation.bundle_updated"], (await AllLedgerAsync(Store)).Select(e => e.Kind));
    }

    /// <summary>
    /// Attack (review of issue #16): a fetch from a compromised endpoint is in flight while the admin moves the
    /// relationship to a clean endpoint and bundle; when the fetch completes it must not overwrite the admin's bundle.
    /// </summary>
    [Fact]
    public async Task A_fetch_in_flight_never_overwrites_an_admins_update_of_the_relationship_or_its_bundle()
    {
        var fetchedFrom = await Store.Federations.CreateAsync(Fed("b.test", FederationRelationship.HttpsSpiffe), ForeignBundle("b.test", 1), Ct);
        // The admin supplies a clean bundle (same endpoint) while the fetch runs.
        await Store.Federations.UpdateAsync(Fed("b.test", FederationRelationship.HttpsSpiffe), ForeignBundle("b.test", 5), Ct);
        Assert.False(await Store.Federations.RecordRefreshAsync("b.test", ForeignBundle("b.test", 9), null, Start.AddMinutes(5), Ct,
            fetchedFrom: fetchedFrom, storedSequence: 1));
        Assert.Equal(5, (await Store.Bundles.GetAsync("b.test", Ct))!.Sequence);
        // The admin moves it to another endpoint: a fetch from the old one is dropped too, even with the current bundle.
        var moved = Fed("b.test", FederationRelationship.HttpsSpiffe) with { BundleEndpointUrl = "https://clean.b.test:8443/" };
        await Store.Federations.UpdateAsync(moved, null, Ct);
        Assert.False(await Store.Federations.RecordRefreshAsync("b.test", ForeignBundle("b.test", 9), null, Start.AddMinutes(5), Ct,
            fetchedFrom: fetchedFrom, storedSequence: 5));
        Assert.Equal(5, (await Store.Bundles.GetAsync("b.test", Ct))!.Sequence);
        Assert.DoesNotContain(await AllLedgerAsync(Store), e => e.Kind == "federation.bundle_updated");
        // A fetch that began after the update is recorded.
        var current = (await Store.Federations.GetAsync("b.test", Ct))!;
        Assert.True(await Store.Federations.RecordRefreshAsync("b.test", ForeignBundle("b.test", 9), null, Start.AddMinutes(5), Ct,
            fetchedFrom: current, storedSequence: 5));
        Assert.Equal(9, (await Store.Bundles.GetAsync("b.test", Ct))!.Sequence);
    }

    [Fact]
    public async Task An_entrys_federates_with_is_stored_updated_and_synced()
    {
        var entry = new RegistrationEntry
        {
            SpiffeId = "spiffe://example.org/web",
            ParentId = "spiffe://example.org/agent",
            Selectors = [new Writ.Protocol.Evidence.Selector("unix", "uid:1000")],
            FederatesWith = ["b.test", "c.test"],
        };
        var created = (await Store.Entries.CreateAsync([entry], Ct))[0];
        Assert.Equal(["b.test", "c.test"], created.FederatesWith);
        await ReopenAsync();
        Assert.Equal(created, await Store.Entries.GetAsync(created.Id, Ct));
        var updated = await Store.Entries.UpdateAsync(created with { FederatesWith = ["c.test"], Revision = 0 }, Ct);
        Assert.Equal(["c.test"], (await Store.Entries.GetAsync(created.Id, Ct))!.FederatesWith);
        var changes = await Store.Entries.ChangesSinceAsync(0, ["spiffe://example.org/agent"], Ct);
        Assert.Equal(["c.test"], Assert.Single(changes.Upserts).FederatesWith);
        Assert.Equal(updated, changes.Upserts[0]);
    }
}
