using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Ca;

/// <summary>What a restart keeps: everything with the disk key manager, nothing but the bundle sequence with the memory one.</summary>
public sealed class CaRestartTests
{
    private static readonly TimeSpan T = TimeSpan.FromHours(6);

    private static CaOptions Options => new() { CaTtl = T, JwtKeyTtl = T, PruneMargin = TimeSpan.FromMinutes(10) };

    [Fact]
    public async Task Disk_keys_survive_a_restart_with_the_same_authorities_bundle_and_sequence()
    {
        await using var h = await CaHarness.CreateAsync();
        var first = await h.StartCaAsync(Options, new DiskKeyManager(h.KeyPath));
        h.Time.Advance((T / 2) + TimeSpan.FromMinutes(1));
        await first.RotateAsync(Ct);   // a prepared authority and key exist too
        var bundle = first.Bundle;
        Assert.Equal(2, bundle.X509Authorities.Count);
        Assert.Equal(2, bundle.JwtAuthorities.Count);
        var sequence = first.BundleSequence;
        var journal = await JournalTextAsync(h.Store);
        var oldLeaf = first.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        var (oldToken, _) = first.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5));
        var events = h.Published.Count;

        var second = await h.StartCaAsync(Options, new DiskKeyManager(h.KeyPath));

        Assert.Equal(sequence, second.BundleSequence);
        Assert.Equal(sequence, second.Bundle.Sequence);
        Assert.Equal(Thumbprints(bundle), Thumbprints(second.Bundle));
        Assert.Equal(Kids(bundle), Kids(second.Bundle));
        Assert.Equal(events, h.Published.Count);
        Assert.Equal(journal, await JournalTextAsync(h.Store));
        // Same signing keys: what the old instance issued validates with the new bundle and vice versa.
        var now = h.Time.GetUtcNow();
        Assert.True(X509SvidValidator.Validate(oldLeaf, second.Bundle, now).IsValid);
        Assert.True(JwtSvidValidator.Validate(oldToken, second.Bundle, ["a"], now).IsValid);
        var newLeaf = second.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.Equal(oldLeaf[0].Issuer, newLeaf[0].Issuer);
        Assert.True(X509SvidValidator.Validate(newLeaf, bundle, now).IsValid);
        var (newToken, _) = second.MintJwtSvid(CaHarness.Workload, ["a"], TimeSpan.FromMinutes(5));
        Assert.Equal(KidOf(oldToken), KidOf(newToken));

        // And rotation carries on from where the first instance was: the prepared authority takes over at 5/6.
        h.Time.Advance(T / 3);
        await second.RotateAsync(Ct);
        var signer = IssuerIn(second.Bundle, second.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0]);
        Assert.NotNull(signer);
        Assert.NotEqual(oldLeaf[0].Issuer, signer.Subject);
        Assert.Contains(signer.Thumbprint, Thumbprints(bundle));
        Assert.Equal(sequence, second.BundleSequence);
    }

    [Fact]
    public async Task Memory_keys_are_gone_after_a_restart_so_a_fresh_authority_is_published_with_a_higher_sequence()
    {
        await using var h = await CaHarness.CreateAsync();
        var first = await h.StartCaAsync(Options, new MemoryKeyManager());
        h.Time.Advance((T / 2) + TimeSpan.FromMinutes(1));
        await first.RotateAsync(Ct);
        var old = first.Bundle;
        var sequence = first.BundleSequence;
        var events = h.Published.Count;
        var oldKeyIds = System.Text.RegularExpressions.Regex.Matches(await JournalTextAsync(h.Store), "\"keyId\":\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(4, oldKeyIds.Count);

        var second = await h.StartCaAsync(Options, new MemoryKeyManager());

        Assert.Equal(sequence + 1, second.BundleSequence);
        Assert.Equal(events + 1, h.Published.Count);
        Assert.Same(second.Bundle, h.Published[^1]);
        Assert.Single(second.Bundle.X509Authorities);
        Assert.Single(second.Bundle.JwtAuthorities);
        Assert.Empty(Thumbprints(second.Bundle).Intersect(Thumbprints(old)));
        Assert.Empty(Kids(second.Bundle).Intersect(Kids(old)));
        var journal = await JournalTextAsync(h.Store);
        Assert.All(oldKeyIds, id => Assert.DoesNotContain(id, journal, StringComparison.Ordinal));
        var stored = await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct);
        Assert.Equal(sequence + 1, stored!.Sequence);

        var now = h.Time.GetUtcNow();
        var leaf = second.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.True(X509SvidValidator.Validate(leaf, second.Bundle, now).IsValid);
        Assert.False(X509SvidValidator.Validate(leaf, old, now).IsValid);
        Assert.Contains(h.Log.Entries, e => e.Id.Id == 1410);
    }

    [Fact]
    public async Task A_lost_key_of_an_old_authority_drops_it_from_the_bundle_at_restart()
    {
        await using var h = await CaHarness.CreateAsync();
        var keys = new DiskKeyManager(h.KeyPath);
        var first = await h.StartCaAsync(Options, keys);
        var old = Assert.Single(first.Bundle.X509Authorities);
        var oldKeyId = System.Text.RegularExpressions.Regex.Match(await JournalTextAsync(h.Store), "\"keyId\":\"(x509-ca-[^\"]+)\"").Groups[1].Value;
        h.Time.Advance((T / 2) + TimeSpan.FromMinutes(1));
        await first.RotateAsync(Ct);
        h.Time.Advance(T / 3);
        await first.RotateAsync(Ct);   // the second authority signs; the first is old but still published
        var current = first.Bundle.X509Authorities.Single(c => c.Thumbprint != old.Thumbprint);
        Assert.Equal(2, first.Bundle.X509Authorities.Count);
        var sequence = first.BundleSequence;
        await keys.DeleteAsync(oldKeyId, Ct);   // e.g. an operator restored an older keys.json

        var second = await h.StartCaAsync(Options, new DiskKeyManager(h.KeyPath));

        // Nothing else is due in this pass, yet the bundle must stop naming the authority the journal dropped.
        Assert.Equal([current.Thumbprint], Thumbprints(second.Bundle));
        Assert.Equal(sequence + 1, second.BundleSequence);
        Assert.Equal(Thumbprints(second.Bundle), Thumbprints(h.Published[^1]));
        Assert.DoesNotContain(oldKeyId, await JournalTextAsync(h.Store), StringComparison.Ordinal);
        var stored = await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct);
        Assert.DoesNotContain(old.Thumbprint, Thumbprints(Writ.Spiffe.Bundles.TrustBundle.ParseSpiffeJson(CaHarness.Td, stored!.SpiffeBundleJson)));
    }

    [Fact]
    public async Task Whoever_can_write_the_store_cannot_add_a_trust_anchor_or_jwt_key()
    {
        await using var h = await CaHarness.CreateAsync();
        var first = await h.StartCaAsync(Options, new DiskKeyManager(h.KeyPath));
        var legit = first.Bundle;
        var sequence = first.BundleSequence;

        // The attacker writes journal records naming keys we hold, with their own certificate and JWT public key.
        using var evilKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var now = h.Time.GetUtcNow();
        var evilCa = X509Authorities.CreateSelfSignedCa(CaHarness.Td, evilKey, now - TimeSpan.FromMinutes(1), now + TimeSpan.FromDays(1));
        var doc = System.Text.Json.Nodes.JsonNode.Parse(await JournalTextAsync(h.Store))!;
        var x509Key = doc["x509"]![0]!["keyId"]!.GetValue<string>();
        var jwtKey = doc["jwt"]![0]!["keyId"]!.GetValue<string>();
        doc["x509"]!.AsArray().Add(new System.Text.Json.Nodes.JsonObject
        {
            ["keyId"] = x509Key,
            ["chainDerBase64"] = new System.Text.Json.Nodes.JsonArray(Convert.ToBase64String(evilCa.RawData)),
            ["status"] = "Old",
            ["notBefore"] = now.AddMinutes(-1).ToString("O"),
            ["notAfter"] = now.AddDays(1).ToString("O"),
        });
        doc["jwt"]!.AsArray().Add(new System.Text.Json.Nodes.JsonObject
        {
            ["keyId"] = jwtKey,
            ["kid"] = "evil",
            ["publicKeySpkiBase64"] = Convert.ToBase64String(evilKey.ExportSubjectPublicKeyInfo()),
            ["status"] = "Old",
            ["notBefore"] = now.ToString("O"),
            ["notAfter"] = now.AddDays(1).ToString("O"),
        });
        await h.Store.CaJournal.PutAsync(new Writ.Server.Storage.CaJournal("ca", System.Text.Encoding.UTF8.GetBytes(doc.ToJsonString()), now), Ct);

        var second = await h.StartCaAsync(Options, new DiskKeyManager(h.KeyPath));

        Assert.Equal(Thumbprints(legit), Thumbprints(second.Bundle));
        Assert.Equal(Kids(legit), Kids(second.Bundle));
        Assert.Equal(sequence, second.BundleSequence);
        Assert.Equal(2, h.Log.Entries.Count(e => e.Id.Id == 1410));
        var forgedLeaf = X509SvidMinter.SignLeaf(evilCa, evilKey, CaHarness.Workload, WorkloadKey(), now, TimeSpan.FromMinutes(5));
        Assert.False(X509SvidValidator.Validate([forgedLeaf], second.Bundle, now).IsValid);
        var forgedToken = JwtSvidMinter.Mint(new JwtSigningKey("evil", evilKey), CaHarness.Workload, ["a"], now, now + TimeSpan.FromMinutes(5));
        Assert.False(JwtSvidValidator.Validate(forgedToken, second.Bundle, ["a"], now).IsValid);
        Assert.DoesNotContain("\"kid\":\"evil\"", await JournalTextAsync(h.Store), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rotation_follows_the_certificates_not_lifetimes_written_into_the_store()
    {
        await using var h = await CaHarness.CreateAsync();
        var first = await h.StartCaAsync(Options, new DiskKeyManager(h.KeyPath));
        var a = Assert.Single(first.Bundle.X509Authorities);
        var doc = System.Text.Json.Nodes.JsonNode.Parse(await JournalTextAsync(h.Store))!;
        doc["x509"]![0]!["notAfter"] = "2100-01-01T00:00:00+00:00";   // would postpone rotation until the CA is long dead
        await h.Store.CaJournal.PutAsync(new Writ.Server.Storage.CaJournal("ca", System.Text.Encoding.UTF8.GetBytes(doc.ToJsonString()), h.Time.GetUtcNow()), Ct);

        var second = await h.StartCaAsync(Options, new DiskKeyManager(h.KeyPath));
        h.Time.Advance((T / 2) + TimeSpan.FromMinutes(1));
        await second.RotateAsync(Ct);

        Assert.Equal(2, second.Bundle.X509Authorities.Count);
        Assert.Contains(a.Thumbprint, Thumbprints(second.Bundle));
        Assert.DoesNotContain("2100-01-01", await JournalTextAsync(h.Store), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pruned_authorities_take_their_private_keys_with_them()
    {
        await using var h = await CaHarness.CreateAsync();
        var keys = new DiskKeyManager(h.KeyPath);
        var ca = await h.StartCaAsync(Options, keys);
        var firstIds = System.Text.RegularExpressions.Regex.Matches(await JournalTextAsync(h.Store), "\"keyId\":\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(2, firstIds.Count);
        foreach (var hours in new[] { 3.5, 5.5, 6.5, 7 })
        {
            h.Time.SetUtcNow(CaHarness.Start + TimeSpan.FromHours(hours));
            await ca.RotateAsync(Ct);
        }
        var fresh = new DiskKeyManager(h.KeyPath);
        foreach (var id in firstIds)
        {
            Assert.Null(await fresh.GetAsync(id, Ct));
        }
        var liveIds = System.Text.RegularExpressions.Regex.Matches(await JournalTextAsync(h.Store), "\"keyId\":\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(liveIds);
        foreach (var id in liveIds)
        {
            Assert.NotNull(await fresh.GetAsync(id, Ct));
        }
    }
}
