using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Ca;

/// <summary>
/// Several servers on one store (issue #16): each its own CA journal (<c>ca/&lt;server id&gt;</c>) and keys, one trust
/// bundle holding every server's authorities, published by compare-and-swap so none is lost.
/// </summary>
public sealed class MultiServerCaTests
{
    private static CaOptions Options(string? id, UpstreamCaOptions? upstream = null) => new() { ServerId = id, Upstream = upstream };

    private static async Task<List<WritCa>> StartThreeAsync(CaHarness h, bool concurrently, UpstreamCaOptions? upstream = null)
    {
        var cas = new[] { "s-000000000000000a", "s-000000000000000b", "s-000000000000000c" }
            .Select(id => h.NewCa(Options(id, upstream), new MemoryKeyManager())).ToList();
        if (concurrently)
        {
            await Task.WhenAll(cas.Select(ca => Task.Run(() => ca.InitializeAsync(Ct), Ct)));
        }
        else
        {
            foreach (var ca in cas)
            {
                await ca.InitializeAsync(Ct);
            }
        }
        foreach (var ca in cas)
        {
            await ca.ReloadBundleAsync(Ct);
        }
        return cas;
    }

    private static async Task<Writ.Spiffe.Bundles.TrustBundle> StoredBundleAsync(CaHarness h) =>
        Writ.Spiffe.Bundles.TrustBundle.ParseSpiffeJson(CaHarness.Td, (await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct))!.SpiffeBundleJson);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Three_servers_publish_one_bundle_with_every_authority(bool concurrently)
    {
        await using var h = await CaHarness.CreateAsync();
        var cas = await StartThreeAsync(h, concurrently);

        var stored = await StoredBundleAsync(h);
        Assert.Equal(3, stored.X509Authorities.Count);
        Assert.Equal(3, stored.JwtAuthorities.Count);
        foreach (var ca in cas)
        {
            Assert.Equal(Thumbprints(stored), Thumbprints(ca.Bundle));
            Assert.Equal(Kids(stored), Kids(ca.Bundle));
            Assert.Equal(ca.BundleSequence, stored.Sequence);
        }
        // Each server its own journal, its own authority.
        var journals = await h.Store.CaJournal.ListAsync(Ct);
        Assert.Equal(["ca/s-000000000000000a", "ca/s-000000000000000b", "ca/s-000000000000000c"], journals.Select(j => j.Name));
        Assert.Equal(3, cas.Select(ca => IssuerIn(ca.Bundle, ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint).Distinct().Count());
    }

    [Fact]
    public async Task Every_server_validates_what_any_server_signed()
    {
        await using var h = await CaHarness.CreateAsync();
        var cas = await StartThreeAsync(h, concurrently: false);
        var now = h.Time.GetUtcNow();
        foreach (var signer in cas)
        {
            var chain = signer.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5));
            var (jwt, _) = signer.MintJwtSvid(CaHarness.Workload, ["spiffe://example.org/api"], TimeSpan.FromMinutes(5));
            foreach (var verifier in cas)
            {
                Assert.True(X509SvidValidator.Validate([chain[0], .. verifier.Intermediates], verifier.Bundle, now).IsValid);
                Assert.True(JwtSvidValidator.Validate(jwt, verifier.Bundle, ["spiffe://example.org/api"], now).IsValid);
            }
        }
    }

    [Fact]
    public async Task A_prepared_authority_is_in_the_stored_bundle_and_reaches_the_others_before_it_signs()
    {
        await using var h = await CaHarness.CreateAsync();
        var cas = await StartThreeAsync(h, concurrently: false);
        var (a, b) = (cas[0], cas[1]);
        var before = Thumbprints(a.Bundle);
        var firstIssuer = IssuerIn(a.Bundle, a.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint;

        // Past half the CA lifetime: A prepares its successor (B and C, not rotated, would too; only A is moved here).
        h.Time.Advance(TimeSpan.FromHours(12) + TimeSpan.FromMinutes(1));
        await a.RotateAsync(Ct);
        var stored = await StoredBundleAsync(h);
        Assert.Equal(4, stored.X509Authorities.Count);
        Assert.Equal(4, stored.JwtAuthorities.Count);
        Assert.True(before.IsSubsetOf(Thumbprints(stored)));
        // Still signing with the first one.
        Assert.Equal(firstIssuer, IssuerIn(stored, a.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint);

        var changes = h.Published.Count;
        Assert.True(await b.ReloadBundleAsync(Ct));
        Assert.Equal(Thumbprints(stored), Thumbprints(b.Bundle));
        Assert.Equal(changes + 1, h.Published.Count);   // BundleChanged: its sync streams push it to agents
        Assert.False(await b.ReloadBundleAsync(Ct));     // nothing moved since

        // Later, when the successor signs, every server already trusts it.
        h.Time.Advance(TimeSpan.FromHours(8));
        await a.RotateAsync(Ct);
        var leaf = a.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0];
        Assert.NotEqual(firstIssuer, IssuerIn(stored, leaf)!.Thumbprint);
        Assert.True(X509SvidValidator.Validate([leaf], b.Bundle, h.Time.GetUtcNow()).IsValid);
    }

    [Fact]
    public async Task Expired_authorities_of_a_server_that_is_gone_are_pruned_by_the_others()
    {
        await using var h = await CaHarness.CreateAsync();
        var a = await h.StartCaAsync(Options("s-000000000000000a"), new MemoryKeyManager());
        var gone = await h.StartCaAsync(Options("s-00000000000000ff"), new MemoryKeyManager());
        var goneKids = Kids(gone.Bundle).Except(Kids(a.Bundle)).ToList();
        await a.RotateAsync(Ct);
        Assert.Equal(2, a.Bundle.X509Authorities.Count);

        // `gone` never runs again. A rotates through more than a CA lifetime plus the prune margin.
        for (var i = 0; i < 30; i++)
        {
            h.Time.Advance(TimeSpan.FromHours(1));
            await a.RotateAsync(Ct);
        }
        var stored = await StoredBundleAsync(h);
        Assert.DoesNotContain(stored.JwtAuthorities.Keys, goneKids.Contains);
        Assert.Empty(goneKids.Intersect(Kids(a.Bundle)));
        Assert.All(stored.X509Authorities, c => Assert.True(c.NotAfter.ToUniversalTime() > h.Time.GetUtcNow().UtcDateTime - TimeSpan.FromMinutes(10)));
    }

    [Fact]
    public async Task A_restarted_server_keeps_its_journal_and_authority()
    {
        await using var h = await CaHarness.CreateAsync();
        var keys = Path.Combine(h.Dir, "a-keys.json");
        var a = await h.StartCaAsync(Options("s-000000000000000a"), new DiskKeyManager(keys));
        await h.StartCaAsync(Options("s-000000000000000b"), new MemoryKeyManager());
        var issuer = IssuerIn(a.Bundle, a.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint;

        var again = await h.StartCaAsync(Options("s-000000000000000a"), new DiskKeyManager(keys));
        Assert.Equal(issuer, IssuerIn(again.Bundle, again.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint);
        Assert.Equal(2, (await StoredBundleAsync(h)).X509Authorities.Count);
    }

    [Fact]
    public async Task A_journal_injected_for_a_fake_server_never_signs_anything()
    {
        await using var h = await CaHarness.CreateAsync();
        // A database writer adds a journal for a server id nobody runs, with a root whose key they keep, and a JWT key.
        using var evilKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var now = h.Time.GetUtcNow();
        using var evilRoot = X509Authorities.CreateSelfSignedCa(CaHarness.Td, evilKey, now - TimeSpan.FromMinutes(1), now + TimeSpan.FromDays(1));
        var doc = new CaJournalDocument(
            [new X509AuthorityRecord("x509-ca-evil", [Convert.ToBase64String(evilRoot.RawData)], AuthorityStatus.Active, now, now + TimeSpan.FromDays(1))],
            [new JwtAuthorityRecord("jwt-evil", "evil-kid", Convert.ToBase64String(evilKey.ExportSubjectPublicKeyInfo()), AuthorityStatus.Active, now, now + TimeSpan.FromDays(1))]);
        await h.Store.CaJournal.PutAsync(new CaJournal("ca/s-eeeeeeeeeeeeeeee",
            JsonSerializer.SerializeToUtf8Bytes(doc, new JsonSerializerOptions(JsonSerializerDefaults.Web) { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } }), now), Ct);

        var a = await h.StartCaAsync(Options("s-000000000000000a"), new MemoryKeyManager());
        // The database is trusted (docs/high-availability.md): its root is published, as a root written to the bundle row would be.
        Assert.Contains(evilRoot.Thumbprint, Thumbprints(a.Bundle));
        // But the server signs only with its own journal's authorities, whose keys it holds.
        for (var i = 0; i < 3; i++)
        {
            var leaf = a.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0];
            Assert.NotEqual(evilRoot.Thumbprint, IssuerIn(a.Bundle, leaf)!.Thumbprint);
            Assert.NotEqual("evil-kid", KidOf(a.MintJwtSvid(CaHarness.Workload, ["spiffe://example.org/api"], TimeSpan.FromMinutes(5)).Token));
            h.Time.Advance(TimeSpan.FromHours(5));
            await a.RotateAsync(Ct);
        }
        // A journal under this server's own name with a key it does not hold is dropped, not used (as before issue #16).
        await h.Store.CaJournal.PutAsync(new CaJournal("ca/s-000000000000000b",
            JsonSerializer.SerializeToUtf8Bytes(doc, new JsonSerializerOptions(JsonSerializerDefaults.Web) { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } }), now), Ct);
        var b = await h.StartCaAsync(Options("s-000000000000000b"), new MemoryKeyManager());
        Assert.NotEqual(evilRoot.Thumbprint, IssuerIn(b.Bundle, b.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint);
    }

    [Fact]
    public async Task An_injected_intermediate_that_does_not_chain_to_its_root_is_neither_published_nor_used()
    {
        await using var h = await CaHarness.CreateAsync();
        var now = h.Time.GetUtcNow();
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var root = X509Authorities.CreateSelfSignedCa(CaHarness.Td, rootKey, now - TimeSpan.FromMinutes(1), now + TimeSpan.FromDays(1));
        // Claims the root as its issuer but is self-made: the recorded chain does not link up by signatures.
        using var fake = X509Authorities.CreateSelfSignedCa(CaHarness.Td, otherKey, now - TimeSpan.FromMinutes(1), now + TimeSpan.FromDays(1));
        var req = new CertificateRequest("CN=fake intermediate", otherKey, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var forged = req.Create(root.SubjectName, X509SignatureGenerator.CreateForECDsa(otherKey), now - TimeSpan.FromMinutes(1), now + TimeSpan.FromDays(1), [1, 2, 3]);
        var doc = new CaJournalDocument(
            [new X509AuthorityRecord("x509-ca-forged", [Convert.ToBase64String(forged.RawData), Convert.ToBase64String(root.RawData)], AuthorityStatus.Active, now, now + TimeSpan.FromDays(1))], []);
        await h.Store.CaJournal.PutAsync(new CaJournal("ca/s-eeeeeeeeeeeeeeee",
            JsonSerializer.SerializeToUtf8Bytes(doc, new JsonSerializerOptions(JsonSerializerDefaults.Web) { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } }), now), Ct);

        var a = await h.StartCaAsync(Options("s-000000000000000a"), new MemoryKeyManager());
        Assert.DoesNotContain(root.Thumbprint, Thumbprints(a.Bundle));
        Assert.Single(a.Bundle.X509Authorities);
    }

    [Fact]
    public async Task The_single_server_journal_is_adopted_only_by_the_server_that_holds_its_keys()
    {
        await using var h = await CaHarness.CreateAsync();
        var keysOfOld = new MemoryKeyManager();
        // A store made before issue #16: one journal named "ca".
        var legacy = await h.StartCaAsync(Options(null), keysOfOld);
        var legacyIssuer = IssuerIn(legacy.Bundle, legacy.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint;
        Assert.NotNull(await h.Store.CaJournal.GetAsync("ca", Ct));

        // A second server with other keys starts first: it must not take the journal (it could not sign with it anyway).
        var other = await h.StartCaAsync(Options("s-000000000000000b"), new MemoryKeyManager());
        Assert.NotNull(await h.Store.CaJournal.GetAsync("ca", Ct));
        Assert.Null(await h.Store.CaJournal.GetAsync("ca/s-0000000000000001", Ct));
        Assert.NotEqual(legacyIssuer, IssuerIn(other.Bundle, other.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint);
        Assert.Contains(legacyIssuer, Thumbprints(other.Bundle));   // still trusted: its SVIDs are out there

        // The upgraded original server (same keys) adopts it in one rename and keeps signing with the same authority.
        var upgraded = await h.StartCaAsync(Options("s-0000000000000001"), keysOfOld);
        Assert.Null(await h.Store.CaJournal.GetAsync("ca", Ct));
        Assert.NotNull(await h.Store.CaJournal.GetAsync("ca/s-0000000000000001", Ct));
        Assert.Equal(legacyIssuer, IssuerIn(upgraded.Bundle, upgraded.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0])!.Thumbprint);
        Assert.Equal(2, (await StoredBundleAsync(h)).X509Authorities.Count);
        Assert.Contains(h.Log.Entries, e => e.Id.Id == 1701);
        Assert.Contains(h.Log.Entries, e => e.Id.Id == 1702);
    }

    [Fact]
    public async Task The_journal_rename_is_one_transaction_that_a_second_adopter_loses()
    {
        await using var h = await CaHarness.CreateAsync();
        await h.Store.CaJournal.PutAsync(new CaJournal("ca", [1], h.Time.GetUtcNow()), Ct);
        var results = await Task.WhenAll(Task.Run(() => h.Store.CaJournal.RenameAsync("ca", "ca/s-000000000000000a", Ct), Ct),
            Task.Run(() => h.Store.CaJournal.RenameAsync("ca", "ca/s-000000000000000b", Ct), Ct));
        Assert.Single(results, r => r);
        Assert.Single(await h.Store.CaJournal.ListAsync(Ct));
    }

    [Fact]
    public async Task Upstream_mode_three_intermediates_under_one_root()
    {
        await using var h = await CaHarness.CreateAsync();
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=Upstream Root, O=Upstream", rootKey, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        using var root = req.CreateSelfSigned(CaHarness.Start - TimeSpan.FromDays(1), CaHarness.Start + TimeSpan.FromDays(365));
        var up = new UpstreamCaOptions(Path.Combine(h.Dir, "root.pem"), Path.Combine(h.Dir, "root.key"));
        await File.WriteAllTextAsync(up.CertificatePath, root.ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(up.KeyPath, rootKey.ExportPkcs8PrivateKeyPem(), Ct);

        var cas = await StartThreeAsync(h, concurrently: true, up);
        foreach (var ca in cas)
        {
            Assert.Equal([root.Thumbprint], Thumbprints(ca.Bundle));   // the bundle: the upstream root only
            Assert.Equal(3, ca.Intermediates.Count);                    // every server's intermediate
        }
        var now = h.Time.GetUtcNow();
        foreach (var signer in cas)
        {
            var leaf = signer.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0];
            Assert.All(cas, v => Assert.True(X509SvidValidator.Validate([leaf, .. v.Intermediates], v.Bundle, now).IsValid));
        }
    }

    [Fact]
    public async Task A_bundle_write_that_loses_the_race_is_merged_again_not_lost()
    {
        await using var h = await CaHarness.CreateAsync();
        var a = await h.StartCaAsync(Options("s-000000000000000a"), new MemoryKeyManager());
        var seq = a.BundleSequence;
        // Someone else stored a newer bundle meanwhile: a swap expecting the old sequence fails and changes nothing.
        var stored = (await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct))!;
        Assert.True(await h.Store.Bundles.PutIfSequenceAsync(stored with { Sequence = seq + 1 }, seq, Ct));
        Assert.False(await h.Store.Bundles.PutIfSequenceAsync(stored with { Sequence = seq + 1 }, seq, Ct));
        Assert.False(await h.Store.Bundles.PutIfSequenceAsync(stored with { Sequence = 1 }, 0, Ct));

        var b = await h.StartCaAsync(Options("s-000000000000000b"), new MemoryKeyManager());
        Assert.Equal(seq + 2, b.BundleSequence);
        Assert.Equal(2, (await StoredBundleAsync(h)).X509Authorities.Count);
    }
}
