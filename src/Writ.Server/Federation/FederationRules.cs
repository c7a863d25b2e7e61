using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Server.Federation;

/// <summary>
/// The rules of federation relationships and foreign bundles (SPIFFE Trust Domain and Bundle spec §5, §6), with their
/// stable codes: checked before anything is written, by the admin API and by the refresher.
/// </summary>
public static class FederationRules
{
    public const string TrustDomainCode = "WRIT-FED-TRUST-DOMAIN";
    public const string OwnTrustDomainCode = "WRIT-FED-OWN-TRUST-DOMAIN";
    public const string EndpointUrlCode = "WRIT-FED-ENDPOINT-URL";
    public const string ProfileCode = "WRIT-FED-PROFILE";
    public const string EndpointSpiffeIdCode = "WRIT-FED-ENDPOINT-SPIFFE-ID";
    public const string BundleCode = "WRIT-FED-BUNDLE";
    public const string EntryTrustDomainCode = "WRIT-FED-ENTRY-TRUST-DOMAIN";
    public const string EntryUnknownCode = "WRIT-FED-ENTRY-UNKNOWN";

    /// <summary>At most this many trust domains on one entry.</summary>
    public const int MaxFederatesWith = 32;

    /// <summary>A relationship's trust domain: a bare, valid name that is not ours. Null when valid.</summary>
    public static (string Message, string Code)? TrustDomainProblem(string text, TrustDomain own)
    {
        if (!TrustDomain.TryParse(text, out var td, out var error) || td.Name != text)
        {
            return ($"trust domain '{text}' is not a trust domain name ({error ?? "give the bare name, e.g. partner.example, not a SPIFFE ID"})", TrustDomainCode);
        }
        if (td == own)
        {
            return ($"'{text}' is this server's own trust domain: federate with another trust domain", OwnTrustDomainCode);
        }
        return null;
    }

    /// <summary>The bundle endpoint URL: absolute https, with a host, without user info or fragment.</summary>
    public static string? EndpointUrlProblem(string text)
    {
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttps || uri.Host.Length == 0)
        {
            return $"bundle endpoint URL '{text}' is not an https URL: give e.g. https://partner.example:8443/";
        }
        if (uri.UserInfo.Length > 0 || uri.Fragment.Length > 0)
        {
            return $"bundle endpoint URL '{text}' has user info or a fragment: give only https://host:port/path";
        }
        return null;
    }

    /// <summary>Profile and endpoint SPIFFE ID: https_spiffe needs a valid one, https_web none.</summary>
    public static (string Message, string Code)? ProfileProblem(string profile, string endpointSpiffeId)
    {
        if (profile is not (FederationRelationship.HttpsWeb or FederationRelationship.HttpsSpiffe))
        {
            return ($"profile '{profile}' is not https_web or https_spiffe", ProfileCode);
        }
        if (profile == FederationRelationship.HttpsWeb && endpointSpiffeId.Length > 0)
        {
            return ("an endpoint SPIFFE ID is only for profile https_spiffe: drop --endpoint-spiffe-id or use --profile https_spiffe", EndpointSpiffeIdCode);
        }
        if (profile == FederationRelationship.HttpsSpiffe && !SpiffeId.TryParse(endpointSpiffeId, out _, out var error))
        {
            return (endpointSpiffeId.Length == 0
                ? "profile https_spiffe needs the SPIFFE ID the endpoint's certificate carries: pass --endpoint-spiffe-id spiffe://partner.example/writ/server"
                : $"endpoint SPIFFE ID '{endpointSpiffeId}' is not a SPIFFE ID ({error})", EndpointSpiffeIdCode);
        }
        return null;
    }

    /// <summary>
    /// Parses a SPIFFE bundle document of <paramref name="td"/> and refuses one whose X.509 authorities name another
    /// trust domain (a CA certificate's SPIFFE URI SAN, X509-SVID §4.1) — the document does not say whose it is, so this
    /// is what tells a bundle of the wrong domain apart.
    /// </summary>
    public static bool TryParseBundle(TrustDomain td, string json, out TrustBundle? bundle, out string? error)
    {
        if (!TrustBundle.TryParseSpiffeJson(td, json, out bundle, out error))
        {
            return false;
        }
        if (bundle.IsEmpty)
        {
            error = "the bundle has no keys";
            bundle = null;
            return false;
        }
        foreach (var cert in bundle.X509Authorities)
        {
            var uris = UriSans(cert);
            if (uris is null)
            {
                error = "an X.509 authority of the bundle has an unreadable subjectAltName";
                bundle = null;
                return false;
            }
            foreach (var uri in uris)
            {
                if (uri.StartsWith("spiffe://", StringComparison.Ordinal)
                    && (!TrustDomain.TryParse(uri, out var named, out _) || named != td))
                {
                    error = $"an X.509 authority of the bundle belongs to '{uri}', not to {td.Name}";
                    bundle = null;
                    return false;
                }
            }
        }
        return true;
    }

    /// <summary>Short ids of a bundle's keys for the ledger: x509:&lt;SHA-256 of the certificate, 16 hex&gt; and jwt:&lt;kid&gt;.</summary>
    public static IReadOnlyList<string> KeyIds(TrustBundle bundle) =>
    [
        .. bundle.X509Authorities.Select(c => "x509:" + Convert.ToHexStringLower(SHA256.HashData(c.RawData))[..16]),
        .. bundle.JwtAuthorityList.Select(a => "jwt:" + a.Kid),
    ];

    /// <summary>The URI names of the certificate's subjectAltName (empty when absent, null when unreadable).</summary>
    public static IReadOnlyList<string>? UriSans(X509Certificate2 cert)
    {
        var ext = cert.Extensions["2.5.29.17"];
        if (ext is null)
        {
            return [];
        }
        var result = new List<string>();
        try
        {
            var seq = new AsnReader(ext.RawData, AsnEncodingRules.DER).ReadSequence();
            var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
            while (seq.HasData)
            {
                if (seq.PeekTag().HasSameClassAndValue(uriTag))
                {
                    result.Add(seq.ReadCharacterString(UniversalTagNumber.IA5String, uriTag));
                }
                else
                {
                    seq.ReadEncodedValue();
                }
            }
        }
        catch (AsnContentException)
        {
            return null;
        }
        return result;
    }
}
