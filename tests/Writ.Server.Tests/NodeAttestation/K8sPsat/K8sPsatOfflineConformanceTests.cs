using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.NodeAttestation;
using Writ.Server.NodeAttestation.K8sPsat;
using Writ.Server.Oidc;
using Writ.Server.Storage;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.NodeAttestation.K8sPsat;

/// <summary>
/// The node attestor conformance suite for <c>k8s_psat</c> validating offline against the cluster's service-account
/// issuer (discovery + JWKS on loopback HTTPS, through the real <see cref="OidcTokenValidator"/>), with tokens carrying the
/// claims of a bound projected token; plus the token attacks, each refused with its code and the OIDC code in the message.
/// A second cluster ("lab") has its own issuer: its tokens attest its agents only.
/// </summary>
public class K8sPsatOfflineConformanceTests(K8sTestClusterFixture fixture) : NodeAttestorConformance, IClassFixture<K8sTestClusterFixture>
{
    private const string Type = K8sPsatNodeAttestor.TypeName;
    private const string ClusterName = "prod-eu";
    private const string LabName = "lab";

    private K8sTestCluster Cluster => fixture.Cluster;

    protected override bool SingleUse => false;

    protected override DateTimeOffset? ClockStart => DateTimeOffset.UtcNow;

    private static JsonObject Offline(string name, OidcTestIssuer issuer) => new()
    {
        ["name"] = name,
        ["service_accounts"] = new JsonArray("writ:writ-agent"),
        ["issuer"] = issuer.Issuer,
        ["ca_file"] = issuer.CaPemPath,
    };

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time)
    {
        Cluster.Issuer.FailWith = null;
        var options = K8sTestCluster.Options(Offline(ClusterName, Cluster.Issuer), Offline(LabName, fixture.OtherIssuer));
        return K8sPsatNodeAttestor.Create(options, new OidcTokenValidator(time, NullLogger.Instance), NullLogger.Instance);
    }

    private static AgentEvidence Make(string token, string cluster = ClusterName) => new(K8sTestCluster.Evidence(cluster, token));

    protected override Task<AgentEvidence> ValidEvidenceAsync() => Task.FromResult(Make(Cluster.OfflineToken(Cluster.AddPod())));

    /// <summary>A valid token of the lab cluster's issuer naming this cluster.</summary>
    protected override Task<AgentEvidence> ForeignTrustDomainEvidenceAsync() =>
        Task.FromResult(Make(Cluster.OfflineToken(Cluster.AddPod(), issuer: fixture.OtherIssuer)));

    protected override Task<AgentEvidence?> ExpiredEvidenceAsync() =>
        Task.FromResult<AgentEvidence?>(Make(Cluster.OfflineToken(Cluster.AddPod(), issuedAt: DateTimeOffset.UtcNow.AddHours(-2))));

    protected override Task<AgentEvidence?> NotYetValidEvidenceAsync() =>
        Task.FromResult<AgentEvidence?>(Make(Cluster.OfflineToken(Cluster.AddPod(), issuedAt: DateTimeOffset.UtcNow.AddHours(1))));

    private async Task<AttestOutcome> RefusedAsync(AgentEvidence evidence, string code, string? oidcCode = null, int nodesBefore = 0)
    {
        var outcome = await AttestAsync(Type, evidence);
        Assert.False(outcome.Attested, $"attested {outcome.AgentId}, expected {code}");
        Assert.True(code == outcome.Code, $"expected {code}, got {outcome.Code}: {outcome.Message}");
        Assert.DoesNotContain('\n', outcome.Message!);
        if (oidcCode is not null)
        {
            Assert.Contains($"({oidcCode}: ", outcome.Message, StringComparison.Ordinal);
        }
        Assert.Equal(nodesBefore, (await H.Store.Nodes.ListAsync(Ct)).Count);
        return outcome;
    }

    [Fact]
    public async Task A_bound_token_attests_its_node_with_the_node_uid_id_and_the_pod_selectors()
    {
        var pod = Cluster.AddPod();
        var outcome = await AttestAsync(Type, Make(Cluster.OfflineToken(pod)));
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        Assert.Equal($"spiffe://example.org/writ/agent/k8s_psat/{ClusterName}/{pod.NodeUid}", outcome.AgentId);
        var node = Assert.Single(await H.Store.Nodes.ListAsync(Ct));
        Assert.Equal(
            new[]
            {
                $"k8s_psat:agent_node_name:{pod.NodeName}",
                $"k8s_psat:agent_node_uid:{pod.NodeUid}",
                "k8s_psat:agent_ns:writ",
                $"k8s_psat:agent_pod_name:{pod.Name}",
                $"k8s_psat:agent_pod_uid:{pod.Uid}",
                "k8s_psat:agent_sa:writ-agent",
                $"k8s_psat:cluster:{ClusterName}",
            },
            node.Selectors.Select(s => s.ToString()).Order(StringComparer.Ordinal));
        Assert.Equal([$"spiffe://example.org/writ/agent/k8s_psat/{ClusterName}"], node.Aliases);
    }

    [Fact]
    public async Task Re_attestation_from_the_same_node_keeps_the_agent_id_and_another_node_uid_gets_another()
    {
        var first = Cluster.AddPod();
        var a = await AttestAsync(Type, Make(Cluster.OfflineToken(first)));
        Assert.True(a.Attested, $"{a.Code}: {a.Message}");
        var restarted = Cluster.AddPod(nodeName: first.NodeName);
        var b = await AttestAsync(Type, Make(Cluster.OfflineToken(restarted)));
        Assert.True(b.Attested, $"{b.Code}: {b.Message}");
        Assert.Equal(a.AgentId, b.AgentId);
        var c = await AttestAsync(Type, Make(Cluster.OfflineToken(Cluster.AddPod())));
        Assert.True(c.Attested, $"{c.Code}: {c.Message}");
        Assert.NotEqual(a.AgentId, c.AgentId);
        Assert.Equal(2, (await H.Store.Nodes.ListAsync(Ct)).Count);
    }

    [Fact]
    public async Task Attack_a_token_for_another_audience_is_refused() =>
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(), audience: K8sTestCluster.ApiAudience)), K8sPsatCodes.TokenInvalid, OidcErrors.WrongAudience);

    [Fact]
    public async Task Attack_an_expired_or_not_yet_valid_token_is_refused()
    {
        await RefusedAsync((await ExpiredEvidenceAsync())!, K8sPsatCodes.TokenInvalid, OidcErrors.Expired);
        await RefusedAsync((await NotYetValidEvidenceAsync())!, K8sPsatCodes.TokenInvalid);
    }

    [Fact]
    public async Task Attack_a_token_of_an_unknown_issuer_or_of_another_clusters_issuer_naming_this_cluster_is_refused()
    {
        var pod = Cluster.AddPod();
        var lab = Cluster.OfflineToken(pod, issuer: fixture.OtherIssuer);
        await RefusedAsync(Make(lab), K8sPsatCodes.TokenInvalid, OidcErrors.WrongIssuer);
        // The same token attests as the cluster whose issuer signed it.
        var outcome = await AttestAsync(Type, Make(lab, LabName));
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        Assert.Equal($"spiffe://example.org/writ/agent/k8s_psat/{LabName}/{pod.NodeUid}", outcome.AgentId);
    }

    [Fact]
    public async Task Attack_the_token_that_attested_a_node_with_its_ECDSA_signature_re_encoded_does_not_attest_it_again()
    {
        // For an ECDSA signature (r, s), (r, n - s) verifies too: another text, the same token. Recognised by what the
        // issuer signed, not by the token's text.
        var pod = Cluster.AddPod();
        var token = Cluster.OfflineToken(pod, key: Cluster.Issuer.AddKey("ES256"));   // a cluster signing with ECDSA (published)
        Assert.Equal("ES256", System.Text.Json.JsonDocument.Parse(Base64Url(token.Split('.')[0])).RootElement.GetProperty("alg").GetString());
        Assert.True((await AttestAsync(Type, Make(token))).Attested);
        var parts = token.Split('.');
        var copy = $"{parts[0]}.{parts[1]}.{HighS(parts[2])}";
        Assert.NotEqual(token, copy);
        var outcome = await RefusedAsync(Make(copy), NodeAttestationCodes.NodeExists, nodesBefore: 1);
        Assert.Contains("already attested", outcome.Message, StringComparison.Ordinal);
    }

    private static readonly System.Numerics.BigInteger P256Order =
        System.Numerics.BigInteger.Parse("0FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", System.Globalization.NumberStyles.HexNumber);

    private static byte[] Base64Url(string s) => Convert.FromBase64String(s.Replace('-', '+').Replace('_', '/') + new string('=', (4 - s.Length % 4) % 4));

    private static string HighS(string signature)
    {
        var sig = Base64Url(signature);
        Assert.Equal(64, sig.Length);
        var s = new System.Numerics.BigInteger(sig.AsSpan(32), isUnsigned: true, isBigEndian: true);
        var flipped = (P256Order - s).ToByteArray(isUnsigned: true, isBigEndian: true);
        var result = new byte[64];
        sig.AsSpan(0, 32).CopyTo(result);
        flipped.CopyTo(result.AsSpan(64 - flipped.Length));
        return OidcTestIssuer.B64(result);
    }

    [Fact]
    public async Task Attack_a_token_signed_by_a_key_not_in_the_JWKS_is_refused()
    {
        var rogue = Cluster.Issuer.AddKey("RS256", publish: false);
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(), key: rogue)), K8sPsatCodes.TokenInvalid, OidcErrors.UnknownKey);
    }

    [Fact]
    public async Task Attack_an_unsigned_or_HS256_token_is_refused()
    {
        var claims = Cluster.OfflineClaims(Cluster.AddPod());
        await RefusedAsync(Make(OidcTestIssuer.MintUnsigned(claims)), K8sPsatCodes.TokenInvalid, OidcErrors.AlgRefused);
        await RefusedAsync(Make(OidcTestIssuer.MintHs256(claims, Encoding.UTF8.GetBytes(Cluster.Issuer.Current.PublicPem), Cluster.Issuer.Current.Kid)),
            K8sPsatCodes.TokenInvalid, OidcErrors.AlgRefused);
    }

    [Fact]
    public async Task Attack_a_service_account_not_in_the_list_is_refused()
    {
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(ns: "default", sa: "default"))), K8sPsatCodes.ServiceAccountNotAllowed);
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(ns: "kube-system", sa: "writ-agent"))), K8sPsatCodes.ServiceAccountNotAllowed);
    }

    [Fact]
    public async Task Attack_a_token_not_bound_to_a_pod_or_a_legacy_secret_token_is_refused()
    {
        // kubectl create token: a bound token without a pod.
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(), podBound: false)), K8sPsatCodes.NotPodBound);
        // A legacy secret-based token: issuer kubernetes/serviceaccount, no audience, no expiry, flat claims.
        var pod = Cluster.AddPod();
        var legacy = new JsonObject
        {
            ["iss"] = "kubernetes/serviceaccount",
            ["kubernetes.io/serviceaccount/namespace"] = pod.Namespace,
            ["kubernetes.io/serviceaccount/secret.name"] = "writ-agent-token-x7k2p",
            ["kubernetes.io/serviceaccount/service-account.name"] = pod.ServiceAccount,
            ["kubernetes.io/serviceaccount/service-account.uid"] = pod.ServiceAccountUid,
            ["sub"] = $"system:serviceaccount:{pod.Namespace}:{pod.ServiceAccount}",
        };
        await RefusedAsync(Make(Cluster.Issuer.Mint(legacy)), K8sPsatCodes.TokenInvalid, OidcErrors.WrongIssuer);
        // A token of the right issuer whose kubernetes.io claim is missing.
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(), extra: new Dictionary<string, object?> { ["kubernetes.io"] = null })), K8sPsatCodes.NotPodBound);
    }

    [Fact]
    public async Task Attack_a_token_whose_subject_is_not_its_service_account_is_refused() =>
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(), extra: new Dictionary<string, object?> { ["sub"] = "system:serviceaccount:kube-system:admin" })),
            K8sPsatCodes.TokenInvalid);

    [Fact]
    public async Task A_token_without_the_node_claim_is_refused_offline_saying_what_to_enable()
    {
        var outcome = await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(), nodeInfo: false)), K8sPsatCodes.NoNodeUid);
        Assert.Contains("ServiceAccountTokenPodNodeInfo", outcome.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_configured_server_validates_offline_clusters_with_an_OIDC_validator_of_its_own()
    {
        var options = K8sTestCluster.Options(Offline(ClusterName, Cluster.Issuer));
        var registry = NodeAttestationService.ConfiguredRegistry(H.Store, H.Server.Options with { K8sPsat = options }, time: H.Ca.Time);
        H.Use(TestLimits, registry.Get(Type));
        var outcome = await AttestAsync(Type, await ValidEvidenceAsync());
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        await RefusedAsync(Make(Cluster.OfflineToken(Cluster.AddPod(), issuer: fixture.OtherIssuer)), K8sPsatCodes.TokenInvalid, OidcErrors.WrongIssuer, nodesBefore: 1);
    }

    [Fact]
    public async Task An_issuer_that_is_down_is_unavailable_and_stores_nothing()
    {
        Cluster.Issuer.FailWith = 503;
        await RefusedAsync(await ValidEvidenceAsync(), K8sPsatCodes.Unavailable);
        Cluster.Issuer.FailWith = null;
    }
}

/// <summary>The same suite and attacks through the real gRPC AttestAgent stream.</summary>
public sealed class K8sPsatOfflineEndToEndTests(K8sTestClusterFixture fixture) : K8sPsatOfflineConformanceTests(fixture)
{
    private protected override Task OnStartedAsync() => H.StartGrpcAsync();

    private protected override Task<AttestOutcome> AttestAsync(string type, AgentEvidence evidence) => AttestOverGrpcAsync(H.Client!, type, evidence);
}
