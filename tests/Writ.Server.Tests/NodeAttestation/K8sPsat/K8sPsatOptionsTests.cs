using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Configuration;
using Writ.Server.NodeAttestation.K8sPsat;

namespace Writ.Server.Tests.NodeAttestation.K8sPsat;

/// <summary><c>k8s_clusters</c>: what a valid list gives, and every malformed cluster refused with its code, index and field.</summary>
public sealed class K8sPsatOptionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-k8spsat-options-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string FileIn(string name, string text = "")
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static (K8sPsatOptions Options, List<string> Errors) Build(string json)
    {
        var c = new ConfigSources(K8sPsatOptions.Keys);
        c.Set("k8s_clusters", json, "--k8s-clusters");
        return (K8sPsatOptions.Build(c), c.Errors);
    }

    [Fact]
    public void Unset_is_disabled_and_a_valid_list_gives_its_clusters_with_defaults()
    {
        Assert.False(K8sPsatOptions.Build(new ConfigSources(K8sPsatOptions.Keys)).Enabled);
        var ca = FileIn("issuer-ca.pem");
        var kubeconfig = FileIn("dev.kubeconfig");
        var (options, errors) = Build($$"""
            [
              {"name": "prod-eu", "service_accounts": ["writ:writ-agent"], "issuer": "https://oidc.prod.example/cluster", "ca_file": "{{ca}}"},
              {"name": "dev", "service_accounts": ["writ:writ-agent", "infra:agent"], "audience": "writ-dev", "kubeconfig": "{{kubeconfig}}",
               "node_label_keys": ["topology.kubernetes.io/zone", "node-role"]},
              {"name": "local", "service_accounts": ["writ:writ-agent"], "in_cluster": true}
            ]
            """);
        Assert.Empty(errors);
        Assert.True(options.Enabled);
        Assert.Equal(["prod-eu", "dev", "local"], options.Clusters.Select(c => c.Name));
        var prod = options.Clusters[0];
        Assert.Equal("writ", prod.Audience);
        Assert.False(prod.UsesApi);
        Assert.Equal("https://oidc.prod.example/cluster", prod.IssuerConfig!.Issuer);
        Assert.Equal(["writ"], prod.IssuerConfig.Audiences);
        Assert.Equal(ca, prod.IssuerConfig.CaFile);
        var dev = options.Clusters[1];
        Assert.True(dev.UsesApi);
        Assert.Null(dev.IssuerConfig);
        Assert.Equal("writ-dev", dev.Audience);
        Assert.Equal(["topology.kubernetes.io/zone", "node-role"], dev.NodeLabelKeys);
        Assert.True(options.Clusters[2].InCluster);
    }

    [Theory]
    [InlineData("{}", K8sPsatCodes.ConfigClusters, "must be a JSON list")]
    [InlineData("[1]", K8sPsatCodes.ConfigClusters, "[0] must be a JSON object")]
    [InlineData("""[{"service_accounts": ["a:b"], "in_cluster": true}]""", K8sPsatCodes.ConfigName, "[0].name is missing")]
    [InlineData("""[{"name": "Prod_EU", "service_accounts": ["a:b"], "in_cluster": true}]""", K8sPsatCodes.ConfigName, "[0].name 'Prod_EU'")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": true}, {"name": "a", "service_accounts": ["a:b"], "in_cluster": true}]""", K8sPsatCodes.ConfigName, "[1].name 'a' names a cluster already configured")]
    [InlineData("""[{"name": "a", "in_cluster": true}]""", K8sPsatCodes.ConfigServiceAccounts, "[0].service_accounts must be a non-empty list")]
    [InlineData("""[{"name": "a", "service_accounts": [], "in_cluster": true}]""", K8sPsatCodes.ConfigServiceAccounts, "non-empty")]
    [InlineData("""[{"name": "a", "service_accounts": ["writ-agent"], "in_cluster": true}]""", K8sPsatCodes.ConfigServiceAccounts, "entry 'writ-agent'")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b:c"], "in_cluster": true}]""", K8sPsatCodes.ConfigServiceAccounts, "entry 'a:b:c'")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"]}]""", K8sPsatCodes.ConfigMode, "sets none")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": true, "issuer": "https://x.example"}]""", K8sPsatCodes.ConfigMode, "more than one")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "kubeconfig": "k", "in_cluster": true}]""", K8sPsatCodes.ConfigMode, "more than one")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "issuer": "http://x.example"}]""", K8sPsatCodes.ConfigIssuer, "[0].issuer 'http://x.example' is not an https URL")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": true, "jwks_uri": "https://x.example/jwks"}]""", K8sPsatCodes.ConfigIssuer, "only used with issuer")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "kubeconfig": "k", "ca_file": "ca.pem"}]""", K8sPsatCodes.ConfigIssuer, "only used with issuer")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "issuer": "https://x.example", "node_label_keys": ["zone"]}]""", K8sPsatCodes.ConfigNodeLabels, "needs the Kubernetes API")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": true, "node_label_keys": ["bad key"]}]""", K8sPsatCodes.ConfigNodeLabels, "'bad key' is not a Kubernetes label key")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": "yes"}]""", K8sPsatCodes.ConfigClusters, "[0].in_cluster must be true or false")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": true, "audience": ""}]""", K8sPsatCodes.ConfigAudience, "[0].audience")]
    // Attack: with the API server's own audience, the agent's default token (shown to the kubelet on every pod-list
    // request, and mounted in every pod of that service account) replayed to Writ would attest the node.
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "issuer": "https://x.example", "audience": "https://x.example/"}]""", K8sPsatCodes.ConfigAudience, "[0].audience 'https://x.example/' is the API server's own audience")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": true, "audience": "https://kubernetes.default.svc.cluster.local"}]""", K8sPsatCodes.ConfigAudience, "is the API server's own audience")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "in_cluster": true, "audiences": ["x"]}]""", K8sPsatCodes.ConfigClusters, "unknown field 'audiences'")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "kubeconfig": "/nonexistent/writ-test/kubeconfig"}]""", K8sPsatCodes.ConfigKubeconfig, "[0].kubeconfig '/nonexistent/writ-test/kubeconfig' does not exist")]
    [InlineData("""[{"name": "a", "service_accounts": ["a:b"], "issuer": "https://x.example", "ca_file": "/nonexistent/writ-test/ca.pem"}]""", K8sPsatCodes.ConfigIssuer, "[0].ca_file '/nonexistent/writ-test/ca.pem' does not exist")]
    public void A_malformed_cluster_is_refused_with_its_code_index_and_field(string json, string code, string says)
    {
        var (options, errors) = Build(json);
        Assert.Contains(errors, e => e.StartsWith(code + ": k8s_clusters", StringComparison.Ordinal) && e.Contains(says, StringComparison.Ordinal) && e.EndsWith(" (from --k8s-clusters)", StringComparison.Ordinal));
        Assert.All(errors, e => Assert.DoesNotContain('\n', e));
        // A cluster with an error is not configured (the start is refused anyway); of two with one name the first stays.
        Assert.Equal(says.Contains("already configured", StringComparison.Ordinal) ? 1 : 0, options.Clusters.Count);
    }

    [Fact]
    public void A_kubeconfig_that_cannot_be_loaded_refuses_the_start_with_its_code()
    {
        var kubeconfig = FileIn("broken.kubeconfig", "clusters: [ {name: \n");
        var (options, errors) = Build($$"""[{"name": "a", "service_accounts": ["a:b"], "kubeconfig": "{{kubeconfig}}"}]""");
        Assert.Empty(errors);
        var e = Assert.Throws<Writ.Protocol.StartupRefusedException>(() => K8sPsatNodeAttestor.Create(options, null, NullLogger.Instance));
        Assert.Equal(K8sPsatCodes.ApiConfig, e.Code);
        Assert.Contains($"kubeconfig '{kubeconfig}' cannot be used", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
