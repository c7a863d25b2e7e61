using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Spiffe.X509;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Ca;

/// <summary>With an upstream CA the server CA is its intermediate; bad upstream files stop the start and change nothing.</summary>
public sealed class UpstreamCaTests
{
    private static readonly DateTimeOffset Start = CaHarness.Start;

    private static X509Certificate2 MakeCa(string cn, AsymmetricAlgorithm key, DateTimeOffset notBefore, DateTimeOffset notAfter,
        X509Certificate2? issuer = null, AsymmetricAlgorithm? issuerKey = null, bool isCa = true)
    {
        var req = key is RSA rsa
            ? new CertificateRequest($"CN={cn}, O=Upstream", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            : new CertificateRequest($"CN={cn}, O=Upstream", (ECDsa)key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(isCa ? X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign : X509KeyUsageFlags.DigitalSignature, true));
        var ski = new X509SubjectKeyIdentifierExtension(req.PublicKey, false);
        req.CertificateExtensions.Add(ski);
        if (issuer is null)
        {
            return req.CreateSelfSigned(notBefore, notAfter);
        }
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        var generator = issuerKey is RSA irsa ? X509SignatureGenerator.CreateForRSA(irsa, RSASignaturePadding.Pkcs1) : X509SignatureGenerator.CreateForECDsa((ECDsa)issuerKey!);
        return req.Create(issuer.SubjectName, generator, notBefore, notAfter, RandomNumberGenerator.GetBytes(12));
    }

    private sealed record Upstream(X509Certificate2 Root, AsymmetricAlgorithm Key, string CertPath, string KeyPath)
    {
        public UpstreamCaOptions Options => new(CertPath, KeyPath);
    }

    private static async Task<Upstream> WriteRootAsync(CaHarness h, TimeSpan lifetime, bool rsa = false)
    {
        AsymmetricAlgorithm key = rsa ? RSA.Create(2048) : ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var root = MakeCa("Upstream Root", key, Start - TimeSpan.FromDays(1), Start + lifetime);
        var up = new Upstream(root, key, Path.Combine(h.Dir, "root.pem"), Path.Combine(h.Dir, "root.key"));
        await File.WriteAllTextAsync(up.CertPath, root.ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(up.KeyPath, key.ExportPkcs8PrivateKeyPem(), Ct);
        return up;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_server_ca_is_an_intermediate_under_the_upstream_root(bool rsaRoot)
    {
        await using var h = await CaHarness.CreateAsync();
        var up = await WriteRootAsync(h, TimeSpan.FromHours(12), rsaRoot);
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(24), Upstream = up.Options }, new DiskKeyManager(h.KeyPath));

        // The bundle holds the upstream root, not the intermediate.
        Assert.Equal([up.Root.Thumbprint], Thumbprints(ca.Bundle));

        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.Equal(2, chain.Count);
        var intermediate = chain[1];
        Assert.Equal(up.Root.SubjectName.Name, intermediate.IssuerName.Name);
        Assert.NotEqual(intermediate.SubjectName.Name, intermediate.IssuerName.Name);
        Assert.Equal(intermediate.Thumbprint, Assert.Single(ca.Intermediates).Thumbprint);
        // Capped at the upstream's NotAfter (24h asked, 12h left upstream).
        Assert.Equal(up.Root.NotAfter.ToUniversalTime(), intermediate.NotAfter.ToUniversalTime());
        Assert.True(chain[0].NotAfter <= intermediate.NotAfter);

        var now = h.Time.GetUtcNow();
        var v = X509SvidValidator.Validate(chain, ca.Bundle, now);
        Assert.True(v.IsValid, v.Error);

        var leafPem = Path.Combine(h.Dir, "leaf.pem");
        var interPem = Path.Combine(h.Dir, "intermediate.pem");
        await File.WriteAllTextAsync(leafPem, chain[0].ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(interPem, intermediate.ExportCertificatePem(), Ct);
        var ok = await Proc.OpensslVerifyAsync(now, up.CertPath, interPem, leafPem);
        Assert.True(ok.Exit == 0, ok.Output);
        // Without the intermediate openssl cannot reach the root: the intermediate really is in the path.
        Assert.NotEqual(0, (await Proc.OpensslVerifyAsync(now, up.CertPath, null, leafPem)).Exit);
    }

    [Fact]
    public async Task Rotating_the_intermediate_does_not_change_the_bundle_or_its_sequence()
    {
        await using var h = await CaHarness.CreateAsync();
        var up = await WriteRootAsync(h, TimeSpan.FromDays(30));
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(6), JwtKeyTtl = TimeSpan.FromDays(60), Upstream = up.Options }, new MemoryKeyManager());
        var first = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[1];
        Assert.Equal(1, ca.BundleSequence);
        foreach (var hours in new[] { 3.0, 5.0, 5.1 })
        {
            h.Time.SetUtcNow(Start + TimeSpan.FromHours(hours));
            await ca.RotateAsync(Ct);
        }
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5));
        Assert.NotEqual(first.Thumbprint, chain[1].Thumbprint);
        Assert.Equal(1, ca.BundleSequence);
        Assert.Single(h.Published);
        Assert.True(X509SvidValidator.Validate(chain, ca.Bundle, h.Time.GetUtcNow()).IsValid);
    }

    [Fact]
    public async Task Svids_signed_by_the_previous_intermediate_still_validate_with_the_published_intermediates()
    {
        // AgentApi validates agent SVIDs as [leaf, .. ca.Intermediates]: after a rotation that must still cover older SVIDs.
        await using var h = await CaHarness.CreateAsync();
        var up = await WriteRootAsync(h, TimeSpan.FromDays(30));
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(6), Upstream = up.Options }, new MemoryKeyManager());
        var early = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(24));   // capped at 6h
        foreach (var hours in new[] { 3.0, 5.0 })
        {
            h.Time.SetUtcNow(Start + TimeSpan.FromHours(hours));
            await ca.RotateAsync(Ct);
        }
        var late = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.NotEqual(early[1].Thumbprint, late[1].Thumbprint);

        var now = h.Time.GetUtcNow();
        var intermediates = ca.Intermediates;
        Assert.Equal(2, intermediates.Count);
        Assert.Equal(late[1].Thumbprint, intermediates[0].Thumbprint);   // the signing one first
        Assert.DoesNotContain(intermediates, c => c.Thumbprint == up.Root.Thumbprint);
        var earlyResult = X509SvidValidator.Validate([early[0], .. intermediates], ca.Bundle, now);
        Assert.True(earlyResult.IsValid, earlyResult.Error);
        Assert.True(X509SvidValidator.Validate([late[0], .. intermediates], ca.Bundle, now).IsValid);
    }

    [Fact]
    public async Task A_self_signed_ca_has_no_intermediates()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(6) }, new MemoryKeyManager());
        h.Time.SetUtcNow(Start + TimeSpan.FromHours(3));
        await ca.RotateAsync(Ct);
        Assert.Empty(ca.Intermediates);
        Assert.Single(ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1)));
    }

    [Fact]
    public async Task An_upstream_file_with_its_own_intermediate_yields_the_full_chain_and_only_the_root_in_the_bundle()
    {
        await using var h = await CaHarness.CreateAsync();
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        using var midKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var root = MakeCa("Corp Root", rootKey, Start - TimeSpan.FromDays(1), Start + TimeSpan.FromDays(365));
        var mid = MakeCa("Corp Issuing", midKey, Start - TimeSpan.FromDays(1), Start + TimeSpan.FromDays(90), root, rootKey);
        var certPath = Path.Combine(h.Dir, "upstream.pem");
        var keyPath = Path.Combine(h.Dir, "upstream.key");
        await File.WriteAllTextAsync(certPath, mid.ExportCertificatePem() + "\n" + root.ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(keyPath, midKey.ExportPkcs8PrivateKeyPem(), Ct);
        var ca = await h.StartCaAsync(new CaOptions { Upstream = new(certPath, keyPath) }, new MemoryKeyManager());

        Assert.Equal([root.Thumbprint], Thumbprints(ca.Bundle));
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.Equal(3, chain.Count);
        Assert.Equal(mid.Thumbprint, chain[2].Thumbprint);
        var now = h.Time.GetUtcNow();
        var v = X509SvidValidator.Validate(chain, ca.Bundle, now);
        Assert.True(v.IsValid, v.Error);

        var rootPem = Path.Combine(h.Dir, "root.pem");
        var untrusted = Path.Combine(h.Dir, "untrusted.pem");
        var leafPem = Path.Combine(h.Dir, "leaf.pem");
        await File.WriteAllTextAsync(rootPem, root.ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(untrusted, chain[1].ExportCertificatePem() + "\n" + chain[2].ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(leafPem, chain[0].ExportCertificatePem(), Ct);
        var ok = await Proc.OpensslVerifyAsync(now, rootPem, untrusted, leafPem);
        Assert.True(ok.Exit == 0, ok.Output);
    }

    [Fact]
    public async Task Whoever_can_write_the_store_cannot_slip_a_root_into_an_upstream_chain()
    {
        await using var h = await CaHarness.CreateAsync();
        var up = await WriteRootAsync(h, TimeSpan.FromDays(30));
        var options = new CaOptions { Upstream = up.Options };
        var first = await h.StartCaAsync(options, new DiskKeyManager(h.KeyPath));
        var sequence = first.BundleSequence;

        using var evilKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var evilRoot = MakeCa("Evil Root", evilKey, Start - TimeSpan.FromDays(1), Start + TimeSpan.FromDays(30));
        var doc = System.Text.Json.Nodes.JsonNode.Parse(await JournalTextAsync(h.Store))!;
        doc["x509"]![0]!["chainDerBase64"]!.AsArray().Add(Convert.ToBase64String(evilRoot.RawData));
        await h.Store.CaJournal.PutAsync(new Writ.Server.Storage.CaJournal("ca", System.Text.Encoding.UTF8.GetBytes(doc.ToJsonString()), h.Time.GetUtcNow()), Ct);

        var second = await h.StartCaAsync(options, new DiskKeyManager(h.KeyPath));

        Assert.Equal([up.Root.Thumbprint], Thumbprints(second.Bundle));
        Assert.Contains(h.Log.Entries, e => e.Id.Id == 1410);
        Assert.DoesNotContain(Convert.ToBase64String(evilRoot.RawData), await JournalTextAsync(h.Store), StringComparison.Ordinal);
        Assert.True(X509SvidValidator.Validate(second.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1)), second.Bundle, h.Time.GetUtcNow()).IsValid);
        Assert.True(second.BundleSequence >= sequence);
    }

    [Fact]
    public async Task Adding_an_upstream_to_a_self_signed_ca_replaces_its_authorities_at_restart()
    {
        await using var h = await CaHarness.CreateAsync();
        var selfSigned = await h.StartCaAsync(new CaOptions(), new DiskKeyManager(h.KeyPath));
        var oldRoot = Assert.Single(selfSigned.Bundle.X509Authorities);
        var oldKeyId = System.Text.RegularExpressions.Regex.Match(await JournalTextAsync(h.Store), "\"keyId\":\"(x509-ca-[^\"]+)\"").Groups[1].Value;
        Assert.NotNull(await new DiskKeyManager(h.KeyPath).GetAsync(oldKeyId, Ct));
        var up = await WriteRootAsync(h, TimeSpan.FromDays(30));

        var ca = await h.StartCaAsync(new CaOptions { Upstream = up.Options }, new DiskKeyManager(h.KeyPath));

        Assert.Equal([up.Root.Thumbprint], Thumbprints(ca.Bundle));
        Assert.Equal(2, ca.BundleSequence);
        var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.Equal(2, chain.Count);
        Assert.NotEqual(oldRoot.SubjectName.Name, chain[0].IssuerName.Name);
        Assert.True(X509SvidValidator.Validate(chain, ca.Bundle, h.Time.GetUtcNow()).IsValid);
        Assert.Contains(h.Log.Entries, e => e.Id.Id == 1410);
    }

    [Fact]
    public async Task Near_the_upstreams_expiry_no_pointless_successors_are_made_and_the_operator_is_told_once()
    {
        await using var h = await CaHarness.CreateAsync();
        var up = await WriteRootAsync(h, TimeSpan.FromHours(8));
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(6), JwtKeyTtl = TimeSpan.FromDays(60), Upstream = up.Options }, new MemoryKeyManager());
        var intermediates = new HashSet<string>(StringComparer.Ordinal);
        for (var t = TimeSpan.Zero; t < TimeSpan.FromHours(8); t += TimeSpan.FromMinutes(1))
        {
            h.Time.SetUtcNow(Start + t);
            await ca.RotateAsync(Ct);
            var chain = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5));
            intermediates.Add(chain[1].Thumbprint);
            Assert.True(X509SvidValidator.Validate(chain, ca.Bundle, h.Time.GetUtcNow()).IsValid);
        }
        Assert.Equal(2, intermediates.Count);
        Assert.Single(ca.Intermediates);   // the first one was pruned at 6h + margin
        Assert.Single(h.Log.Entries, e => e.Id.Id == 1412);

        h.Time.SetUtcNow(Start + TimeSpan.FromHours(8) + TimeSpan.FromMinutes(1));
        var e = await Assert.ThrowsAsync<CaException>(() => ca.RotateAsync(Ct));
        Assert.Equal(CaException.UpstreamExpired, e.Code);
        OneLine(e);
        Assert.Contains(up.CertPath, e.Message, StringComparison.Ordinal);
        Assert.Contains("renew", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_renewed_upstream_root_is_published_before_its_intermediate_signs_and_the_old_root_leaves_after_its_authorities()
    {
        await using var h = await CaHarness.CreateAsync();
        var up = await WriteRootAsync(h, TimeSpan.FromHours(8));
        var margin = TimeSpan.FromMinutes(10);
        var ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(6), JwtKeyTtl = TimeSpan.FromDays(60), PruneMargin = margin, Upstream = up.Options },
            new DiskKeyManager(h.KeyPath));
        foreach (var hours in new[] { 3.0, 5.0, 5.6 })
        {
            h.Time.SetUtcNow(Start + TimeSpan.FromHours(hours));
            await ca.RotateAsync(Ct);
        }
        Assert.Equal([up.Root.Thumbprint], Thumbprints(ca.Bundle));
        var sequence = ca.BundleSequence;

        // The operator renews the upstream CA with a new key pair and root, in place.
        using var newKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var newRoot = MakeCa("Upstream Root 2", newKey, Start, Start + TimeSpan.FromDays(365));
        await File.WriteAllTextAsync(up.CertPath, newRoot.ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(up.KeyPath, newKey.ExportPkcs8PrivateKeyPem(), Ct);

        h.Time.SetUtcNow(Start + TimeSpan.FromHours(5.7));
        await ca.RotateAsync(Ct);
        Assert.Equal(new HashSet<string> { up.Root.Thumbprint, newRoot.Thumbprint }, Thumbprints(ca.Bundle));
        Assert.Equal(sequence + 1, ca.BundleSequence);
        var stillOld = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(24));   // capped at 8h
        Assert.Equal(up.Root.SubjectName.Name, stillOld[1].IssuerName.Name);

        // A restart in between keeps the old authority (it is still a proper intermediate), not a fresh one.
        ca = await h.StartCaAsync(new CaOptions { CaTtl = TimeSpan.FromHours(6), JwtKeyTtl = TimeSpan.FromDays(60), PruneMargin = margin, Upstream = up.Options },
            new DiskKeyManager(h.KeyPath));
        Assert.Equal(sequence + 1, ca.BundleSequence);

        // The renewed intermediate takes over when 1/6 of the old one's life remains.
        h.Time.SetUtcNow(Start + TimeSpan.FromHours(7.5));
        await ca.RotateAsync(Ct);
        var now = h.Time.GetUtcNow();
        var renewed = ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromHours(1));
        Assert.Equal(newRoot.SubjectName.Name, renewed[1].IssuerName.Name);
        Assert.True(X509SvidValidator.Validate(renewed, ca.Bundle, now).IsValid);
        Assert.True(X509SvidValidator.Validate([stillOld[0], .. ca.Intermediates], ca.Bundle, now).IsValid);
        var bundlePem = Path.Combine(h.Dir, "bundle.pem");
        var leafPem = Path.Combine(h.Dir, "leaf.pem");
        var interPem = Path.Combine(h.Dir, "inter.pem");
        await File.WriteAllTextAsync(bundlePem, ca.Bundle.ToPem(), Ct);
        await File.WriteAllTextAsync(leafPem, renewed[0].ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(interPem, renewed[1].ExportCertificatePem(), Ct);
        var ok = await Proc.OpensslVerifyAsync(now, bundlePem, interPem, leafPem);
        Assert.True(ok.Exit == 0, ok.Output);

        // Every authority under the old root expired at 8h; one margin later the old root leaves the bundle.
        h.Time.SetUtcNow(Start + TimeSpan.FromHours(8) + margin + TimeSpan.FromMinutes(1));
        await ca.RotateAsync(Ct);
        Assert.Equal([newRoot.Thumbprint], Thumbprints(ca.Bundle));
        Assert.Equal(sequence + 2, ca.BundleSequence);
    }

    public static TheoryData<string> BadUpstreams =>
    [
        "certificate missing", "key missing", "certificate not PEM", "certificate file holds a key", "key not PEM",
        "key encrypted", "key of another certificate", "certificate not a CA", "certificate expired", "key is a certificate",
        "certificate file without its root", "certificates not one chain",
    ];

    [Theory]
    [MemberData(nameof(BadUpstreams))]
    public async Task Bad_upstream_files_stop_the_start_with_one_line_naming_the_file_and_write_nothing(string defect)
    {
        await using var h = await CaHarness.CreateAsync();
        var up = await WriteRootAsync(h, TimeSpan.FromDays(30));
        var secretKeyPem = await File.ReadAllTextAsync(up.KeyPath, Ct);
        var badFile = up.KeyPath;
        switch (defect)
        {
            case "certificate missing":
                File.Delete(up.CertPath);
                badFile = up.CertPath;
                break;
            case "key missing":
                File.Delete(up.KeyPath);
                break;
            case "certificate not PEM":
                await File.WriteAllBytesAsync(up.CertPath, up.Root.RawData, Ct);   // DER, not PEM
                badFile = up.CertPath;
                break;
            case "certificate file holds a key":
                await File.WriteAllTextAsync(up.CertPath, secretKeyPem, Ct);
                badFile = up.CertPath;
                break;
            case "key not PEM":
                await File.WriteAllTextAsync(up.KeyPath, "this is not a key\n", Ct);
                break;
            case "key encrypted":
                await File.WriteAllTextAsync(up.KeyPath, up.Key.ExportEncryptedPkcs8PrivateKeyPem("pw"u8,
                    new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 100_000)), Ct);
                break;
            case "key of another certificate":
                using (var other = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    await File.WriteAllTextAsync(up.KeyPath, other.ExportPkcs8PrivateKeyPem(), Ct);
                }
                break;
            case "certificate not a CA":
                await File.WriteAllTextAsync(up.CertPath, MakeCa("Not A CA", up.Key, Start - TimeSpan.FromDays(1), Start + TimeSpan.FromDays(30), isCa: false).ExportCertificatePem(), Ct);
                badFile = up.CertPath;
                break;
            case "certificate expired":
                await File.WriteAllTextAsync(up.CertPath, MakeCa("Old Root", up.Key, Start - TimeSpan.FromDays(30), Start - TimeSpan.FromDays(1)).ExportCertificatePem(), Ct);
                badFile = up.CertPath;
                break;
            case "key is a certificate":
                await File.WriteAllTextAsync(up.KeyPath, up.Root.ExportCertificatePem(), Ct);
                break;
            case "certificate file without its root":
            case "certificates not one chain":
                using (var otherRootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    var otherRoot = MakeCa("Other Root", otherRootKey, Start - TimeSpan.FromDays(1), Start + TimeSpan.FromDays(90));
                    var mid = MakeCa("Issuing", up.Key, Start - TimeSpan.FromDays(1), Start + TimeSpan.FromDays(30), otherRoot, otherRootKey);
                    // Without the root, an intermediate would be the bundle's anchor, which path validation refuses; with a
                    // root that did not issue it, the chain is broken.
                    var pem = defect == "certificates not one chain" ? mid.ExportCertificatePem() + "\n" + up.Root.ExportCertificatePem() : mid.ExportCertificatePem();
                    await File.WriteAllTextAsync(up.CertPath, pem, Ct);
                }
                badFile = up.CertPath;
                break;
            default:
                throw new ArgumentException(defect);
        }

        var ca = h.NewCa(new CaOptions { Upstream = up.Options }, new DiskKeyManager(h.KeyPath));
        var e = await Assert.ThrowsAsync<CaException>(() => ca.InitializeAsync(Ct));

        TestContext.Current.TestOutputHelper?.WriteLine(e.Message);
        Assert.Equal(defect switch
        {
            "certificate missing" or "key missing" => CaException.UpstreamMissing,
            "certificate expired" => CaException.UpstreamExpired,
            "key of another certificate" or "certificate not a CA" or "certificate file without its root" or "certificates not one chain" => CaException.UpstreamInvalid,
            _ => CaException.UpstreamUnreadable,
        }, e.Code);
        OneLine(e);
        Assert.Contains(badFile, e.Message, StringComparison.Ordinal);
        Assert.Contains(':', e.Message.AsSpan(e.Message.IndexOf(badFile, StringComparison.Ordinal) + badFile.Length).ToString());
        Assert.DoesNotContain("PRIVATE KEY", e.Message, StringComparison.Ordinal);
        foreach (var line in secretKeyPem.Split('\n').Where(l => l.Length > 20 && !l.StartsWith("-----", StringComparison.Ordinal)))
        {
            Assert.DoesNotContain(line, e.Message, StringComparison.Ordinal);
        }
        Assert.Null(await h.Store.CaJournal.GetAsync("ca", Ct));
        Assert.Null(await h.Store.Bundles.GetAsync(CaHarness.Td.Name, Ct));
        Assert.False(File.Exists(h.KeyPath), "a CA key was generated although the upstream files are bad");
        Assert.Empty(h.Published);
        Assert.Throws<InvalidOperationException>(() => ca.Bundle);
    }
}
