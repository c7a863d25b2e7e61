using System.Text.Json;
using k8s;
using k8s.KubeConfigModels;
using k8s.Models;
using Microsoft.AspNetCore.Http;
using Writ.Cli.Commands;
using Writ.IntegrationTests.Harness;
using Writ.Tests.Shared;

namespace Writ.IntegrationTests;

/// <summary>
/// deploy/kubernetes/ (issue #15): every manifest loads strictly into the official KubernetesClient models; the pieces
/// agree with each other (the agent's projected token audience is the one the server's k8s_clusters entry expects, the
/// DaemonSet's service account is the one it allows, the socket the agent serves is the one the demo mounts); every
/// container runs `writ` with flags the CLI has; the server's config passes `writ server validate`; and kubectl's
/// client-side dry run accepts the directory, against a loopback API server that serves the discovery documents.
/// </summary>
public sealed class KubernetesManifestsTests
{
    private static readonly string Dir = Path.Combine(Repo.Root, "deploy", "kubernetes");

    private static List<object> All() =>
        [.. Directory.GetFiles(Dir, "*.yaml").Order(StringComparer.Ordinal).SelectMany(f => KubernetesYaml.LoadAllFromString(File.ReadAllText(f), null, strict: true))];

    private static T One<T>(string name) => Assert.Single(All().OfType<T>(), o => ((IMetadata<V1ObjectMeta>)o!).Metadata.Name == name);

    private static JsonElement ServerConfig()
    {
        var text = One<V1ConfigMap>("writ-server-config").Data["server.json"];
        using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        return doc.RootElement.Clone();
    }

    /// <summary>The value after <paramref name="flag"/> in a container's args.</summary>
    private static string Arg(V1Container c, string flag)
    {
        var i = c.Args.IndexOf(flag);
        Assert.True(i >= 0 && i + 1 < c.Args.Count, $"{c.Name} has no {flag} VALUE");
        return c.Args[i + 1];
    }

    [Fact]
    public void Every_manifest_loads_strictly_into_the_Kubernetes_models()
    {
        var kinds = All().Select(o => ((IKubernetesObject)o).Kind + "/" + ((IMetadata<V1ObjectMeta>)o).Metadata.Name).Order(StringComparer.Ordinal).ToList();
        Assert.Equal([
            "ClusterRole/writ-agent", "ClusterRole/writ-server", "ClusterRoleBinding/writ-agent", "ClusterRoleBinding/writ-server",
            "ConfigMap/writ-server-config", "DaemonSet/writ-agent", "Deployment/orders", "Namespace/demo", "Namespace/writ-system",
            "Service/writ-server", "ServiceAccount/orders", "ServiceAccount/writ-agent", "ServiceAccount/writ-server", "StatefulSet/writ-server",
        ], kinds);

        // Strict loading is what catches a misspelt field: prove it does.
        var typo = File.ReadAllText(Path.Combine(Dir, "30-agent.yaml")).Replace("hostPID:", "hostPid:", StringComparison.Ordinal);
        Assert.ThrowsAny<Exception>(() => KubernetesYaml.LoadAllFromString(typo, null, strict: true));
    }

    [Fact]
    public void The_agent_attests_with_the_token_the_server_expects()
    {
        var ds = One<V1DaemonSet>("writ-agent");
        var pod = ds.Spec.Template.Spec;
        var agent = Assert.Single(pod.Containers);
        Assert.True(pod.HostPID, "the agent needs the host's PID namespace to see workloads' processes");
        Assert.True(pod.HostNetwork);
        Assert.Equal("ClusterFirstWithHostNet", pod.DnsPolicy);   // the server's Service name must resolve on the host network

        // The cluster the agent names is one the server knows, with the audience the projected token is minted for.
        var clusterName = Arg(agent, "--k8s-psat-cluster");
        var cluster = Assert.Single(ServerConfig().GetProperty("k8s_clusters").EnumerateArray(), c => c.GetProperty("name").GetString() == clusterName);
        var audience = cluster.TryGetProperty("audience", out var a) ? a.GetString() : "writ";
        var tokenPath = Arg(agent, "--k8s-psat-token-path");
        var mount = Assert.Single(agent.VolumeMounts, m => tokenPath.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
        var projected = Assert.Single(pod.Volumes, v => v.Name == mount.Name).Projected;
        var token = Assert.Single(projected.Sources, s => s.ServiceAccountToken is not null).ServiceAccountToken;
        Assert.Equal(audience, token.Audience);
        Assert.Equal(tokenPath, mount.MountPath + "/" + token.Path);
        Assert.InRange(token.ExpirationSeconds ?? 0, 600, 24 * 3600);

        // The server admits the DaemonSet's service account, and nothing else of the cluster.
        var sa = $"{ds.Metadata.NamespaceProperty}:{pod.ServiceAccountName}";
        Assert.Equal([sa], cluster.GetProperty("service_accounts").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["node_attestor=k8s_psat", "workload_attestors=unix,cgroup,k8s"],
            new[] { "node_attestor=" + Arg(agent, "--node-attestor"), "workload_attestors=" + Arg(agent, "--workload-attestors") });

        // The node name comes from the downward API, and the server address is the Service's.
        Assert.Equal("$(NODE_NAME)", Arg(agent, "--k8s-node-name"));
        Assert.Equal("spec.nodeName", Assert.Single(agent.Env, e => e.Name == "NODE_NAME").ValueFrom.FieldRef.FieldPath);
        var service = One<V1Service>("writ-server");
        Assert.Equal($"{service.Metadata.Name}.{service.Metadata.NamespaceProperty}.svc:{Assert.Single(service.Spec.Ports).Port}", Arg(agent, "--server"));
        Assert.Equal(ServerConfig().GetProperty("bind").GetString()!.Split(':')[1], Assert.Single(service.Spec.Ports).Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void The_demo_mounts_the_socket_the_agent_serves()
    {
        var ds = One<V1DaemonSet>("writ-agent").Spec.Template.Spec;
        var agent = Assert.Single(ds.Containers);
        var socket = Arg(agent, "--socket");
        var agentMount = Assert.Single(agent.VolumeMounts, m => socket.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
        var hostDir = Assert.Single(ds.Volumes, v => v.Name == agentMount.Name).HostPath.Path;

        var demo = One<V1Deployment>("orders").Spec.Template.Spec;
        var app = Assert.Single(demo.Containers);
        var endpoint = Assert.Single(app.Env, e => e.Name == "SPIFFE_ENDPOINT_SOCKET").Value;
        Assert.StartsWith("unix://", endpoint, StringComparison.Ordinal);
        var path = endpoint["unix://".Length..];
        var appMount = Assert.Single(app.VolumeMounts, m => path.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
        Assert.True(appMount.ReadOnlyProperty);
        Assert.Equal(hostDir, Assert.Single(demo.Volumes, v => v.Name == appMount.Name).HostPath.Path);
        Assert.Equal(Path.GetFileName(socket), Path.GetFileName(path));
        Assert.Equal("demo", One<V1Deployment>("orders").Metadata.NamespaceProperty);
        Assert.Equal("orders", demo.ServiceAccountName);
    }

    [Fact]
    public void Every_container_runs_writ_with_flags_the_cli_has()
    {
        var commands = AllCommands.Build();
        var containers = All().OfType<V1StatefulSet>().Select(s => s.Spec.Template.Spec)
            .Concat(All().OfType<V1DaemonSet>().Select(d => d.Spec.Template.Spec))
            .Concat(All().OfType<V1Deployment>().Select(d => d.Spec.Template.Spec))
            .SelectMany(p => p.Containers).ToList();
        Assert.Equal(3, containers.Count);
        foreach (var c in containers)
        {
            Assert.Equal(["/usr/local/bin/writ"], c.Command);
            var command = commands.Where(k => c.Args.Take(k.Words.Length).SequenceEqual(k.Words)).MaxBy(k => k.Words.Length);
            Assert.True(command is not null, $"{c.Name}: 'writ {string.Join(' ', c.Args)}' is no writ command");
            var rest = c.Args.Skip(command!.Words.Length).ToList();
            for (var i = 0; i < rest.Count; i++)
            {
                Assert.True(rest[i].StartsWith("--", StringComparison.Ordinal), $"{c.Name}: '{rest[i]}' is not a flag");
                var option = command.FindOption(rest[i][2..]);
                Assert.True(option is not null, $"{c.Name}: 'writ {command.Path}' has no flag {rest[i]}");
                if (!option!.IsFlag)
                    i++;
            }
        }
        // The check itself can fail: a flag the agent does not have.
        Assert.Null(commands.Single(k => k.Path == "agent run").FindOption("k8s-psat-audience"));
    }

    [Fact]
    public async Task The_server_config_passes_writ_server_validate()
    {
        using var dir = new TempDir();
        var file = dir["server.json"];
        await File.WriteAllTextAsync(file, One<V1ConfigMap>("writ-server-config").Data["server.json"], TestContext.Current.CancellationToken);
        var r = await Proc.WritAsync(["server", "validate", "--config", file]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("trust domain example.org", r.Stdout, StringComparison.Ordinal);

        // The mount paths the config names are the StatefulSet's.
        var server = Assert.Single(One<V1StatefulSet>("writ-server").Spec.Template.Spec.Containers);
        var config = ServerConfig();
        Assert.Contains(server.VolumeMounts, m => config.GetProperty("data_dir").GetString()!.StartsWith(m.MountPath + "/", StringComparison.Ordinal) && m.Name == "data");
        Assert.Contains(server.VolumeMounts, m => config.GetProperty("admin_socket").GetString()!.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
        Assert.Equal(config.GetProperty("admin_socket").GetString(), Assert.Single(server.Env, e => e.Name == "WRIT_ADMIN_SOCKET").Value);
        Assert.Equal("/etc/writ/server.json", Arg(server, "--config"));
        Assert.Contains(server.VolumeMounts, m => m.MountPath == "/etc/writ" && m.Name == "config");
    }

    [Fact]
    public void Rbac_grants_what_token_review_and_the_kubelet_need_and_no_more()
    {
        var serverRules = One<V1ClusterRole>("writ-server").Rules;
        Assert.Contains(serverRules, r => r.ApiGroups.Contains("authentication.k8s.io") && r.Resources.Contains("tokenreviews") && r.Verbs.SequenceEqual(["create"]));
        Assert.Contains(serverRules, r => r.ApiGroups.Contains("") && r.Resources.Contains("pods") && r.Resources.Contains("nodes") && r.Verbs.SequenceEqual(["get"]));
        var agentRule = Assert.Single(One<V1ClusterRole>("writ-agent").Rules);
        Assert.Equal(["get"], agentRule.Verbs);
        // nodes/pods is what the kubelet checks for GET /pods (1.33+). nodes/proxy would let a token stolen from any one
        // node's agent exec into every pod of every node through the kubelets (the role is cluster-wide): never by default.
        Assert.Equal(["nodes/pods"], agentRule.Resources);
        foreach (var role in All().OfType<V1ClusterRole>())
            Assert.DoesNotContain(role.Rules, r => r.Verbs.Contains("*") || r.Resources.Contains("*") || r.Resources.Contains("secrets") || r.Resources.Contains("nodes/proxy"));
        foreach (var name in new[] { "writ-server", "writ-agent" })
        {
            var binding = One<V1ClusterRoleBinding>(name);
            Assert.Equal(name, binding.RoleRef.Name);
            var subject = Assert.Single(binding.Subjects);
            Assert.Equal(("ServiceAccount", name, "writ-system"), (subject.Kind, subject.Name, subject.NamespaceProperty));
        }
        Assert.Equal("writ-server", One<V1StatefulSet>("writ-server").Spec.Template.Spec.ServiceAccountName);
    }

    [Fact]
    public async Task Kubectl_client_dry_run_accepts_the_directory()
    {
        var kubectl = new[] { "/usr/bin/kubectl", "/usr/local/bin/kubectl" }.FirstOrDefault(File.Exists);
        Assert.SkipWhen(kubectl is null, "kubectl is not installed (Debian package kubernetes-client): the client-side dry run cannot run");
        using var dir = new TempDir();
        await using var api = await LoopbackHttps.StartAsync(dir.Path, name: "kube-apiserver");
        var writes = 0;
        api.Handler = ctx =>
        {
            if (ctx.Request.Method != "GET")
                Interlocked.Increment(ref writes);
            return ServeDiscovery(ctx);
        };
        var kubeconfig = dir["kubeconfig"];
        await File.WriteAllTextAsync(kubeconfig, KubernetesYaml.Serialize(new K8SConfiguration
        {
            ApiVersion = "v1",
            Kind = "Config",
            CurrentContext = "test",
            Clusters = [new Cluster { Name = "test", ClusterEndpoint = new ClusterEndpoint { Server = api.BaseUri.ToString(), CertificateAuthority = api.CaPemPath } }],
            Users = [new User { Name = "test", UserCredentials = new UserCredentials { Token = "dry-run" } }],
            Contexts = [new Context { Name = "test", ContextDetails = new ContextDetails { Cluster = "test", User = "test" } }],
        }), TestContext.Current.CancellationToken);

        var r = await Proc.RunAsync(kubectl!, ["--kubeconfig", kubeconfig, "apply", "--dry-run=client", "--validate=false", "-f", Dir],
            env: new Dictionary<string, string?> { ["HOME"] = dir.Path, ["KUBECACHEDIR"] = dir["cache"] });
        Assert.True(r.ExitCode == 0, r.ToString());
        var created = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(All().Count, created.Count(l => l.EndsWith(" created (dry run)", StringComparison.Ordinal)));
        Assert.Contains("daemonset.apps/writ-agent created (dry run)", created);
        // Nothing was written: a client-side dry run only reads.
        Assert.Equal(0, Volatile.Read(ref writes));
        Assert.Contains(api.Log, p => p.StartsWith("/apis/apps/v1/namespaces/writ-system/daemonsets/writ-agent", StringComparison.Ordinal));
    }

    /// <summary>The Kubernetes API's discovery documents for the kinds in deploy/kubernetes/, and 404 for every object.</summary>
    private static async Task ServeDiscovery(HttpContext ctx)
    {
        if (ctx.Request.Method != "GET")
        {
            ctx.Response.StatusCode = 405;
            return;
        }
        static V1APIResource R(string name, string kind, bool namespaced) =>
            new() { Name = name, SingularName = kind.ToLowerInvariant(), Kind = kind, Namespaced = namespaced, Verbs = ["create", "get", "list", "patch", "update", "delete"] };
        static V1GroupVersionForDiscovery Gv(string g) => new() { GroupVersion = g + "/v1", Version = "v1" };
        object? body = ctx.Request.Path.Value switch
        {
            "/api" => new V1APIVersions { Kind = "APIVersions", Versions = ["v1"], ServerAddressByClientCIDRs = [] },
            "/apis" => new V1APIGroupList
            {
                Kind = "APIGroupList", ApiVersion = "v1",
                Groups = [.. new[] { "apps", "rbac.authorization.k8s.io" }.Select(g => new V1APIGroup { Name = g, Versions = [Gv(g)], PreferredVersion = Gv(g) })],
            },
            "/api/v1" => new V1APIResourceList
            {
                Kind = "APIResourceList", GroupVersion = "v1",
                Resources = [R("namespaces", "Namespace", false), R("serviceaccounts", "ServiceAccount", true), R("configmaps", "ConfigMap", true), R("services", "Service", true)],
            },
            "/apis/apps/v1" => new V1APIResourceList
            {
                Kind = "APIResourceList", GroupVersion = "apps/v1",
                Resources = [R("statefulsets", "StatefulSet", true), R("daemonsets", "DaemonSet", true), R("deployments", "Deployment", true)],
            },
            "/apis/rbac.authorization.k8s.io/v1" => new V1APIResourceList
            {
                Kind = "APIResourceList", GroupVersion = "rbac.authorization.k8s.io/v1",
                Resources = [R("clusterroles", "ClusterRole", false), R("clusterrolebindings", "ClusterRoleBinding", false)],
            },
            _ => null,
        };
        if (body is null)
        {
            // No such object (the client reads NotFound from the status code; KubernetesClient cannot write a V1Status).
            ctx.Response.StatusCode = 404;
            return;
        }
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(KubernetesJson.Serialize(body));
    }
}
