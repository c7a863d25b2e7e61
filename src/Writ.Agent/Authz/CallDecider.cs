using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Writ.Agent.Sync;
using Writ.Agent.Telemetry;
using Writ.Authz;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Agent.Authz;

/// <summary>
/// A request to decide, as the surface (ext_authz, the relying-party API) read it: the caller's credential (a certificate
/// chain, leaf first, in DER — or a JWT-SVID), what the surface says the caller is (Envoy's source principal), the
/// destination, and the HTTP request. <see cref="Headers"/> are all the request's headers (lower-case names): the decider
/// keeps only those in <c>authz_headers</c>.
/// </summary>
public sealed record CallRequest
{
    public IReadOnlyList<byte[]> CertificateChainDer { get; init; } = [];

    /// <summary>Why the surface could not read the certificate it was given (a denial), or null.</summary>
    public string? CertificateError { get; init; }

    public string? Jwt { get; init; }

    public string? Principal { get; init; }

    public string? Resource { get; init; }

    public string Method { get; init; } = "";

    public string Path { get; init; } = "";

    public string Host { get; init; } = "";

    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();
}

/// <summary>What was decided: allowed or the stable code and one-line reason of the denial, always with a decision id.</summary>
public sealed record CallOutcome(bool Allowed, string DecisionId, string Code, string Reason, string CallerSpiffeId, CallFacts Facts, CallDecision? Decision)
{
    /// <summary>The one line a denied caller sees: "code: reason (decision id)".</summary>
    public string DenialLine => $"{Code}: {Reason} (decision {DecisionId})";
}

/// <summary>
/// The agent's request-time decision (<c>Writ::Action::"call"</c>): identifies the caller from its certificate (verified to
/// the trust bundle, cached per leaf) or JWT-SVID (audience = the destination), refuses a revoked credential and the
/// credential of a local instance that exited or whose evidence changed since it was issued — checked on every request,
/// before Cedar — then asks Cedar with the call policy the server pushed. Every decision gets a fresh decision id,
/// is counted and timed, and is offered to the access reports (every denial, a sample of allows).
/// </summary>
public sealed class CallDecider(AgentState state, IssuedCredentials issued, AuthzOptions options, TimeProvider time, WritAgentMetrics metrics,
    ILogger log, Func<string>? agentId = null, AccessReporter? reports = null)
{
    private readonly VerifiedLeafCache _leaves = new();
    private readonly Func<string> _agentId = agentId ?? (() => "");

    /// <summary>The verification cache (for tests and diagnostics).</summary>
    public VerifiedLeafCache Leaves => _leaves;

    public CallOutcome Decide(CallRequest request, string surface)
    {
        ArgumentNullException.ThrowIfNull(request);
        var started = Stopwatch.GetTimestamp();
        var now = time.GetUtcNow();
        var facts = new CallFacts
        {
            Method = request.Method ?? "",
            Path = request.Path ?? "",
            Host = request.Host ?? "",
            NowUnix = now.ToUnixTimeSeconds(),
        };
        foreach (var name in options.Headers)
        {
            if (request.Headers.TryGetValue(name, out var value))
            {
                facts.Headers[name] = value;
            }
        }
        var resource = !string.IsNullOrEmpty(request.Resource) ? request.Resource : options.DefaultResource;
        var outcome = DecideCore(request, resource, facts, now);
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.CallDecided(outcome.Allowed, outcome.Code, elapsed);
        if (log.IsEnabled(LogLevel.Debug))
        {
            AgentLog.CallDecided(log, outcome.DecisionId, outcome.CallerSpiffeId, facts.ResourceSpiffeId, outcome.Allowed ? "allow" : "deny", outcome.Code, outcome.Reason);
        }
        reports?.Offer(outcome, surface, now);
        return outcome;
    }

    private CallOutcome DecideCore(CallRequest request, string? resource, CallFacts facts, DateTimeOffset now)
    {
        var snapshot = state.Current;
        SpiffeId? resourceId = null;
        if (!string.IsNullOrEmpty(resource) && SpiffeId.TryParse(resource, out var parsedResource, out _))
        {
            resourceId = parsedResource;
            facts.ResourceSpiffeId = resourceId!.ToString();
        }
        else if (!string.IsNullOrEmpty(resource))
        {
            return Deny(facts, AuthzCodes.NoResource, $"the destination '{OneLine(resource, 200)}' is not a SPIFFE ID: name it with a writ_resource context extension or authz_default_resource");
        }

        // 1. Who calls: the certificate (verified to the bundle) or the JWT-SVID (audience = the destination).
        if (request.CertificateError is { } certError)
        {
            return Deny(facts, AuthzCodes.BadCredential, $"the caller's certificate cannot be read: {certError}");
        }
        if (request.CertificateChainDer.Count > 0)
        {
            if (IdentifyCertificate(request.CertificateChainDer, snapshot.Bundle, now, out var leaf) is { } bad)
            {
                return Deny(facts, AuthzCodes.BadCredential, bad);
            }
            facts.CallerSpiffeId = leaf!.SpiffeId;
            facts.Credential = CallCedar.X509Credential;
            facts.CallerSerialHex = leaf.SerialHex;
            facts.CallerDnsNames.AddRange(leaf.DnsNames);
            if (!string.IsNullOrEmpty(request.Principal) && !string.Equals(request.Principal, leaf.SpiffeId, StringComparison.Ordinal))
            {
                return Deny(facts, AuthzCodes.PrincipalMismatch,
                    $"the source principal '{OneLine(request.Principal, 200)}' is not the SPIFFE ID of the forwarded certificate ({leaf.SpiffeId})");
            }
        }
        else if (!string.IsNullOrEmpty(request.Jwt))
        {
            if (resourceId is null)
            {
                return Deny(facts, AuthzCodes.NoResource, "a JWT-SVID is checked against the destination as audience, and no destination is named: set a writ_resource context extension or authz_default_resource");
            }
            var token = request.Jwt.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? request.Jwt["Bearer ".Length..].Trim() : request.Jwt.Trim();
            var validation = JwtSvidValidator.Validate(token, snapshot.Bundle, [resourceId.ToString()], now);
            if (!validation.IsValid || validation.Svid is not { } svid)
            {
                return Deny(facts, AuthzCodes.BadCredential, $"the caller's JWT-SVID is not valid: {validation.Error}");
            }
            if (svid.CnfX5tS256 is not null)
            {
                // A bound token (cnf x5t#S256) is worth only as much as the certificate it names: presented without any
                // certificate it could be a stolen copy. Writ's tokens are bound by default: such a caller calls over mTLS
                // (its certificate forwarded) or holds a bearer token the identity team's policy allowed.
                facts.CallerSpiffeId = svid.Id.ToString();
                facts.Credential = CallCedar.JwtCredential;
                facts.CallerJti = svid.Jti ?? "";
                return Deny(facts, AuthzCodes.BoundJwtWithoutCertificate,
                    "the caller's JWT-SVID is bound to a certificate (cnf) and no certificate came with it: call over mTLS with include_peer_certificate: true, or use a bearer token the policy allows");
            }
            facts.CallerSpiffeId = svid.Id.ToString();
            facts.Credential = CallCedar.JwtCredential;
            facts.CallerJti = svid.Jti ?? "";
        }
        else
        {
            return Deny(facts, AuthzCodes.NoCredential,
                $"the request carries neither a client certificate nor a JWT-SVID in '{options.JwtHeader}': set include_peer_certificate: true in Envoy's ext_authz filter (mTLS), or send 'Bearer <JWT-SVID>'");
        }

        // 2. Live state, on every request: revoked, or a local instance gone or changed since its credential was issued.
        var revocation = facts.CallerSerialHex.Length > 0 ? state.Revocations.SerialRevocation(facts.CallerSerialHex)
            : facts.CallerJti.Length > 0 ? state.Revocations.JtiRevocation(facts.CallerJti) : null;
        if (revocation is not null)
        {
            return Deny(facts, AuthzCodes.Revoked, revocation.Reason.Length > 0
                ? $"the caller's credential was revoked: {OneLine(revocation.Reason, 300)}"
                : "the caller's credential was revoked");
        }
        var local = facts.CallerSerialHex.Length > 0 ? issued.BySerial(facts.CallerSerialHex)
            : facts.CallerJti.Length > 0 ? issued.ByJti(facts.CallerJti) : null;
        if (local is not null)
        {
            var instance = local.Instance;
            facts.CallerLocal = true;
            facts.CallerInstanceId = instance.Id;
            facts.CallerAgentId = _agentId();
            if (instance.GoneReason is { } gone)
            {
                return Deny(facts, AuthzCodes.InstanceGone, $"the caller's workload instance {instance.Id} is gone ({OneLine(gone, 200)}): its credentials are no longer honoured");
            }
            var (evidence, _, epoch) = instance.Current;
            if (epoch != local.Epoch || evidence is null)
            {
                return Deny(facts, AuthzCodes.InstanceDrifted,
                    $"the caller's workload instance {instance.Id} changed (executable, uid, gid, cgroup or container) since its credential was issued: it must fetch a new one");
            }
            foreach (var s in evidence.Selectors)
            {
                facts.CallerSelectors.Add(s.ToString());
            }
        }

        // 3. Policy.
        var policy = state.CallPolicy;
        if (ReferenceEquals(policy, CallPolicySet.None))
        {
            return Deny(facts, AuthzCodes.NoPolicy, "no call policy has reached this agent from the server yet; retry once the agent has synced");
        }
        if (resourceId is null)
        {
            return Deny(facts, AuthzCodes.NoResource,
                "the request names no destination: set the writ_resource context extension on the route, a destination principal, or authz_default_resource");
        }
        var decision = policy.Decide(facts);
        return decision.Allowed
            ? new CallOutcome(true, CallDecision.NewId(), "", decision.Reason, facts.CallerSpiffeId, facts, decision)
            : new CallOutcome(false, CallDecision.NewId(), AuthzCodes.Denied, decision.Reason, facts.CallerSpiffeId, facts, decision);
    }

    private static CallOutcome Deny(CallFacts facts, string code, string reason) =>
        new(false, CallDecision.NewId(), code, reason, facts.CallerSpiffeId, facts, null);

    /// <summary>Verifies the chain (leaf first) to the bundle, or takes the cached verification of the same leaf; the error, or null.</summary>
    private string? IdentifyCertificate(IReadOnlyList<byte[]> chainDer, Writ.Spiffe.Bundles.TrustBundle bundle, DateTimeOffset now, out VerifiedLeaf? leaf)
    {
        var key = VerifiedLeafCache.LeafHash.Of(chainDer[0]);
        leaf = _leaves.Get(key, bundle);
        if (leaf is null)
        {
            if (chainDer.Count > X509SvidValidator.MaxChainLength)
            {
                return $"the certificate chain is longer than {X509SvidValidator.MaxChainLength}";
            }
            var chain = new List<X509Certificate2>(chainDer.Count);
            try
            {
                foreach (var der in chainDer)
                {
                    chain.Add(X509CertificateLoader.LoadCertificate(der));
                }
                var result = X509SvidValidator.Validate(chain, bundle, now);
                if (!result.IsValid)
                {
                    return $"the caller's certificate is not a valid X.509-SVID of a trusted trust domain: {result.Error}";
                }
                var c = chain[0];
                var dns = new List<string>();
                foreach (var ext in c.Extensions)
                {
                    if (ext is X509SubjectAlternativeNameExtension san)
                    {
                        dns.AddRange(san.EnumerateDnsNames());
                    }
                }
                leaf = new VerifiedLeaf(result.Id!.ToString(), RevocationSet.NormalizeSerial(c.SerialNumber), dns,
                    new DateTimeOffset(c.NotBefore.ToUniversalTime()), new DateTimeOffset(c.NotAfter.ToUniversalTime()), bundle);
            }
            catch (CryptographicException)
            {
                return "the caller's certificate is not valid DER";
            }
            finally
            {
                foreach (var c in chain)
                {
                    c.Dispose();
                }
            }
            _leaves.Put(key, leaf);
        }
        if (now < leaf.NotBefore || now > leaf.NotAfter)
        {
            return $"the caller's certificate is not valid now (valid {leaf.NotBefore:O} to {leaf.NotAfter:O})";
        }
        return null;
    }

    internal static string OneLine(string s, int max)
    {
        var line = new string([.. s.Take(max).Select(c => char.IsControl(c) ? ' ' : c)]);
        return s.Length > max ? line + "…" : line;
    }
}
