using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Ca;

/// <summary>Misconfiguration, damaged state and concurrency: clear failures, nothing changed, no wrong credential.</summary>
public sealed class CaRobustnessTests
{
    public static TheoryData<string> BadOptions => ["ca ttl zero", "ca ttl 30s", "jwt ttl negative", "prune margin negative", "refresh hint zero"];

    [Theory]
    [MemberData(nameof(BadOptions))]
    public async Task Nonsense_options_are_refused_at_construction(string what)
    {
        await using var h = await CaHarness.CreateAsync();
        var options = what switch
        {
            "ca ttl zero" => new CaOptions { CaTtl = TimeSpan.Zero },
            "ca ttl 30s" => new CaOptions { CaTtl = TimeSpan.FromSeconds(30) },
            "jwt ttl negative" => new CaOptions { JwtKeyTtl = TimeSpan.FromHours(-1) },
            "prune margin negative" => new CaOptions { PruneMargin = TimeSpan.FromMinutes(-1) },
            _ => new CaOptions { RefreshHint = TimeSpan.Zero },
        };
        var e = Assert.Throws<ArgumentException>(() => new WritCa(CaHarness.Td, options, new MemoryKeyManager(), h.Store, h.Time, NullLogger<WritCa>.Instance));
        OneLine(e);
        Assert.Null(await h.Store.CaJournal.GetAsync("ca", Ct));
    }

    public static TheoryData<string> CorruptJournals =>
    [
        "not json",
        "null",
        "{}",
        "{\"x509\":[{\"keyId\":\"k\",\"chainDerBase64\":[],\"status\":\"Active\",\"notBefore\":\"2026-01-01T00:00:00Z\",\"notAfter\":\"2027-01-01T00:00:00Z\"}],\"jwt\":[]}",
        "{\"x509\":[{\"keyId\":\"k\",\"chainDerBase64\":[\"AAAA\"],\"status\":\"Active\",\"notBefore\":\"2026-01-01T00:00:00Z\",\"notAfter\":\"2027-01-01T00:00:00Z\"}],\"jwt\":[]}",
        "{\"x509\":[],\"jwt\":[{\"keyId\":\"k\",\"kid\":\"x\",\"publicKeySpkiBase64\":\"%%\",\"status\":\"Active\",\"notBefore\":\"2026-01-01T00:00:00Z\",\"notAfter\":\"2027-01-01T00:00:00Z\"}]}",
        "{\"x509\":[],\"jwt\":[],\"extra\":1,",
    ];

    [Theory]
    [MemberData(nameof(CorruptJournals))]
    public async Task A_corrupt_journal_stops_the_start_in_one_line_and_is_left_alone(string json)
    {
        await using var h = await CaHarness.CreateAsync();
        var data = Encoding.UTF8.GetBytes(json);
        await h.Store.CaJournal.PutAsync(new CaJournal("ca", data, h.Time.GetUtcNow()), Ct);
        var keys = new DiskKeyManager(h.KeyPath);

        var e = await Assert.ThrowsAsync<CaException>(() => h.NewCa(new CaOptions(), keys).InitializeAsync(Ct));

        Assert.Equal(CaException.JournalCorrupt, e.Code);
        OneLine(e);
        Assert.Contains("journal", e.Message, StringComparison.Ordinal);
        Assert.Equal(data, (await h.Store.CaJournal.GetAsync("ca", Ct))!.Data);
        Assert.Null(await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct));
        Assert.False(File.Exists(h.KeyPath));
    }

    [Theory]
    [InlineData("journal")]
    [InlineData("bundle")]
    public async Task A_store_outage_while_preparing_never_lets_an_unpublished_authority_sign(string failing)
    {
        var ttl = TimeSpan.FromHours(6);
        await using var h = await CaHarness.CreateAsync();
        var store = new FlakyStore(h.Store);
        var keys = new DiskKeyManager(h.KeyPath);
        var ca = new WritCa(CaHarness.Td, new CaOptions { CaTtl = ttl, JwtKeyTtl = ttl }, keys, store, h.Time, h.Log);
        ca.BundleChanged += h.Published.Add;
        await ca.InitializeAsync(Ct);
        var first = Assert.Single(ca.Bundle.X509Authorities);

        // The pass that prepares the next authority cannot write.
        h.Time.SetUtcNow(CaHarness.Start + (ttl / 2));
        store.FailJournalWrites = failing == "journal";
        store.FailBundleWrites = failing == "bundle";
        await Assert.ThrowsAsync<StoreUnavailableException>(() => ca.RotateAsync(Ct));
        store.FailJournalWrites = store.FailBundleWrites = false;
        Assert.Equal(1, ca.BundleSequence);
        Assert.Equal([first.Thumbprint], Thumbprints(ca.Bundle));

        // The store is back: the next pass publishes the next authority, long before it signs.
        h.Time.SetUtcNow(CaHarness.Start + (ttl / 2) + TimeSpan.FromMinutes(1));
        await ca.RotateAsync(Ct);
        Assert.Equal(2, ca.Bundle.X509Authorities.Count);
        Assert.Equal(2, ca.BundleSequence);
        var next = ca.Bundle.X509Authorities.Single(c => c.Thumbprint != first.Thumbprint);
        foreach (var at in new[] { ttl * 5 / 6, ttl * 5 / 6 + TimeSpan.FromMinutes(1) })
        {
            h.Time.SetUtcNow(CaHarness.Start + at);
            await ca.RotateAsync(Ct);
        }
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5));
        var signer = IssuerIn(ca.Bundle, chain[0]);
        Assert.NotNull(signer);
        Assert.Equal(next.Thumbprint, signer.Thumbprint);
        var stored = await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct);
        Assert.Contains(signer.Thumbprint, Thumbprints(Writ.Spiffe.Bundles.TrustBundle.ParseSpiffeJson(CaHarness.Td, stored!.SpiffeBundleJson)));
        Assert.True(X509SvidValidator.Validate(chain, ca.Bundle, h.Time.GetUtcNow()).IsValid);
        Assert.Equal(2, ca.BundleSequence);

        // The failed attempt's key did not stay behind in the key file: every key there is named by the journal.
        var journal = await JournalTextAsync(h.Store);
        var fileIds = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(await File.ReadAllTextAsync(h.KeyPath, Ct))!.Keys;
        Assert.All(fileIds, id => Assert.Contains(id, journal, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Signing_while_rotation_runs_never_yields_a_credential_the_current_bundle_rejects()
    {
        var ttl = TimeSpan.FromHours(6);
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = ttl, JwtKeyTtl = ttl, PruneMargin = TimeSpan.FromMinutes(10) }, new MemoryKeyManager());
        using var stop = new CancellationTokenSource();
        // The clock only moves between signer iterations, so "now" means one instant per iteration; RotateAsync itself
        // runs concurrently with the signers.
        using var clock = new ReaderWriterLockSlim();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var signed = 0;

        async Task SignLoop()
        {
            await Task.Yield();
            while (!stop.IsCancellationRequested)
            {
                clock.EnterReadLock();
                try
                {
                    SignOnce();
                }
                finally
                {
                    clock.ExitReadLock();
                }
            }
        }

        void SignOnce()
        {
            var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(30));
            var (token, _) = ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5));
            // Read the bundle after signing: it only loses an authority long after that authority stopped signing.
            var bundle = ca.Bundle;
            var now = h.Time.GetUtcNow();
            var x = X509SvidValidator.Validate(chain, bundle, now);
            var j = JwtSvidValidator.Validate(token, bundle, ["a"], now);
            if (!x.IsValid || !j.IsValid)
            {
                failures.Enqueue($"{now:O}: {x.Error} {j.Error}");
            }
            Interlocked.Increment(ref signed);
        }

        var signers = Enumerable.Range(0, 2).Select(_ => Task.Run(SignLoop, Ct)).ToList();
        for (var i = 0; i < 300; i++)
        {
            clock.EnterWriteLock();
            h.Time.Advance(TimeSpan.FromMinutes(5));
            clock.ExitWriteLock();
            await ca.RotateAsync(Ct);
        }
        await stop.CancelAsync();
        await Task.WhenAll(signers);

        Assert.Empty(failures);
        Assert.True(Volatile.Read(ref signed) > 0);
        Assert.True(ca.BundleSequence > 5, $"only {ca.BundleSequence} bundle changes in 25 hours");
    }
}
