using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Revocation;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;
using Writ.Spiffe;

namespace Writ.Server.Tests.Revocation;

/// <summary>
/// The revocation watch loop as a hosted service on a real SQLite store, its clock a <see cref="Microsoft.Extensions.Time.Testing.FakeTimeProvider"/>:
/// the prune sweep runs when the fake clock says so, and a revocation made elsewhere reaches the deny list with no call.
/// </summary>
public sealed class RevocationWatcherTests : IAsyncLifetime
{
    private CaHarness _h = null!;
    private WritCa _ca = null!;
    private RevocationService _svc = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _h = await CaHarness.CreateAsync();
        _ca = await _h.StartCaAsync(new CaOptions(), new MemoryKeyManager());
        _svc = new RevocationService(_h.Store, _ca, _h.Time, NullLogger<RevocationService>.Instance);
    }

    public async ValueTask DisposeAsync() => await _h.DisposeAsync();

    private RevocationWatcher Watcher() => new(_svc, _h.Store, _h.Time, new Random(7), NullLogger<RevocationWatcher>.Instance);

    private async Task<string> IssueAndRevokeAsync(RevocationService by)
    {
        var leaf = _ca.SignX509Svid(SpiffeId.Parse("spiffe://example.org/web"), CaTest.WorkloadKey(), TimeSpan.FromHours(1))[0];
        await _h.Store.Ledger.AppendAsync([], [new IssuedCredential
        {
            Kind = "x509", Id = leaf.SerialNumber, SpiffeId = "spiffe://example.org/web", EntryId = "e1", AgentId = "spiffe://example.org/writ/agent/join_token/a",
            InstanceId = "100:1", DecisionId = "d-1", IssuedAt = _h.Time.GetUtcNow(), ExpiresAt = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()),
        }], Ct);
        RevocationTarget.TryCreate(RevocationTargetKind.Serial, leaf.SerialNumber, out var target, out _);
        await by.RevokeAsync(target!, "key leaked", "uid:0", Ct);
        return leaf.SerialNumber;
    }

    [Fact]
    public async Task The_prune_sweep_runs_when_the_fake_clock_says_so_without_a_store_change_to_wake_it()
    {
        await IssueAndRevokeAsync(_svc);   // the SVID expires in an hour; its revocation may be forgotten an hour after that
        using var watcher = Watcher();
        await watcher.StartAsync(Ct);
        await watcher.Running.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        try
        {
            Assert.Single(await _h.Store.Revocations.ListAsync(_h.Time.GetUtcNow(), true, Ct));
            _h.Time.Advance((2 * RevocationService.PruneMargin) + TimeSpan.FromSeconds(1));
            // Nothing is written and nothing is called: only the loop's own timer, on the fake clock, can start the sweep.
            await Deadline.UntilAsync(async () => (await _h.Store.Revocations.ListAsync(_h.Time.GetUtcNow(), true, Ct)).Count == 0, "the revocation to be pruned");
        }
        finally
        {
            await watcher.StopAsync(Ct);
        }
        await watcher.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(0, watcher.Failures);
    }

    [Fact]
    public async Task A_revocation_made_by_another_server_reaches_the_deny_list_through_the_watcher_alone()
    {
        await _svc.EnsureCurrentAsync(-1, Ct);
        using var watcher = Watcher();
        await watcher.StartAsync(Ct);
        await watcher.Running.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        try
        {
            var other = new RevocationService(_h.Store, _ca, _h.Time, NullLogger<RevocationService>.Instance);
            var serial = await IssueAndRevokeAsync(other);
            // Nothing here asks the store: only the watcher, woken by the store revision, can make this true.
            await Deadline.UntilAsync(() => Task.FromResult(_svc.IsSerialRevoked(serial)), "the deny list to learn the revocation");
        }
        finally
        {
            await watcher.StopAsync(Ct);
        }
        await watcher.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    private static class Deadline
    {
        public static async Task UntilAsync(Func<Task<bool>> condition, string what)
        {
            var limit = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (!await condition())
            {
                if (DateTime.UtcNow > limit)
                {
                    throw new TimeoutException($"timed out waiting for {what}");
                }
                await Task.Delay(10, Ct);
            }
        }
    }
}
