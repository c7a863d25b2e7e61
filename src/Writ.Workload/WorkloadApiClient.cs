using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Protocol.RelyingParty;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Workload;

/// <summary>
/// A connection to the SPIFFE Workload API (and Writ's relying-party API beside it) over its Unix socket. Every call
/// carries the <c>workload.spiffe.io: true</c> header SPIFFE requires. The sources (<see cref="X509Source"/>,
/// <see cref="JwtSource"/>, <see cref="BundleSource"/>, <see cref="RevocationSource"/>) each own one; use it directly
/// for one-shot calls.
/// </summary>
public sealed class WorkloadApiClient : IDisposable
{
    /// <summary>The metadata header every Workload API call must carry.</summary>
    public const string SecurityHeader = "workload.spiffe.io";

    private readonly GrpcChannel _channel;

    private WorkloadApiClient(string socketPath, WorkloadApiOptions options)
    {
        SocketPath = socketPath;
        Options = options;
        Logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Writ.Workload");
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
            // Long-lived streams: keep the connection checked so a dead agent is noticed.
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
        };
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            LoggerFactory = options.LoggerFactory,
            MaxReceiveMessageSize = 16 * 1024 * 1024,
        });
        Workload = new SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(_channel);
        RelyingParty = new RelyingParty.RelyingPartyClient(_channel);
    }

    /// <summary>
    /// A client for the address in <paramref name="options"/> (or <c>SPIFFE_ENDPOINT_SOCKET</c>). Nothing is dialled
    /// until the first call. Throws <see cref="WorkloadApiException"/> WRIT-SDK-ADDRESS for a missing or bad address.
    /// </summary>
    public static WorkloadApiClient Create(WorkloadApiOptions? options = null)
    {
        options ??= new WorkloadApiOptions();
        options.Check();
        return new WorkloadApiClient(WorkloadApiAddress.ResolveSocketPath(options.Address), options);
    }

    /// <summary>The Unix socket this client dials.</summary>
    public string SocketPath { get; }

    internal WorkloadApiOptions Options { get; }

    internal ILogger Logger { get; }

    internal SpiffeWorkloadAPI.SpiffeWorkloadAPIClient Workload { get; }

    internal RelyingParty.RelyingPartyClient RelyingParty { get; }

    internal static CallOptions Call(CancellationToken ct, DateTime? deadline = null) =>
        new(new Metadata { { SecurityHeader, "true" } }, deadline, ct);

    /// <summary>
    /// JWT-SVIDs for <paramref name="audience"/> (one per identity of this workload, or only <paramref name="subject"/>'s),
    /// as the agent minted them (read, not verified: the agent is this workload's authority).
    /// </summary>
    public async Task<IReadOnlyList<JwtSvid>> FetchJwtSvidsAsync(IReadOnlyList<string> audience, SpiffeId? subject = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(audience);
        if (audience.Count == 0 || audience.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("a JWT-SVID needs at least one non-empty audience", nameof(audience));
        }
        var request = new JWTSVIDRequest { SpiffeId = subject?.ToString() ?? "" };
        request.Audience.Add(audience);
        JWTSVIDResponse response;
        try
        {
            response = await Workload.FetchJWTSVIDAsync(request, Call(cancellationToken)).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw Map(e, "FetchJWTSVID");
        }
        var result = new List<JwtSvid>(response.Svids.Count);
        foreach (var s in response.Svids)
        {
            if (!JwtSvidValidator.TryReadUnverified(s.Svid, out var svid, out var error))
            {
                throw new WorkloadApiException(WorkloadErrors.Malformed, $"the Workload API sent an unreadable JWT-SVID ({error}): check the agent");
            }
            result.Add(svid);
        }
        if (result.Count == 0)
        {
            throw new WorkloadApiException(WorkloadErrors.Denied, "the Workload API returned no JWT-SVID: no identity issued to this process");
        }
        return result;
    }

    /// <summary>
    /// Asks the agent to validate <paramref name="token"/> for <paramref name="audience"/> (ValidateJWTSVID); returns
    /// the token's SVID when valid, else throws <see cref="WorkloadApiException"/> WRIT-SDK-JWT-INVALID with the agent's reason.
    /// </summary>
    public async Task<JwtSvid> ValidateJwtSvidAsync(string token, string audience, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        ArgumentException.ThrowIfNullOrEmpty(audience);
        ValidateJWTSVIDResponse response;
        try
        {
            response = await Workload.ValidateJWTSVIDAsync(new ValidateJWTSVIDRequest { Audience = audience, Svid = token }, Call(cancellationToken)).ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            throw new WorkloadApiException(WorkloadErrors.JwtInvalid, $"the agent refused the JWT-SVID: {OneLine(e.Status.Detail)}", e);
        }
        catch (RpcException e)
        {
            throw Map(e, "ValidateJWTSVID");
        }
        if (!JwtSvidValidator.TryReadUnverified(token, out var svid, out var error) || svid.Id.ToString() != response.SpiffeId)
        {
            throw new WorkloadApiException(WorkloadErrors.JwtInvalid, $"the JWT-SVID cannot be read after validation ({error ?? "subject differs"})");
        }
        return svid;
    }

    /// <summary>The JWT bundles (JWKS per trust domain) the Workload API serves now (the first message of FetchJWTBundles).</summary>
    public async Task<BundleSet> FetchJwtBundlesAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            using var call = Workload.FetchJWTBundles(new JWTBundlesRequest(), Call(cancellationToken));
            if (!await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                throw new WorkloadApiException(WorkloadErrors.Unavailable, "the Workload API ended FetchJWTBundles without an answer: retry");
            }
            var set = new BundleSet();
            if (BundleSource.ReadJwtBundles(call.ResponseStream.Current, set) is { } error)
            {
                throw new WorkloadApiException(WorkloadErrors.Malformed, error);
            }
            return set;
        }
        catch (RpcException e)
        {
            throw Map(e, "FetchJWTBundles");
        }
    }

    internal WorkloadApiException Map(RpcException e, string call) => e.StatusCode switch
    {
        StatusCode.PermissionDenied => new WorkloadApiException(WorkloadErrors.Denied,
            $"the Workload API issued no identity to this process ({OneLine(e.Status.Detail)}): register this workload with the Writ server", e),
        StatusCode.Unimplemented => new WorkloadApiException(WorkloadErrors.Unsupported,
            $"the Workload API at {SocketPath} does not serve {call}: use a Writ agent that does", e),
        _ => new WorkloadApiException(WorkloadErrors.Unavailable,
            $"{call} at {SocketPath} failed ({e.StatusCode}: {OneLine(e.Status.Detail)}): is the agent running?", e),
    };

    internal static string OneLine(string? s)
    {
        s ??= "";
        var nl = s.IndexOfAny(['\r', '\n']);
        s = nl >= 0 ? s[..nl] : s;
        return s.Length <= 300 ? s : s[..300] + "…";
    }

    /// <summary>Closes the connection (open streams end).</summary>
    public void Dispose() => _channel.Dispose();
}
