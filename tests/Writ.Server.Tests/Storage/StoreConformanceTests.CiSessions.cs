using Writ.Protocol.Evidence;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Storage;

/// <summary>CI sessions (issue #15, migration 7): a job token is claimed once, credentials attach, logout ends; on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    private CiSession Session(string id, string tokenKey, TimeSpan? lifetime = null) => new()
    {
        Id = id,
        TokenKey = tokenKey,
        Issuer = "https://token.actions.githubusercontent.com",
        Subject = "repo:org/app:ref:refs/heads/main",
        SpiffeId = "spiffe://example.org/ci/deployer",
        EntryId = "entry-1",
        Selectors = [new Selector("oidc", "claim:repository:org/app"), new Selector("oidc", "iss:https://token.actions.githubusercontent.com")],
        Facts = new Dictionary<string, string> { ["oidc.sub"] = "repo:org/app:ref:refs/heads/main", ["oidc.iss"] = "https://token.actions.githubusercontent.com" },
        CreatedAt = Time.GetUtcNow(),
        ExpiresAt = Time.GetUtcNow() + (lifetime ?? TimeSpan.FromMinutes(10)),
    };

    [Fact]
    public async Task A_ci_session_is_stored_found_by_id_token_and_serial_and_survives_a_reopen()
    {
        var s = Session("s1", "jti:aa");
        await Store.CiSessions.CreateAsync(s, Ct);
        Assert.True(await Store.CiSessions.AttachAsync("s1", "0a1b2c", [], Ct));
        Assert.True(await Store.CiSessions.AttachAsync("s1", null, ["j1", "j2"], Ct));
        Assert.True(await Store.CiSessions.AttachAsync("s1", null, ["j2", "j3"], Ct));

        await ReopenAsync();
        var got = await Store.CiSessions.GetAsync("s1", Ct);
        Assert.NotNull(got);
        Assert.Equal("0A1B2C", got.Serial);
        Assert.Equal(["j1", "j2", "j3"], got.Jtis);
        Assert.Equal(s.Selectors, got.Selectors);
        Assert.Equal(s.Facts.OrderBy(f => f.Key), got.Facts.OrderBy(f => f.Key));
        Assert.Equal(s.ExpiresAt, got.ExpiresAt);
        Assert.Null(got.EndedAt);
        Assert.Equal("s1", (await Store.CiSessions.GetByTokenKeyAsync("jti:aa", Ct))?.Id);
        Assert.Equal("s1", (await Store.CiSessions.GetBySerialAsync("0a1b2c", Ct))?.Id);
        Assert.Null(await Store.CiSessions.GetBySerialAsync("0a1b2d", Ct));
        Assert.Null(await Store.CiSessions.GetAsync("s2", Ct));
    }

    [Fact]
    public async Task A_token_key_is_claimed_once_and_concurrent_claims_from_two_stores_let_exactly_one_win()
    {
        await Store.CiSessions.CreateAsync(Session("s1", "jti:once"), Ct);
        var again = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() => Store.CiSessions.CreateAsync(Session("s2", "jti:once"), Ct));
        Assert.Contains("already used", again.Message, StringComparison.Ordinal);
        Assert.Null(await Store.CiSessions.GetAsync("s2", Ct));

        var other = await OpenExtraAsync();
        var attempts = Enumerable.Range(0, 6).Select(async i =>
        {
            try
            {
                await (i % 2 == 0 ? Store : other).CiSessions.CreateAsync(Session($"race{i}", "sha256:race"), Ct);
                return true;
            }
            catch (StoreConflictException)
            {
                return false;
            }
        });
        Assert.Single(await Task.WhenAll(attempts), won => won);
    }

    [Fact]
    public async Task Ending_a_session_is_once_with_its_record_and_nothing_attaches_afterwards()
    {
        await Store.CiSessions.CreateAsync(Session("s1", "jti:end"), Ct);
        var record = new LedgerEvent { At = Time.GetUtcNow(), Kind = "ci.logout", Actor = "server", Subject = "spiffe://example.org/ci/deployer", DataJson = "{\"session_id\":\"s1\"}" };
        Assert.True(await Store.CiSessions.EndAsync("s1", Time.GetUtcNow(), "logout", Ct, [record]));
        Assert.False(await Store.CiSessions.EndAsync("s1", Time.GetUtcNow(), "logout", Ct, [record]));
        Assert.False(await Store.CiSessions.AttachAsync("s1", null, ["late"], Ct));

        var got = await Store.CiSessions.GetAsync("s1", Ct);
        Assert.Equal("logout", got?.EndReason);
        Assert.Empty(got!.Jtis);
        Assert.False(got.IsLive(Time.GetUtcNow()));
        Assert.Single(await Store.Ledger.ListAsync(0, 100, "ci.logout", null, Ct));
    }

    [Fact]
    public async Task Expired_open_sessions_are_listed_for_the_sweep_and_old_ones_pruned()
    {
        await Store.CiSessions.CreateAsync(Session("short", "jti:short", TimeSpan.FromMinutes(1)), Ct);
        await Store.CiSessions.CreateAsync(Session("long", "jti:long", TimeSpan.FromHours(3)), Ct);
        await Store.CiSessions.CreateAsync(Session("ended", "jti:ended", TimeSpan.FromMinutes(1)), Ct);
        await Store.CiSessions.EndAsync("ended", Time.GetUtcNow(), "logout", Ct);

        Assert.Empty(await Store.CiSessions.ExpiredOpenAsync(Time.GetUtcNow(), 10, Ct));
        Time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(["short"], (await Store.CiSessions.ExpiredOpenAsync(Time.GetUtcNow(), 10, Ct)).Select(s => s.Id));

        Assert.Equal(2, await Store.CiSessions.PruneAsync(Time.GetUtcNow(), Ct));
        Assert.Null(await Store.CiSessions.GetAsync("short", Ct));
        Assert.NotNull(await Store.CiSessions.GetAsync("long", Ct));
    }
}
