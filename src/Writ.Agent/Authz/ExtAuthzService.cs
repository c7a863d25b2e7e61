using Envoy.Config.Core.V3;
using Envoy.Service.Auth.V3;
using Grpc.Core;

namespace Writ.Agent.Authz;

/// <summary>
/// Envoy's external authorization API (<c>envoy.service.auth.v3.Authorization/Check</c>) on <c>authz_bind</c>. The caller is
/// the certificate Envoy forwards (<c>include_peer_certificate: true</c>) or a JWT-SVID in <c>authz_jwt_header</c>; the
/// destination is the route's <c>writ_resource</c> context extension, else the destination principal, else
/// <c>authz_default_resource</c>. OK adds <c>x-writ-decision-id</c> and <c>x-writ-caller</c>; a denial is PERMISSION_DENIED
/// with a 403 whose body is one line "code: reason (decision id)". Never throws: a request missing what a decision needs
/// is denied with a code.
/// </summary>
public sealed class ExtAuthzService(CallDecider decider, AuthzOptions options) : Authorization.AuthorizationBase
{
    public const string Surface = "ext_authz";
    public const string ResourceExtension = "writ_resource";
    public const string DecisionIdHeader = "x-writ-decision-id";
    public const string CallerHeader = "x-writ-caller";

    /// <summary>Longest URL-encoded certificate read (a chain of a few certificates fits many times over).</summary>
    public const int MaxCertificateChars = 64 * 1024;

    public override Task<CheckResponse> Check(CheckRequest request, ServerCallContext context) => Task.FromResult(Decide(request));

    /// <summary>The decision for one CheckRequest (synchronous: nothing here waits).</summary>
    public CheckResponse Decide(CheckRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var outcome = decider.Decide(ToCallRequest(request, options), Surface);
        if (outcome.Allowed)
        {
            var ok = new OkHttpResponse();
            ok.Headers.Add(Header(DecisionIdHeader, outcome.DecisionId));
            ok.Headers.Add(Header(CallerHeader, outcome.CallerSpiffeId));
            return new CheckResponse { Status = new Google.Rpc.Status { Code = (int)StatusCode.OK }, OkResponse = ok };
        }
        var denied = new DeniedHttpResponse
        {
            Status = new Envoy.Type.V3.HttpStatus { Code = Envoy.Type.V3.StatusCode.Forbidden },
            Body = outcome.DenialLine + "\n",
        };
        denied.Headers.Add(Header(DecisionIdHeader, outcome.DecisionId));
        return new CheckResponse
        {
            Status = new Google.Rpc.Status { Code = (int)StatusCode.PermissionDenied, Message = outcome.DenialLine },
            DeniedResponse = denied,
        };
    }

    private static HeaderValueOption Header(string name, string value) => new()
    {
        Header = new HeaderValue { Key = name, Value = value },
        AppendAction = HeaderValueOption.Types.HeaderAppendAction.OverwriteIfExistsOrAdd,
    };

    /// <summary>What Envoy's attributes say about the call, in the decider's terms (a malformed part becomes a denial there).</summary>
    public static CallRequest ToCallRequest(CheckRequest request, AuthzOptions options)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(options);
        var attributes = request.Attributes;
        var http = attributes?.Request?.Http;
        var headers = (IReadOnlyDictionary<string, string>?)http?.Headers ?? new Dictionary<string, string>();
        IReadOnlyList<byte[]> chain = [];
        string? certError = null;
        var certificate = attributes?.Source?.Certificate ?? "";
        if (certificate.Length > 0)
        {
            chain = ReadPemChain(certificate, out certError);
        }
        string? resource = null;
        if (attributes is not null && attributes.ContextExtensions.TryGetValue(ResourceExtension, out var ext) && ext.Length > 0)
        {
            resource = ext;
        }
        else if (attributes?.Destination?.Principal is { Length: > 0 } destination)
        {
            resource = destination;
        }
        return new CallRequest
        {
            CertificateChainDer = chain,
            CertificateError = certError,
            Jwt = chain.Count == 0 && certError is null && headers.TryGetValue(options.JwtHeader, out var jwt) ? jwt : null,
            Principal = attributes?.Source?.Principal,
            Resource = resource,
            Method = http?.Method ?? "",
            Path = http?.Path ?? "",
            Host = http?.Host ?? "",
            Headers = headers,
        };
    }

    /// <summary>The DER certificates of a URL-encoded PEM (leaf first), or why it cannot be read.</summary>
    public static IReadOnlyList<byte[]> ReadPemChain(string urlEncodedPem, out string? error)
    {
        ArgumentNullException.ThrowIfNull(urlEncodedPem);
        error = null;
        if (urlEncodedPem.Length > MaxCertificateChars)
        {
            error = $"the forwarded certificate is longer than {MaxCertificateChars} characters";
            return [];
        }
        string pem;
        try
        {
            pem = Uri.UnescapeDataString(urlEncodedPem);
        }
        catch (UriFormatException)
        {
            error = "the forwarded certificate is not URL-encoded PEM";
            return [];
        }
        var chain = new List<byte[]>(2);
        ReadOnlySpan<char> rest = pem;
        while (System.Security.Cryptography.PemEncoding.TryFind(rest, out var fields))
        {
            if (rest[fields.Label].SequenceEqual("CERTIFICATE"))
            {
                var der = new byte[fields.DecodedDataLength];
                if (!Convert.TryFromBase64Chars(rest[fields.Base64Data], der, out var written))
                {
                    error = "the forwarded certificate's PEM is not valid base64";
                    return [];
                }
                chain.Add(written == der.Length ? der : der[..written]);
            }
            rest = rest[fields.Location.End.Value..];
        }
        if (chain.Count == 0)
        {
            error = "the forwarded certificate holds no PEM CERTIFICATE block";
        }
        return chain;
    }
}
