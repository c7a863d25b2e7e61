using System.Security.Cryptography.X509Certificates;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Ca;

/// <summary>
/// Rotation as SPIRE's CA manager does it, on a fake clock: prepare (and publish) the next authority at half the active one's
/// lifetime, let it sign from 1/6 remaining, keep expired authorities in the bundle until the prune margin has passed.
/// </summary>
public sealed class CaRotationTests
{
    private static readonly TimeSpan T = TimeSpan.FromHours(6);
    private static readonly TimeSpan Margin = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);
    private static readonly DateTimeOffset Start = CaHarness.Start;

    private static CaOptions X509Rotating => new() { CaTtl = T, JwtKeyTtl = TimeSpan.FromDays(60), PruneMargin = Margin };

    private static CaOptions JwtRotating => new() { CaTtl = TimeSpan.FromDays(60), JwtKeyTtl = T, PruneMargin = Margin };

    private static async Task PassAt(CaHarness h, WritCa ca, TimeSpan sinceStart)
    {
        h.Time.SetUtcNow(Start + sinceStart);
        await ca.RotateAsync(Ct);
    }

    private static X509Certificate2 SignerOf(WritCa ca)
    {
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5));
        return IssuerIn(ca.Bundle, chain[0]) ?? throw new InvalidOperationException("leaf issuer is not in the bundle");
    }

    private static DateTimeOffset NotAfter(X509Certificate2 c) => new(c.NotAfter.ToUniversalTime());

    private static DateTimeOffset NotBefore(X509Certificate2 c) => new(c.NotBefore.ToUniversalTime());

    [Fact]
    public async Task X509_authority_is_prepared_and_published_at_half_life_and_signs_from_one_sixth_remaining()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(X509Rotating, new MemoryKeyManager());

        var a = Assert.Single(ca.Bundle.X509Authorities);
        Assert.Equal(1, ca.BundleSequence);
        Assert.Single(h.Published);
        Assert.Equal(a.Thumbprint, SignerOf(ca).Thumbprint);

        await PassAt(h, ca, (T / 2) - Minute);
        Assert.Single(ca.Bundle.X509Authorities);
        Assert.Equal(1, ca.BundleSequence);
        Assert.Single(h.Published);

        // Half-life: the next authority is in the bundle, but the old one still signs.
        await PassAt(h, ca, T / 2);
        Assert.Equal(2, ca.Bundle.X509Authorities.Count);
        var b = ca.Bundle.X509Authorities.Single(c => c.Thumbprint != a.Thumbprint);
        Assert.Equal(2, ca.BundleSequence);
        Assert.Equal(2, h.Published.Count);
        Assert.Contains(b.Thumbprint, Thumbprints(h.Published[^1]));
        Assert.Equal(a.Thumbprint, SignerOf(ca).Thumbprint);

        await PassAt(h, ca, (T * 5 / 6) - Minute);
        Assert.Equal(a.Thumbprint, SignerOf(ca).Thumbprint);
        var lastLeafOfA = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(2));

        // 1/6 of A's lifetime remains: B signs. The bundle does not change, so neither does the sequence.
        await PassAt(h, ca, T * 5 / 6);
        Assert.Equal(b.Thumbprint, SignerOf(ca).Thumbprint);
        Assert.Equal(2, ca.BundleSequence);
        Assert.Equal(2, h.Published.Count);

        // A's last leaf still validates right up to its (capped) expiry: A stays in the bundle.
        await PassAt(h, ca, T - Minute);
        var stillValid = X509SvidValidator.Validate(lastLeafOfA, ca.Bundle, h.Time.GetUtcNow());
        Assert.True(stillValid.IsValid, stillValid.Error);
        Assert.Equal(NotAfter(a), NotAfter(lastLeafOfA[0]));

        // B's half-life (B was made at T/2): C is prepared and published. A is expired but kept for the margin.
        await PassAt(h, ca, T);
        Assert.Equal(3, ca.Bundle.X509Authorities.Count);
        Assert.Equal(3, ca.BundleSequence);
        await PassAt(h, ca, T + Margin);
        Assert.Contains(a.Thumbprint, Thumbprints(ca.Bundle));
        Assert.Equal(3, ca.BundleSequence);

        await PassAt(h, ca, T + Margin + Minute);
        Assert.DoesNotContain(a.Thumbprint, Thumbprints(ca.Bundle));
        Assert.Equal(2, ca.Bundle.X509Authorities.Count);
        Assert.Equal(4, ca.BundleSequence);
        Assert.Equal([1L, 2L, 3L, 4L], h.Published.Select(p => p.Sequence ?? 0));
        Assert.Equal(Thumbprints(ca.Bundle), Thumbprints(h.Published[^1]));

        var stored = await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct);
        Assert.NotNull(stored);
        Assert.Equal(4, stored.Sequence);
    }

    [Fact]
    public async Task Jwt_key_is_published_before_it_signs_and_old_tokens_validate_until_it_is_pruned()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(JwtRotating, new MemoryKeyManager());
        string[] aud = ["spiffe://example.org/db"];

        var k1 = Assert.Single(Kids(ca.Bundle));
        Assert.Equal(k1, KidOf(ca.MintJwtSvid(CaHarness.Workload, aud, Minute).Token));

        await PassAt(h, ca, T / 2);
        var k2 = Assert.Single(Kids(ca.Bundle).Except([k1]));
        Assert.Equal(2, ca.BundleSequence);
        Assert.Contains(k2, Kids(h.Published[^1]));
        Assert.Equal(k1, KidOf(ca.MintJwtSvid(CaHarness.Workload, aud, Minute).Token));

        await PassAt(h, ca, (T * 5 / 6) - Minute);
        var (oldToken, oldExpiry) = ca.MintJwtSvid(CaHarness.Workload, aud, TimeSpan.FromHours(10));
        Assert.Equal(k1, KidOf(oldToken));
        Assert.Equal(Start + T, oldExpiry);   // capped at k1's lifetime

        await PassAt(h, ca, T * 5 / 6);
        Assert.Equal(k2, KidOf(ca.MintJwtSvid(CaHarness.Workload, aud, Minute).Token));
        Assert.Equal(2, ca.BundleSequence);

        await PassAt(h, ca, T - Minute);
        var v = JwtSvidValidator.Validate(oldToken, ca.Bundle, aud, h.Time.GetUtcNow());
        Assert.True(v.IsValid, v.Error);

        await PassAt(h, ca, T + Margin);
        Assert.Contains(k1, Kids(ca.Bundle));
        await PassAt(h, ca, T + Margin + Minute);
        Assert.DoesNotContain(k1, Kids(ca.Bundle));
        Assert.Contains(k2, Kids(ca.Bundle));

        // Pruned: even at a time the token was live, the bundle no longer vouches for it.
        var after = JwtSvidValidator.Validate(oldToken, ca.Bundle, aud, Start + T - Minute);
        Assert.False(after.IsValid);
        Assert.Equal(Kids(ca.Bundle), Kids(h.Published[^1]));
        Assert.Equal(h.Published.Count, ca.BundleSequence);
    }

    [Fact]
    public async Task Long_lived_authorities_prepare_30_days_and_switch_7_days_before_expiry_as_spire_caps_it()
    {
        var year = TimeSpan.FromDays(365);
        var day = TimeSpan.FromDays(1);
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = year, JwtKeyTtl = year }, new MemoryKeyManager());
        var a = SignerOf(ca);
        var k1 = KidOf(ca.MintJwtSvid(CaHarness.Workload, ["a"], Minute).Token);

        await PassAt(h, ca, year / 2);   // half-life is not the trigger for long lifetimes
        Assert.Single(ca.Bundle.X509Authorities);
        await PassAt(h, ca, year - TimeSpan.FromDays(30) - day);
        Assert.Single(ca.Bundle.X509Authorities);
        Assert.Single(ca.Bundle.JwtAuthorities);
        await PassAt(h, ca, year - TimeSpan.FromDays(30) + Minute);
        Assert.Equal(2, ca.Bundle.X509Authorities.Count);
        Assert.Equal(2, ca.Bundle.JwtAuthorities.Count);

        await PassAt(h, ca, year - TimeSpan.FromDays(7) - day);   // 1/6 of a year (~61 days) is long past
        Assert.Equal(a.Thumbprint, SignerOf(ca).Thumbprint);
        Assert.Equal(k1, KidOf(ca.MintJwtSvid(CaHarness.Workload, ["a"], Minute).Token));
        await PassAt(h, ca, year - TimeSpan.FromDays(7) + Minute);
        Assert.NotEqual(a.Thumbprint, SignerOf(ca).Thumbprint);
        Assert.NotEqual(k1, KidOf(ca.MintJwtSvid(CaHarness.Workload, ["a"], Minute).Token));
    }

    [Fact]
    public async Task Leaves_never_outlive_their_authority()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = T, JwtKeyTtl = TimeSpan.FromHours(2) }, new MemoryKeyManager());
        await PassAt(h, ca, TimeSpan.FromHours(1));

        var capped = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromDays(7));
        var authority = IssuerIn(ca.Bundle, capped[0]);
        Assert.NotNull(authority);
        Assert.Equal(NotAfter(authority), NotAfter(capped[0]));
        Assert.Equal(ca.ActiveX509NotAfter, NotAfter(capped[0]));

        var shortLeaf = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(30));
        Assert.Equal(h.Time.GetUtcNow() + TimeSpan.FromMinutes(30), NotAfter(shortLeaf[0]));

        var (token, exp) = ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromDays(7));
        Assert.Equal(Start + TimeSpan.FromHours(2), exp);
        Assert.True(JwtSvidValidator.TryReadUnverified(token, out var svid, out var error), error);
        Assert.Equal(exp, svid.ExpiresAt);

        var (_, shortExp) = ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5));
        Assert.Equal(h.Time.GetUtcNow() + TimeSpan.FromMinutes(5), shortExp);
    }

    [Fact]
    public async Task Jwt_expiry_returned_is_exactly_the_tokens_exp_claim()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions(), new MemoryKeyManager());
        h.Time.Advance(TimeSpan.FromMilliseconds(700));
        var (token, exp) = ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5));
        Assert.True(JwtSvidValidator.TryReadUnverified(token, out var svid, out var error), error);
        Assert.Equal(svid.ExpiresAt, exp);
        Assert.InRange(exp - h.Time.GetUtcNow(), TimeSpan.FromMinutes(5) - TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5));
    }

    [Fact]
    public async Task When_rotation_stopped_and_the_authorities_expired_signing_fails_in_one_line_instead_of_issuing_dead_credentials()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(1), JwtKeyTtl = TimeSpan.FromHours(1) }, new MemoryKeyManager());
        h.Time.Advance(TimeSpan.FromHours(2));   // no RotateAsync: the store was down, say

        var x = Assert.Throws<CaException>(() => ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5)));
        var j = Assert.Throws<CaException>(() => ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5)));
        foreach (var e in new[] { x, j })
        {
            Assert.Equal(CaException.AuthorityExpired, e.Code);
            OneLine(e);
            Assert.Contains("1401", e.Message, StringComparison.Ordinal);
        }

        // One pass later everything works again.
        await ca.RotateAsync(Ct);
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5));
        Assert.True(X509SvidValidator.Validate(chain, ca.Bundle, h.Time.GetUtcNow()).IsValid);
        var (token, _) = ca.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5));
        Assert.True(JwtSvidValidator.Validate(token, ca.Bundle, ["a"], h.Time.GetUtcNow()).IsValid);
    }

    [Fact]
    public async Task After_a_long_pause_a_new_authority_is_published_one_pass_before_it_signs()
    {
        // The rotation loop did not run between T/2 and 5T/6 (server paused, store down): nothing was prepared.
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = T, JwtKeyTtl = T, PruneMargin = Margin }, new MemoryKeyManager());
        var a = SignerOf(ca);
        var k1 = KidOf(ca.MintJwtSvid(CaHarness.Workload, ["a"], Minute).Token);

        await PassAt(h, ca, (T * 5 / 6) + Minute);
        var published = h.Published[^1];
        Assert.Equal(2, published.X509Authorities.Count);
        Assert.Equal(2, published.JwtAuthorities.Count);
        // Nobody has had the new bundle yet, so the old authority and key (still valid) keep signing for this pass.
        Assert.Equal(a.Thumbprint, SignerOf(ca).Thumbprint);
        Assert.Equal(k1, KidOf(ca.MintJwtSvid(CaHarness.Workload, ["a"], Minute).Token));

        await PassAt(h, ca, (T * 5 / 6) + (2 * Minute));
        var signer = SignerOf(ca);
        Assert.NotEqual(a.Thumbprint, signer.Thumbprint);
        Assert.Contains(signer.Thumbprint, Thumbprints(published));
        var kid = KidOf(ca.MintJwtSvid(CaHarness.Workload, ["a"], Minute).Token);
        Assert.NotEqual(k1, kid);
        Assert.Contains(kid, Kids(published));
    }

    [Fact]
    public async Task After_the_active_authority_expired_a_fresh_one_signs_at_once_and_the_expired_ones_are_pruned()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = T, JwtKeyTtl = T, PruneMargin = Margin }, new MemoryKeyManager());
        var a = SignerOf(ca);
        var k1 = Assert.Single(Kids(ca.Bundle));

        await PassAt(h, ca, (2 * T) + Margin + Minute);
        var signer = SignerOf(ca);
        Assert.NotEqual(a.Thumbprint, signer.Thumbprint);
        Assert.True(NotAfter(signer) > h.Time.GetUtcNow());
        Assert.Equal([signer.Thumbprint], Thumbprints(ca.Bundle));
        Assert.DoesNotContain(k1, Kids(ca.Bundle));
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.True(X509SvidValidator.Validate(chain, ca.Bundle, h.Time.GetUtcNow()).IsValid);
        var (token, _) = ca.MintJwtSvid(CaHarness.Workload, ["a"], Minute);
        Assert.True(JwtSvidValidator.Validate(token, ca.Bundle, ["a"], h.Time.GetUtcNow()).IsValid);
        Assert.Equal(2, ca.BundleSequence);
    }

    [Fact]
    public async Task A_pass_with_nothing_to_do_changes_nothing()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(X509Rotating, new MemoryKeyManager());
        var before = await JournalTextAsync(h.Store);
        var bundle = ca.Bundle;
        for (var i = 1; i <= 5; i++)
        {
            await PassAt(h, ca, i * Minute);
        }
        Assert.Same(bundle, ca.Bundle);
        Assert.Equal(1, ca.BundleSequence);
        Assert.Single(h.Published);
        Assert.Equal(before, await JournalTextAsync(h.Store));
    }

    [Fact]
    public async Task Three_lifetimes_tick_by_tick_keep_every_rotation_invariant()
    {
        var caTtl = TimeSpan.FromHours(6);
        var jwtTtl = TimeSpan.FromHours(4);
        var tick = TimeSpan.FromMinutes(2);
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = caTtl, JwtKeyTtl = jwtTtl, PruneMargin = Margin }, new MemoryKeyManager());
        string[] aud = ["spiffe://example.org/db"];

        var firstPublished = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var removedAt = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var firstSigned = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var lastSigned = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var authorities = new Dictionary<string, X509Certificate2>(StringComparer.Ordinal);
        var lastLeaf = new Dictionary<string, IReadOnlyList<X509Certificate2>>(StringComparer.Ordinal);
        var lastToken = new Dictionary<string, (string Token, DateTimeOffset Exp)>(StringComparer.Ordinal);
        string? previousContent = null;
        var previousSequence = 0L;
        var previousEvents = 0;
        var end = Start + (3 * caTtl);

        for (var now = Start; now <= end; now += tick)
        {
            if (now != Start)
            {
                h.Time.SetUtcNow(now);
                await ca.RotateAsync(Ct);
            }
            var bundle = ca.Bundle;
            var names = Thumbprints(bundle).Select(t => "x509:" + t).Concat(Kids(bundle).Select(k => "jwt:" + k)).ToHashSet(StringComparer.Ordinal);
            var content = string.Join(",", names.Order(StringComparer.Ordinal));

            // The sequence moves by one on every published change, and never otherwise; each change raises one event.
            if (previousContent is not null)
            {
                var changed = content != previousContent;
                Assert.Equal(previousSequence + (changed ? 1 : 0), ca.BundleSequence);
                Assert.Equal(previousEvents + (changed ? 1 : 0), h.Published.Count);
            }
            Assert.Equal(ca.BundleSequence, bundle.Sequence);
            Assert.Same(bundle, h.Published[^1]);
            Assert.Equal(ca.BundleSequence, (await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct))!.Sequence);
            (previousContent, previousSequence, previousEvents) = (content, ca.BundleSequence, h.Published.Count);

            foreach (var c in bundle.X509Authorities)
            {
                authorities.TryAdd(c.Thumbprint, c);
            }
            foreach (var n in names)
            {
                firstPublished.TryAdd(n, now);
                Assert.False(removedAt.ContainsKey(n), $"{n} came back into the bundle after it was pruned");
            }
            foreach (var n in firstPublished.Keys.Where(n => !names.Contains(n)))
            {
                removedAt.TryAdd(n, now);
            }

            // X.509: the signer was published before it signs (except the very first authority), leaves are capped and valid.
            var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(100));
            var signer = IssuerIn(bundle, chain[0]);
            Assert.NotNull(signer);
            var signerName = "x509:" + signer.Thumbprint;
            Assert.True(now == Start || firstPublished[signerName] < now, $"authority signed at {now:O} in the pass that published it");
            Assert.True(NotAfter(chain[0]) <= NotAfter(signer));
            Assert.True(X509SvidValidator.Validate(chain, bundle, now).IsValid);
            firstSigned.TryAdd(signerName, now);
            lastSigned[signerName] = now;
            lastLeaf[signerName] = chain;

            // JWT: same, and every earlier token stays valid until it expires.
            var (token, exp) = ca.MintJwtSvid(CaHarness.Workload, aud, TimeSpan.FromHours(100));
            var kid = "jwt:" + KidOf(token);
            Assert.Contains(kid, names);
            Assert.True(now == Start || firstPublished[kid] < now, $"JWT key signed at {now:O} in the pass that published it");
            firstSigned.TryAdd(kid, now);
            lastSigned[kid] = now;
            lastToken[kid] = (token, exp);

            foreach (var (name, leafChain) in lastLeaf)
            {
                if (NotAfter(leafChain[0]) > now)
                {
                    var r = X509SvidValidator.Validate(leafChain, bundle, now);
                    Assert.True(r.IsValid, $"leaf of {name} stopped validating at {now:O} before its expiry: {r.Error}");
                }
            }
            foreach (var (name, (t, e)) in lastToken)
            {
                if (e > now)
                {
                    var r = JwtSvidValidator.Validate(t, bundle, aud, now);
                    Assert.True(r.IsValid, $"token of {name} stopped validating at {now:O} before its expiry: {r.Error}");
                }
            }
        }

        // The X.509 schedule: each authority after the first was published at its predecessor's half-life, took over at 1/6
        // remaining (its predecessor signed up to the pass before), and each was pruned one margin after its expiry.
        var x509 = authorities.Values.OrderBy(NotBefore).ToList();
        Assert.True(x509.Count >= 5, $"only {x509.Count} X.509 authorities in three lifetimes");
        for (var i = 1; i < x509.Count; i++)
        {
            var prev = x509[i - 1];
            var cur = "x509:" + x509[i].Thumbprint;
            var prevName = "x509:" + prev.Thumbprint;
            var life = NotAfter(prev) - NotBefore(prev);
            Assert.InRange(firstPublished[cur] - (NotBefore(prev) + (life / 2)), TimeSpan.Zero, tick);
            if (firstSigned.TryGetValue(cur, out var took))
            {
                Assert.InRange(NotAfter(prev) - took, (life / 6) - tick, life / 6);
                Assert.Equal(lastSigned[prevName] + tick, took);
            }
        }
        foreach (var c in x509)
        {
            var name = "x509:" + c.Thumbprint;
            if (NotAfter(c) + Margin + tick <= end)
            {
                Assert.True(removedAt.TryGetValue(name, out var gone), $"{name} expired at {NotAfter(c):O} but was never pruned");
                Assert.InRange(gone - NotAfter(c), Margin + TimeSpan.FromTicks(1), Margin + tick);
            }
        }

        // The JWT schedule, with key lifetimes taken from first publication (keys are made in the pass that publishes them).
        var jwt = firstPublished.Where(p => p.Key.StartsWith("jwt:", StringComparison.Ordinal)).OrderBy(p => p.Value).ToList();
        Assert.True(jwt.Count >= 7, $"only {jwt.Count} JWT keys in {3 * caTtl}");
        for (var i = 1; i < jwt.Count; i++)
        {
            Assert.InRange(jwt[i].Value - (jwt[i - 1].Value + (jwtTtl / 2)), TimeSpan.Zero, tick);
            if (firstSigned.TryGetValue(jwt[i].Key, out var took))
            {
                Assert.InRange(jwt[i - 1].Value + jwtTtl - took, (jwtTtl / 6) - tick, jwtTtl / 6);
                Assert.Equal(lastSigned[jwt[i - 1].Key] + tick, took);
            }
        }
        foreach (var (name, born) in jwt)
        {
            if (born + jwtTtl + Margin + tick <= end)
            {
                Assert.True(removedAt.TryGetValue(name, out var gone), $"{name} was never pruned");
                Assert.InRange(gone - (born + jwtTtl), Margin + TimeSpan.FromTicks(1), Margin + tick);
            }
        }

        // Every CA log line carries an event id from the CA's range, and each step of the life cycle was logged.
        Assert.NotEmpty(h.Log.Entries);
        Assert.All(h.Log.Entries, e => Assert.InRange(e.Id.Id, 1400, 1499));
        Assert.All(h.Log.Entries, e => Assert.False(string.IsNullOrEmpty(e.Id.Name)));
        var ids = h.Log.Entries.Select(e => e.Id.Id).ToHashSet();
        Assert.Superset(new HashSet<int> { 1402, 1403, 1404, 1405, 1406, 1407, 1408, 1409 }, ids);
    }
}
