using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;

namespace Writ.Server.NodeAttestation.K8sPsat;

/// <summary>
/// One cluster's Kubernetes API as k8s_psat uses it (the official KubernetesClient): TokenReview, and GETs of the agent's
/// pod and node. A 404 of a GET is "gone" (null); every other failure (unreachable, TLS, 401/403 for the server's own
/// credentials, 5xx) is <see cref="K8sPsatCodes.Unavailable"/>, logged with the HTTP status only (a request carries the
/// agent's token, so no exception object is logged).
/// </summary>
public sealed class K8sPsatApi(IKubernetes client, string cluster, ILogger log) : IDisposable
{
    public string Cluster => cluster;

    /// <summary>Loads a kubeconfig file (its current context) or the in-cluster credentials; refuses the start on failure.</summary>
    public static K8sPsatApi Create(K8sPsatCluster c, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(c);
        KubernetesClientConfiguration config;
        try
        {
            config = c.Kubeconfig is { } path ? KubernetesClientConfiguration.BuildConfigFromConfigFile(path) : KubernetesClientConfiguration.InClusterConfig();
        }
        catch (Exception e) when (e is not OutOfMemoryException)   // KubeConfigException, IO, YAML, certificate errors: all refuse the start
        {
            var what = c.Kubeconfig is { } p ? $"kubeconfig '{p}' cannot be used" : "in_cluster credentials cannot be loaded (the server does not run in a pod with a service-account token)";
            throw new Writ.Protocol.StartupRefusedException(K8sPsatCodes.ApiConfig,
                $"k8s_clusters '{c.Name}': {what} ({e.GetType().Name}: {FirstLine(e.Message)}): give a readable kubeconfig with a current context, or run the server in the cluster");
        }
        // The API's answers decide which node an agent is (TokenReview), and its requests carry every agent's token and the
        // server's own credentials: a kubeconfig that would let whoever is on the network path answer is refused.
        if (config.SkipTlsVerify || !Uri.TryCreate(config.Host, UriKind.Absolute, out var host) || host.Scheme != Uri.UriSchemeHttps)
        {
            var why = config.SkipTlsVerify ? "sets insecure-skip-tls-verify" : "names an API server that is not https";
            throw new Writ.Protocol.StartupRefusedException(K8sPsatCodes.ApiConfig,
                $"k8s_clusters '{c.Name}': kubeconfig '{c.Kubeconfig}' {why}, so anyone on the network path could answer TokenReview for any node and receive the agents' tokens: give the https server with the cluster's CA (certificate-authority or certificate-authority-data)");
        }
        return new K8sPsatApi(new Kubernetes(config), c.Name, log);
    }

    /// <summary>Asks the API server whether <paramref name="token"/> is valid for <paramref name="audience"/>.</summary>
    public async Task<V1TokenReview> ReviewAsync(string token, string audience, CancellationToken ct)
    {
        var review = new V1TokenReview
        {
            ApiVersion = "authentication.k8s.io/v1",
            Kind = "TokenReview",
            Spec = new V1TokenReviewSpec { Token = token, Audiences = [audience] },
        };
        return await CallAsync("create tokenreviews", notFoundIsNull: false, () => client.AuthenticationV1.CreateTokenReviewAsync(review, cancellationToken: ct), ct).ConfigureAwait(false)
            ?? throw Unavailable("create tokenreviews", "an empty answer");
    }

    /// <summary>The pod, or null when it does not exist.</summary>
    public Task<V1Pod?> PodAsync(string ns, string name, CancellationToken ct) =>
        CallAsync("get pods", notFoundIsNull: true, () => client.CoreV1.ReadNamespacedPodAsync(name, ns, cancellationToken: ct), ct);

    /// <summary>The node, or null when it does not exist.</summary>
    public Task<V1Node?> NodeAsync(string name, CancellationToken ct) =>
        CallAsync("get nodes", notFoundIsNull: true, () => client.CoreV1.ReadNodeAsync(name, cancellationToken: ct), ct);

    private async Task<T?> CallAsync<T>(string call, bool notFoundIsNull, Func<Task<T>> run, CancellationToken ct) where T : class
    {
        try
        {
            return await run().ConfigureAwait(false);
        }
        catch (HttpOperationException e) when (notFoundIsNull && e.Response?.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (HttpOperationException e)
        {
            var status = e.Response is { } r ? $"HTTP {(int)r.StatusCode}" : "no response";
            throw Unavailable(call, e.Response?.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden
                ? $"{status}: the server's credentials may not {call} (give its service account the RBAC docs/node-attestation.md lists)"
                : status);
        }
        catch (Exception e) when (e is HttpRequestException or System.Security.Authentication.AuthenticationException or IOException
                                   || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            throw Unavailable(call, $"{e.GetType().Name}");
        }
    }

    private WritException Unavailable(string call, string why)
    {
        K8sPsatLog.ApiFailed(log, cluster, call, why);
        return new WritException(K8sPsatCodes.Unavailable, WritErrorKind.Unavailable,
            $"the Kubernetes API of cluster '{cluster}' could not {call} ({why}): the agent retries; check the server's kubeconfig or in-cluster credentials and its network path to the API");
    }

    private static string FirstLine(string s) => s.Split('\n', 2)[0].Trim();

    public void Dispose() => client.Dispose();
}
