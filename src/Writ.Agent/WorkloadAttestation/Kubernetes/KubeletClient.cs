using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Writ.Agent.WorkloadAttestation.Kubernetes;

/// <summary>
/// Asks the node's kubelet for its pods (<c>GET /pods</c>): on the secure port over HTTPS with the agent's service-account
/// token as a bearer token (re-read from <see cref="K8sWorkloadOptions.TokenPath"/> for every request, so a rotated
/// projected token is picked up), or on the read-only port over plain HTTP where a cluster still has one. The kubelet's
/// certificate must chain to <see cref="K8sWorkloadOptions.KubeletCaPath"/> (default: the service account's ca.crt); its
/// host name is not compared with <see cref="K8sWorkloadOptions.KubeletHost"/> (kubelet serving certificates name the
/// node, the agent dials loopback or the node IP). Answers are capped at <see cref="MaxResponseBytes"/>; requests time out.
/// </summary>
public sealed partial class KubeletClient : IDisposable
{
    /// <summary>The largest pod list read (a node with 250 pods of rich specs is a few MiB).</summary>
    public const int MaxResponseBytes = 32 * 1024 * 1024;

    private const int MaxTokenBytes = 64 * 1024;
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);

    private readonly HttpClient _http;
    private readonly string? _tokenPath;
    private readonly X509Certificate2Collection? _roots;
    private readonly string? _caError;

    public KubeletClient(K8sWorkloadOptions options, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = ConnectTimeout,
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        if (options.KubeletReadOnlyPort > 0)
        {
            PodsUri = new UriBuilder(Uri.UriSchemeHttp, options.KubeletHost, options.KubeletReadOnlyPort, "/pods").Uri;
            LogReadOnlyPort(log, PodsUri.ToString());
        }
        else
        {
            PodsUri = new UriBuilder(Uri.UriSchemeHttps, options.KubeletHost, options.KubeletPort, "/pods").Uri;
            _tokenPath = options.TokenPath;
            if (options.SkipKubeletVerification)
            {
                LogVerificationSkipped(log, PodsUri.ToString());
                handler.SslOptions.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
            }
            else
            {
                // A missing or unusable CA is not thrown at start (the agent serves its other attestors' evidence): every
                // request fails with the reason, and it is logged once here.
                string? caPath = options.KubeletCaPath ?? (File.Exists(K8sWorkloadOptions.DefaultCaPath) ? K8sWorkloadOptions.DefaultCaPath : null);
                if (caPath is null)
                {
                    _caError = "no CA to check the kubelet's certificate: set k8s.kubelet_ca (the CA that signs the kubelets' serving certificates), " +
                        $"mount the service account's {K8sWorkloadOptions.DefaultCaPath}, or set k8s.skip_kubelet_verification";
                }
                else
                {
                    try
                    {
                        var roots = new X509Certificate2Collection();
                        roots.ImportFromPemFile(caPath);
                        _roots = roots.Count > 0 ? roots : null;
                        _caError = roots.Count > 0 ? null : $"k8s.kubelet_ca '{caPath}' holds no PEM certificate; give the CA bundle of the kubelets' serving certificates";
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
                    {
                        _caError = $"cannot read k8s.kubelet_ca '{caPath}' ({ex.GetType().Name}); give a readable PEM CA bundle";
                    }
                }

                if (_caError is not null)
                {
                    LogNoCa(log, _caError);
                }

                handler.SslOptions.RemoteCertificateValidationCallback = CheckKubeletCertificate;
            }
        }

        _http = new HttpClient(handler, disposeHandler: true) { Timeout = RequestTimeout };
    }

    /// <summary>Where the pods are asked for (https://HOST:PORT/pods or http://HOST:READONLYPORT/pods).</summary>
    public Uri PodsUri { get; }

    /// <summary>The kubelet's pod list. Throws <see cref="KubeletException"/> (with its code) for every expected failure.</summary>
    public async Task<V1PodList> GetPodsAsync(CancellationToken ct)
    {
        if (_caError is not null)
        {
            throw new KubeletException(K8sWorkloadCodes.KubeletUntrusted, _caError);
        }

        using var request = new HttpRequestMessage(HttpMethod.Get, PodsUri);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        if (_tokenPath is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ReadToken(_tokenPath));
        }

        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        }
        catch (HttpRequestException ex) when (ex.InnerException is AuthenticationException)
        {
            throw new KubeletException(K8sWorkloadCodes.KubeletUntrusted,
                $"the kubelet at {PodsUri.Authority} presented a certificate that does not chain to k8s.kubelet_ca; give the CA that signs the kubelets' serving certificates (or set k8s.skip_kubelet_verification)");
        }
        catch (HttpRequestException ex)
        {
            throw new KubeletException(K8sWorkloadCodes.KubeletUnreachable,
                $"cannot reach the kubelet at {PodsUri.Authority} ({ex.HttpRequestError}); check k8s.kubelet_host and the port, and that the agent runs with hostNetwork or can reach the node IP");
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new KubeletException(K8sWorkloadCodes.KubeletUnreachable,
                string.Create(CultureInfo.InvariantCulture, $"the kubelet at {PodsUri.Authority} did not answer within {RequestTimeout.TotalSeconds:0} s; check the kubelet's health"));
        }

        using (response)
        {
            int status = (int)response.StatusCode;
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                throw new KubeletException(K8sWorkloadCodes.KubeletRefused, string.Create(CultureInfo.InvariantCulture,
                    $"the kubelet at {PodsUri.Authority} refused the agent's token (HTTP {status}); the agent's service account needs RBAC get on nodes/pods (Kubernetes 1.33+) or nodes/proxy, the kubelet needs webhook authentication and authorization, and k8s.token_path must be that token"));
            }

            if (status >= 500)
            {
                throw new KubeletException(K8sWorkloadCodes.KubeletUnreachable, string.Create(CultureInfo.InvariantCulture,
                    $"the kubelet at {PodsUri.Authority} answered HTTP {status}; check the kubelet's health"));
            }

            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw new KubeletException(K8sWorkloadCodes.KubeletMalformed, string.Create(CultureInfo.InvariantCulture,
                    $"the kubelet at {PodsUri.Authority} answered GET /pods with HTTP {status}, not a pod list; check k8s.kubelet_host and the port point at a kubelet"));
            }

            if (response.Content.Headers.ContentLength is > MaxResponseBytes)
            {
                throw TooLarge();
            }

            using var buffer = new MemoryStream();
            byte[] chunk = ArrayPool<byte>.Shared.Rent(81920);
            try
            {
                var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                await using (body.ConfigureAwait(false))
                {
                    int n;
                    while ((n = await body.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
                    {
                        if (buffer.Length + n > MaxResponseBytes)
                        {
                            throw TooLarge();
                        }

                        buffer.Write(chunk, 0, n);
                    }
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException)
            {
                throw new KubeletException(K8sWorkloadCodes.KubeletUnreachable,
                    $"the kubelet at {PodsUri.Authority} broke off its answer; check the kubelet's health");
            }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new KubeletException(K8sWorkloadCodes.KubeletUnreachable, string.Create(CultureInfo.InvariantCulture,
                    $"the kubelet at {PodsUri.Authority} did not finish its answer within {RequestTimeout.TotalSeconds:0} s; check the kubelet's health"));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(chunk);
            }

            buffer.Position = 0;
            V1PodList? list;
            try
            {
                list = KubernetesJson.Deserialize<V1PodList>(buffer);
            }
            catch (JsonException ex)
            {
                throw new KubeletException(K8sWorkloadCodes.KubeletMalformed, string.Create(CultureInfo.InvariantCulture,
                    $"the kubelet's answer to GET /pods is not a JSON pod list (at byte {ex.BytePositionInLine ?? 0} of line {ex.LineNumber ?? 0}); check k8s.kubelet_host and the port point at a kubelet"));
            }

            if (list?.Items is null || (list.Kind is not null && list.Kind != "PodList"))
            {
                throw new KubeletException(K8sWorkloadCodes.KubeletMalformed,
                    "the kubelet's answer to GET /pods is JSON but not a PodList; check k8s.kubelet_host and the port point at a kubelet");
            }

            return list;
        }
    }

    private KubeletException TooLarge() => new(K8sWorkloadCodes.KubeletMalformed, string.Create(CultureInfo.InvariantCulture,
        $"the kubelet's pod list from {PodsUri.Authority} is larger than {MaxResponseBytes / (1024 * 1024)} MiB; this is not a kubelet's answer, or the node runs far more pods than it should"));

    private static string ReadToken(string path)
    {
        byte[] bytes;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
            if (file.Length > MaxTokenBytes)
            {
                throw new KubeletException(K8sWorkloadCodes.TokenUnreadable, $"the kubelet token file k8s.token_path '{path}' is larger than 64 KiB; point it at the service-account token");
            }

            bytes = new byte[file.Length];
            file.ReadExactly(bytes);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new KubeletException(K8sWorkloadCodes.TokenUnreadable,
                $"cannot read the kubelet token file k8s.token_path '{path}' ({ex.GetType().Name}); mount the service-account token there or set k8s.token_path");
        }

        string token = System.Text.Encoding.UTF8.GetString(bytes).Trim();
        if (token.Length == 0 || token.Any(c => c <= ' ' || c > '~'))
        {
            throw new KubeletException(K8sWorkloadCodes.TokenUnreadable,
                $"the kubelet token file k8s.token_path '{path}' is empty or not a token (one line of printable ASCII); mount the service-account token there");
        }

        return token;
    }

    /// <summary>
    /// The chain must end in one of the configured roots (only those: not the system's) and be valid for server
    /// authentication; a host-name mismatch alone is accepted (see the class summary and docs/kubernetes.md).
    /// </summary>
    private bool CheckKubeletCertificate(object sender, X509Certificate? certificate, X509Chain? presented, SslPolicyErrors errors)
    {
        if (_roots is null || certificate is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            return false;
        }

        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.1"));
        if (presented is not null)
        {
            foreach (X509ChainElement element in presented.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        return chain.Build(leaf);
    }

    public void Dispose() => _http.Dispose();

    [LoggerMessage(EventId = 2760, Level = LogLevel.Warning, Message = "k8s workload attestor: the kubelet's certificate is not checked (k8s.skip_kubelet_verification); anyone who can answer on {Uri} can name this node's pods")]
    private static partial void LogVerificationSkipped(ILogger logger, string uri);

    [LoggerMessage(EventId = 2768, Level = LogLevel.Error, Message = "k8s workload attestor: {Reason}; no workload gets k8s selectors until this is fixed")]
    private static partial void LogNoCa(ILogger logger, string reason);

    [LoggerMessage(EventId = 2761, Level = LogLevel.Warning, Message = "k8s workload attestor: pods are read from the kubelet's read-only port {Uri} (plain HTTP, no authentication); prefer the secure port")]
    private static partial void LogReadOnlyPort(ILogger logger, string uri);
}
