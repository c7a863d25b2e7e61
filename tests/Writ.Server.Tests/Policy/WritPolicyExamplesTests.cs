using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Issuance;
using Writ.Server.Policy;
using Writ.Server.Storage;
using Writ.Spiffe.X509;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Policy;

/// <summary>
/// The documented Writ policy examples (docs/examples/policy/writ), each pushed with the default set and exercised
/// through the real pipeline with realistic evidence: who gets through, who does not, and why.
/// </summary>
public sealed class WritPolicyExamplesTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string ExamplesDir
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Writ.slnx")))
                dir = dir.Parent;
            return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Writ.slnx not found above the test binaries"), "docs", "examples", "policy", "writ");
        }
    }

    private static (string, string) File_(string name) => (name, File.ReadAllText(Path.Combine(ExamplesDir, name)));

    private static async Task<PipelineHarness> WithAsync(string example)
    {
        var h = await PipelineHarness.CreateAsync();
        await h.PushAsync(File_("default.cedar"), File_(example));
        return h;
    }

    [Fact]
    public void All_examples_compile_together_against_the_Writ_schema()
    {
        var files = Directory.GetFiles(ExamplesDir, "*.cedar").Order(StringComparer.Ordinal)
            .Select(f => new PolicyFileRecord(Path.GetFileName(f), File.ReadAllText(f))).ToList();
        Assert.True(files.Count >= 5);
        Assert.True(WritPolicyCompiler.TryCompile(files, out var set, out var errors), string.Join("\n", errors));
        Assert.Equal(TimeSpan.FromMinutes(10), set!.MaxTtl["ci-x509-short"]);
        Assert.Equal(WritPolicyCompiler.DefaultFiles[0].Text, File.ReadAllText(Path.Combine(ExamplesDir, "default.cedar")));
    }

    [Fact]
    public async Task Payments_need_a_tpm_attested_node()
    {
        await using var h = await WithAsync("payments-node-attestation.cedar");
        var onJoinToken = await h.EntryAsync("spiffe://example.org/payments/api", "unix:uid:1000");
        var other = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var ev = PipelineHarness.Evidence("10:1", "unix:uid:1000");

        var denied = Assert.Single((await h.SignAsync(onJoinToken, ev)).Denials);
        Assert.Equal("denied by policy 'payments-require-tpm-nodes'", denied.Reason);
        Assert.Single((await h.SignAsync(other, ev)).Issued);   // other identities are untouched

        var tpmNode = h.Node with { SpiffeId = "spiffe://example.org/writ/agent/tpm/host-7", AttestationType = "tpm", Selectors = [new Selector("tpm", "ek_hash:" + new string('a', 64))] };
        await h.Store.Nodes.CreateAsync(tpmNode, Ct);
        var onTpm = (await h.Store.Entries.CreateAsync([new RegistrationEntry
        {
            SpiffeId = "spiffe://example.org/payments/api", ParentId = tpmNode.SpiffeId, Selectors = [new Selector("unix", "uid:1000")],
        }], Ct))[0];
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var batch = await h.Pipeline.SignX509Async(tpmNode, [new X509SvidRequest(onTpm.Id, Csr.Create(key), ev)], Ct);
        Assert.Single(batch.Issued);
    }

    [Fact]
    public async Task Payments_need_a_tpm_node_inside_the_reference_set_with_secure_boot()
    {
        await using var h = await WithAsync("payments-tpm-reference.cedar");
        var ev = PipelineHarness.Evidence("10:2", "unix:uid:1000");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Task<X509Batch> OnNodeAsync(string name, params Selector[] selectors) => OnAsync("tpm", name, selectors);
        async Task<X509Batch> OnAsync(string type, string name, params Selector[] selectors)
        {
            var node = h.Node with { SpiffeId = $"spiffe://example.org/writ/agent/{type}/{name}", AttestationType = type, Selectors = selectors };
            await h.Store.Nodes.CreateAsync(node, Ct);
            var entry = (await h.Store.Entries.CreateAsync([new RegistrationEntry
            {
                SpiffeId = "spiffe://example.org/payments/api", ParentId = node.SpiffeId, Selectors = [new Selector("unix", "uid:1000")],
            }], Ct))[0];
            return await h.Pipeline.SignX509Async(node, [new X509SvidRequest(entry.Id, Csr.Create(key), ev)], Ct);
        }
        var ek = new Selector("tpm", "ek_hash:" + new string('b', 64));
        var pcr7 = new Selector("tpm", "pcr:sha256:7:" + new string('c', 64));
        var inSet = new Selector("tpm", "pcr_set:prod-2026q4");

        Assert.Single((await OnNodeAsync("good", ek, pcr7, inSet, new Selector("tpm", "secure_boot:on"))).Issued);
        Assert.Equal("denied by policy 'payments-require-tpm-reference'",
            Assert.Single((await OnNodeAsync("drifted", ek, pcr7, new Selector("tpm", "secure_boot:on"))).Denials).Reason);
        Assert.Single((await OnNodeAsync("no-secure-boot", ek, pcr7, inSet, new Selector("tpm", "secure_boot:off"))).Denials);
        // No event log: secure_boot is "unknown", which is not "on".
        Assert.Single((await OnNodeAsync("no-event-log", ek, pcr7, inSet)).Denials);
        // A node attested otherwise has no tpm record at all, even with selectors that look like a TPM's.
        Assert.Single((await OnAsync("join_token", "forger", ek, pcr7, inSet, new Selector("tpm", "secure_boot:on"))).Denials);
    }

    [Fact]
    public async Task Jwt_audiences_are_restricted_per_identity()
    {
        await using var h = await WithAsync("jwt-audiences.cedar");
        var api = await h.EntryAsync("spiffe://example.org/payments/api", "unix:uid:1000");
        var web = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var ev = PipelineHarness.Evidence("11:1", "unix:uid:1000");
        var bound = new byte[32];

        Assert.NotNull((await h.Pipeline.MintJwtAsync(h.Node, api, ev, ["https://bank.example.org"], 0, bound, Ct)).Token);
        Assert.NotNull((await h.Pipeline.MintJwtAsync(h.Node, api, ev, ["https://bank.example.org", "https://ledger.example.org"], 0, bound, Ct)).Token);
        // One audience off the list spoils the request, even next to an allowed one.
        var attacker = await h.Pipeline.MintJwtAsync(h.Node, api, ev, ["https://bank.example.org", "https://evil.example.net"], 0, bound, Ct);
        Assert.Null(attacker.Token);
        Assert.Equal("denied by policy 'payments-api-audiences'", attacker.Decision.Reason);
        Assert.NotNull((await h.Pipeline.MintJwtAsync(h.Node, web, ev, ["https://evil.example.net"], 0, bound, Ct)).Token);
    }

    [Fact]
    public async Task Ci_jobs_get_capped_ttls()
    {
        await using var h = await WithAsync("ci-ttl.cedar");
        var ci = await h.EntryAsync("spiffe://example.org/ci/build-42", "unix:uid:1000");
        var web = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var ev = PipelineHarness.Evidence("12:1", "unix:uid:1000");
        var now = h.Ca.Time.GetUtcNow();

        var ciSvid = Assert.Single((await h.SignAsync(ci, ev)).Issued);
        Assert.Equal(now.AddMinutes(10), ciSvid.Leaf.NotAfter);
        var webSvid = Assert.Single((await h.SignAsync(web, ev)).Issued);
        Assert.Equal(now.AddHours(1), webSvid.Leaf.NotAfter);
        var jwt = await h.Pipeline.MintJwtAsync(h.Node, ci, ev, ["https://artifacts"], 0, new byte[32], Ct);
        Assert.Equal(now.AddMinutes(2), jwt.ExpiresAt);
        using var cert = X509CertificateLoader.LoadCertificate(ciSvid.Leaf.Der);
        Assert.Equal(now.AddMinutes(10), new DateTimeOffset(cert.NotAfter.ToUniversalTime()));
    }

    [Fact]
    public async Task Unknown_executables_get_no_production_identity()
    {
        await using var h = await WithAsync("known-binaries.cedar");
        var prod = await h.EntryAsync("spiffe://example.org/prod/orders", "unix:uid:1000");
        const string Released = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        Assert.Single((await h.SignAsync(prod, PipelineHarness.Evidence("13:1", "unix:uid:1000", "unix:sha256:" + Released))).Issued);

        // Same uid, a rebuilt (or tampered) binary.
        var tampered = Assert.Single((await h.SignAsync(prod, PipelineHarness.Evidence("14:1", "unix:uid:1000", "unix:sha256:" + new string('0', 64)))).Denials);
        Assert.Equal("denied by policy 'prod-known-binaries'", tampered.Reason);
        // A binary that could not be hashed has no exe_sha256 at all.
        var unhashed = Assert.Single((await h.SignAsync(prod, PipelineHarness.Evidence("15:1", "unix:uid:1000"))).Denials);
        Assert.Equal("denied by policy 'prod-known-binaries'", unhashed.Reason);
    }

    [Fact]
    public async Task Prod_needs_namespace_prod_a_release_signed_image_and_a_measured_node()
    {
        await using var h = await WithAsync("k8s-prod-signed-tpm.cedar");
        const string Digest = "sha256:3f1c2a9d8e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a";
        string[] pod = ["k8s:ns:prod", "k8s:sa:orders", "k8s:pod-uid:0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "k8s:container-name:orders",
            "k8s:container-image-id:" + Digest, "k8s:image-signed-by:release"];
        var ek = new Selector("tpm", "ek_hash:" + new string('b', 64));
        var inSet = new Selector("tpm", "pcr_set:prod-firmware");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var n = 0;
        async Task<X509Batch> OnAsync(string type, Selector[] nodeSelectors, string[] workload, string identity = "spiffe://example.org/prod/orders")
        {
            var node = h.Node with { SpiffeId = $"spiffe://example.org/writ/agent/{type}/n{++n}", AttestationType = type, Selectors = nodeSelectors };
            await h.Store.Nodes.CreateAsync(node, Ct);
            var entry = (await h.Store.Entries.CreateAsync([new RegistrationEntry
            {
                SpiffeId = identity, ParentId = node.SpiffeId, Selectors = [new Selector("k8s", "sa:orders")],
            }], Ct))[0];
            return await h.Pipeline.SignX509Async(node, [new X509SvidRequest(entry.Id, Csr.Create(key), PipelineHarness.Evidence($"20:{n}", workload))], Ct);
        }

        Assert.Single((await OnAsync("tpm", [ek, inSet], pod)).Issued);
        const string Reason = "denied by policy 'prod-signed-images-on-measured-nodes'";
        // Another namespace with the same service account name.
        Assert.Equal(Reason, Assert.Single((await OnAsync("tpm", [ek, inSet], [.. pod.Where(s => !s.StartsWith("k8s:ns:", StringComparison.Ordinal)), "k8s:ns:staging"])).Denials).Reason);
        // An unsigned image, and one signed only by another key.
        Assert.Equal(Reason, Assert.Single((await OnAsync("tpm", [ek, inSet], [.. pod.Where(s => !s.Contains("signed-by", StringComparison.Ordinal))])).Denials).Reason);
        Assert.Single((await OnAsync("tpm", [ek, inSet], [.. pod.Where(s => !s.Contains("signed-by", StringComparison.Ordinal)), "k8s:image-signed-by:qa"])).Denials);
        // A signature next to a second image digest is credited to neither.
        Assert.Single((await OnAsync("tpm", [ek, inSet], [.. pod, "k8s:container-image-id:sha256:" + new string('0', 64)])).Denials);
        // A node whose PCRs drifted out of the reference set, and a node that is not TPM-attested at all.
        Assert.Single((await OnAsync("tpm", [ek], pod)).Denials);
        Assert.Single((await OnAsync("k8s_psat", [new Selector("k8s_psat", "cluster:prod"), inSet], pod)).Denials);
        // Outside /prod/ the policy says nothing.
        Assert.Single((await OnAsync("k8s_psat", [new Selector("k8s_psat", "cluster:prod")], ["k8s:sa:orders"], "spiffe://example.org/web")).Issued);
    }

    [Fact]
    public async Task Only_main_of_org_x_may_be_the_deployer()
    {
        await using var h = await WithAsync("ci-deployer-main.cedar");
        // A CI login: the server is the calling "node" (contract of issue #15), the evidence the token's oidc: selectors.
        var server = h.Node with { SpiffeId = "spiffe://example.org/writ/server", AttestationType = "oidc", Selectors = [] };
        await h.Store.Nodes.CreateAsync(server, Ct);
        const string Iss = "oidc:iss:https://token.actions.githubusercontent.com";
        var deployer = (await h.Store.Entries.CreateAsync([new RegistrationEntry
        {
            // A wide entry (any job of the issuer): the policy is what holds the line.
            SpiffeId = "spiffe://example.org/deployer", ParentId = server.SpiffeId, Selectors = [Selector.Parse(Iss)],
        }], Ct))[0];
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var n = 0;
        Task<X509Batch> LoginAsync(AttestedNode node, RegistrationEntry entry, params string[] selectors) =>
            h.Pipeline.SignX509Async(node, [new X509SvidRequest(entry.Id, Csr.Create(key), PipelineHarness.Evidence($"30:{++n}", selectors))], Ct);

        Assert.Single((await LoginAsync(server, deployer, Iss, "oidc:sub:repo:org/x:ref:refs/heads/main", "oidc:claim:repository:org/x", "oidc:claim:ref:refs/heads/main")).Issued);
        const string Reason = "denied by policy 'deployer-only-from-main'";
        // A feature branch, a pull request, and main of a fork.
        Assert.Equal(Reason, Assert.Single((await LoginAsync(server, deployer, Iss, "oidc:claim:repository:org/x", "oidc:claim:ref:refs/heads/feature")).Denials).Reason);
        Assert.Single((await LoginAsync(server, deployer, Iss, "oidc:claim:repository:org/x", "oidc:claim:ref:refs/pull/7/merge")).Denials);
        Assert.Single((await LoginAsync(server, deployer, Iss, "oidc:claim:repository:fork/x", "oidc:claim:ref:refs/heads/main")).Denials);
        // Another issuer with the same claims.
        var other = (await h.Store.Entries.CreateAsync([new RegistrationEntry
        {
            SpiffeId = "spiffe://example.org/deployer", ParentId = server.SpiffeId, Selectors = [Selector.Parse("oidc:claim:repository:org/x")],
        }], Ct))[0];
        Assert.Single((await LoginAsync(server, other, "oidc:iss:https://gitlab.example.org", "oidc:claim:repository:org/x", "oidc:claim:ref:refs/heads/main")).Denials);
        // Attack: an agent whose workload reports the same oidc: selectors (its own entry for the deployer ID) gets no
        // oidc record: denied.
        var onAgent = await h.EntryAsync("spiffe://example.org/deployer", "unix:uid:1000");
        Assert.Equal(Reason, Assert.Single((await LoginAsync(h.Node, onAgent, "unix:uid:1000", Iss, "oidc:claim:repository:org/x", "oidc:claim:ref:refs/heads/main")).Denials).Reason);
    }

    [Fact]
    public async Task Only_the_prod_daemonset_attests_k8s_psat_agents()
    {
        await using var h = await WithAsync("k8s-psat-agents.cedar");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var n = 0;
        async Task<NodeOutcome> AttestAsync(string type, params string[] selectors) => await h.Pipeline.AttestNodeAsync(
            new NodeFacts($"spiffe://example.org/writ/agent/{type}/prod/node-{++n}", type, selectors, []), new PublicKey(key), renewal: false, Ct);
        string[] good = ["k8s_psat:cluster:prod", "k8s_psat:agent_ns:writ-system", "k8s_psat:agent_sa:writ-agent", "k8s_psat:agent_node_name:node-1"];

        Assert.NotNull((await AttestAsync("k8s_psat", good)).Chain);
        var staging = await AttestAsync("k8s_psat", "k8s_psat:cluster:staging", "k8s_psat:agent_ns:writ-system", "k8s_psat:agent_sa:writ-agent");
        Assert.Null(staging.Chain);
        Assert.Equal("denied by policy 'k8s-agents-prod-daemonset-only'", staging.Decision.Reason);
        // Another service account of the cluster (a pod that was given a token with audience writ).
        Assert.Null((await AttestAsync("k8s_psat", "k8s_psat:cluster:prod", "k8s_psat:agent_ns:default", "k8s_psat:agent_sa:writ-agent")).Chain);
        Assert.Null((await AttestAsync("k8s_psat", "k8s_psat:cluster:prod", "k8s_psat:agent_ns:writ-system", "k8s_psat:agent_sa:default")).Chain);
        // Two clusters at once is no cluster.
        Assert.Null((await AttestAsync("k8s_psat", [.. good, "k8s_psat:cluster:staging"])).Chain);
        Assert.Null((await AttestAsync("k8s_psat")).Chain);
        // Other attestation methods are untouched.
        Assert.NotNull((await AttestAsync("join_token", "join_token:t9")).Chain);
    }

    [Fact]
    public async Task Outage_pools_are_signed_only_for_pooled_paths()
    {
        await using var h = await WithAsync("outage-pool.cedar");
        async Task<RegistrationEntry> PooledAsync(string id) =>
            await h.Store.Entries.UpdateAsync((await h.EntryAsync(id, "unix:uid:1000")) with { OutagePool = 1, Revision = 0 }, Ct);
        var pooled = await PooledAsync("spiffe://example.org/pooled/web");
        var other = await PooledAsync("spiffe://example.org/web");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        Assert.Single(await h.Pipeline.SignPooledX509Async(h.Node, pooled.Id, [Csr.Create(key)], Ct));
        var denied = await Assert.ThrowsAsync<Writ.Protocol.Errors.WritException>(() => h.Pipeline.SignPooledX509Async(h.Node, other.Id, [Csr.Create(key)], Ct));
        Assert.Equal(IssuanceErrors.Denied, denied.Code);
        // The permit is for the pool only: per-instance issuance stays as the default set has it.
        Assert.Single((await h.SignAsync(other, PipelineHarness.Evidence("10:9", "unix:uid:1000"))).Issued);
    }
}
