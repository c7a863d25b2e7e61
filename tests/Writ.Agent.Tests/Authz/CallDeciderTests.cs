using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Envoy.Service.Auth.V3;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.Authz;
using Writ.Agent.Cache;
using Writ.Agent.Instances;
using Writ.Agent.Sync;
using Writ.Agent.Telemetry;
using Writ.Agent.Tests.Instances;
using Writ.Agent.Tests.TestSupport;
using Writ.Policy.Ast;
using Writ.Policy.Json;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Agent.Tests.Authz;

/// <summary>
/// The agent's request-time decision with real certificates (signed by the fake server's CA from the agent's own CSRs), real
/// processes tracked by the instance tracker, and real Cedar: every live-state check is tried by an attacker holding a
/// credential it should no longer be able to use.
/// </summary>
public sealed class CallDeciderTests : IDisposable
{
    private const string Api = "spiffe://example.org/api";
    private const string Web = "spiffe://example.org/web";

    private const string Policy = """
        @id("web-calls-api")
        permit(principal, action == Writ::Action::"call", resource)
          when { principal.spiffe_id == "spiffe://example.org/web" && resource.spiffe_id == "spiffe://example.org/api" && context.path like "/v1/*" };
        @id("no-admin")
        forbid(principal, action == Writ::Action::"call", resource) when { context.path like "/v1/admin*" };
        @id("no-secret-header")
        forbid(principal, action == Writ::Action::"call", resource) when { context.headers.contains("x-secret=1") };
        """;

    private readonly InstanceRig _rig = new();
    private readonly JwtSigningKey _jwtKey = new("k1", ECDsa.Create(ECCurve.NamedCurves.nistP256));
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;

    public CallDeciderTests()
    {
        var req = new CertificateRequest("CN=test writ ca", _caKey, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        _ca = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(2));
    }

    public void Dispose()
    {
        _rig.Dispose();
        _jwtKey.Key.Dispose();
        _ca.Dispose();
        _caKey.Dispose();
    }

    /// <summary>
    /// The X.509-SVID the server would have issued for the agent's cached credential: same serial and public key, the
    /// SPIFFE ID as URI SAN, signed by the test CA (the fake server's own certificates carry no SAN).
    /// </summary>
    private X509Certificate2 AsSvid(CachedX509 cached, string spiffeId = Web)
    {
        using var key = cached.Chain[0].GetECDsaPublicKey()!;
        var req = new CertificateRequest("CN=web", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        return req.Create(_ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(30), cached.Chain[0].SerialNumberBytes.ToArray());
    }

    private static Entry WebEntry() => InstanceRig.Entry("web", "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private CallDecider Decider(AuthzOptions? options = null) =>
        new(_rig.State, _rig.Cache.Issued, options ?? new AuthzOptions { Headers = ["x-team", "x-secret"] }, TimeProvider.System, WritAgentMetrics.Unhosted,
            NullLogger.Instance, () => "spiffe://example.org/writ/agent/test");

    /// <summary>A live process with an X.509-SVID the agent obtained for it; the bundle is the fake CA's; the call policy is pushed.</summary>
    private async Task<(Child Child, WorkloadInstance Instance, X509Certificate2 Svid)> CallerAsync(string program = "/bin/sleep", params string[] args)
    {
        var entry = WebEntry();
        _rig.SetEntries(entry);
        var child = args.Length == 0 ? Child.Start(program, "60") : Child.Start(program, args);
        var instance = await _rig.ObserveAsync(child.Pid);
        var svid = Assert.Single((await _rig.Cache.GetX509Async(instance, [entry], TestContext.Current.CancellationToken)).Svids);
        _rig.State.SetBundle(new TrustBundle(TrustDomain.Parse("example.org"), [_ca], [new JwtAuthority(_jwtKey.KeyId, _jwtKey.Key)]));
        PushPolicy(Policy, 3);
        var leaf = AsSvid(svid);
        Assert.Equal(RevocationSet.NormalizeSerial(svid.SerialHex), RevocationSet.NormalizeSerial(leaf.SerialNumber));
        return (child, instance, leaf);
    }

    private void PushPolicy(string text, long version)
    {
        Assert.True(PolicySet.TryParse(text, out var set, out var errors), string.Join("; ", errors ?? []));
        Assert.True(_rig.State.TrySetCallPolicy(new CallPolicy { Version = version, PolicySetJson = PolicyJson.ToJson(set!), Sha256 = "test" }, out var error), error);
    }

    private static CallRequest Call(X509Certificate2 svid, string path = "/v1/items", string resource = Api) => new()
    {
        CertificateChainDer = [svid.RawData],
        Resource = resource,
        Method = "GET",
        Path = path,
        Host = "api.internal",
    };

    [Fact]
    public async Task A_permitted_call_is_allowed_with_its_determining_policy_and_a_call_decision_id()
    {
        var (child, _, svid) = await CallerAsync();
        using var _c = child;
        var outcome = Decider().Decide(Call(svid), "test");
        Assert.True(outcome.Allowed, outcome.Reason);
        Assert.Equal(Web, outcome.CallerSpiffeId);
        Assert.Equal(["web-calls-api"], outcome.Decision!.DeterminingPolicies);
        Assert.Matches("^c-[0-9a-f]{20}$", outcome.DecisionId);
        Assert.True(outcome.Facts.CallerLocal);
        Assert.Contains("unix:uid:", string.Join(' ', outcome.Facts.CallerSelectors), StringComparison.Ordinal);
        Assert.Equal(3, outcome.Decision.PolicyVersion);
        // A path no policy permits: denied by default, with the code and a fresh id.
        var denied = Decider().Decide(Call(svid, "/other"), "test");
        Assert.Equal(AuthzCodes.Denied, denied.Code);
        Assert.NotEqual(outcome.DecisionId, denied.DecisionId);
    }

    [Fact]
    public async Task Forbid_wins_over_permit()
    {
        var (child, _, svid) = await CallerAsync();
        using var _c = child;
        var outcome = Decider().Decide(Call(svid, "/v1/admin/users"), "test");
        Assert.False(outcome.Allowed);
        Assert.Equal(AuthzCodes.Denied, outcome.Code);
        Assert.Contains("no-admin", outcome.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_revoked_serial_is_refused_on_the_very_next_call()
    {
        var (child, instance, svid) = await CallerAsync();
        using var _c = child;
        var decider = Decider();
        Assert.True(decider.Decide(Call(svid), "test").Allowed);   // and its verification is now cached
        _rig.State.Revocations.Add([new Revocation { SerialHex = svid.SerialNumber, Reason = "key compromise reported by ops", InstanceId = instance.Id }]);
        var outcome = decider.Decide(Call(svid), "test");
        Assert.Equal(AuthzCodes.Revoked, outcome.Code);
        Assert.Contains("key compromise reported by ops", outcome.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_credential_of_a_process_that_exited_is_refused_once_the_agent_sees_the_exit()
    {
        var (child, _, svid) = await CallerAsync();
        var decider = Decider();
        Assert.True(decider.Decide(Call(svid), "test").Allowed);
        child.KillAndWait();
        child.Dispose();
        // The tracker learns of the exit from the pidfd; the very next decision after that refuses (no sleep: a deadline).
        CallOutcome? last = null;
        await Deadline.UntilAsync(() => (last = decider.Decide(Call(svid), "test")).Code == AuthzCodes.InstanceGone, "the exited caller to be refused");
        Assert.Contains("is gone", last!.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_credential_of_a_process_that_exec_d_another_program_is_refused_after_re_attestation()
    {
        // A shell that, told to, replaces itself with another program: same pid, another executable.
        var (child, instance, svid) = await CallerAsync("/bin/sh", "-c", "read line; exec /bin/sleep 60");
        using var _c = child;
        var decider = Decider();
        Assert.True(decider.Decide(Call(svid), "test").Allowed);
        await child.Process.StandardInput.WriteLineAsync("go");
        await child.Process.StandardInput.FlushAsync(TestContext.Current.CancellationToken);
        var sleep = Child.Resolve("/bin/sleep");
        await Deadline.UntilAsync(() => Child.ExeOf(child.Pid) == sleep, "the exec");
        await _rig.Tracker.RecheckAllAsync(TestContext.Current.CancellationToken);
        var outcome = decider.Decide(Call(svid), "test");
        Assert.Equal(AuthzCodes.InstanceDrifted, outcome.Code);
        Assert.Contains(instance.Id, outcome.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_certificate_of_a_foreign_trust_domain_is_refused()
    {
        var (child, _, _) = await CallerAsync();
        using var _c = child;
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest("CN=other ca", caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var ca = caReq.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafReq = new CertificateRequest("CN=web", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri("spiffe://other.org/web"));
        leafReq.CertificateExtensions.Add(san.Build());
        leafReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        using var leaf = leafReq.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(30), [0x42, 0x01]);
        var outcome = Decider().Decide(new CallRequest { CertificateChainDer = [leaf.RawData], Resource = Api, Path = "/v1/items" }, "test");
        Assert.Equal(AuthzCodes.BadCredential, outcome.Code);
        Assert.Contains("other.org", outcome.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_principal_that_is_not_the_certificate_s_id_is_refused()
    {
        var (child, _, svid) = await CallerAsync();
        using var _c = child;
        var outcome = Decider().Decide(Call(svid) with { Principal = "spiffe://example.org/admin" }, "test");
        Assert.Equal(AuthzCodes.PrincipalMismatch, outcome.Code);
    }

    [Fact]
    public async Task A_JWT_SVID_for_another_audience_or_with_a_revoked_jti_is_refused()
    {
        var (child, _, _) = await CallerAsync();
        using var _c = child;
        var now = DateTimeOffset.UtcNow;
        string Token(string audience, string jti) => JwtSvidMinter.Mint(_jwtKey, SpiffeId.Parse(Web), [audience], now.AddSeconds(-5), now.AddMinutes(5),
            new Dictionary<string, object> { ["jti"] = jti });
        var decider = Decider();
        var good = decider.Decide(new CallRequest { Jwt = "Bearer " + Token(Api, "j-1"), Resource = Api, Path = "/v1/items" }, "test");
        Assert.True(good.Allowed, good.Reason);
        Assert.Equal(Writ.Authz.CallCedar.JwtCredential, good.Facts.Credential);

        var wrongAudience = decider.Decide(new CallRequest { Jwt = "Bearer " + Token("spiffe://example.org/other", "j-2"), Resource = Api, Path = "/v1/items" }, "test");
        Assert.Equal(AuthzCodes.BadCredential, wrongAudience.Code);

        _rig.State.Revocations.Add([new Revocation { Jti = "j-1", Reason = "token leaked" }]);
        var revoked = decider.Decide(new CallRequest { Jwt = "Bearer " + Token(Api, "j-1"), Resource = Api, Path = "/v1/items" }, "test");
        Assert.Equal(AuthzCodes.Revoked, revoked.Code);
    }

    [Fact]
    public async Task A_certificate_bound_JWT_SVID_presented_without_its_certificate_is_refused()
    {
        // Attacker: steals a JWT-SVID bound to web's X.509-SVID (cnf x5t#S256, RFC 8705) and replays it as a bearer token,
        // without the bound certificate. JwtSvidVerifier refuses this; the call decider must too.
        var (child, _, _) = await CallerAsync();
        using var _c = child;
        var now = DateTimeOffset.UtcNow;
        var boundTo = Convert.ToBase64String(SHA256.HashData("some other certificate"u8)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var token = JwtSvidMinter.Mint(_jwtKey, SpiffeId.Parse(Web), [Api], now.AddSeconds(-5), now.AddMinutes(5),
            new Dictionary<string, object> { ["jti"] = "j-bound", ["cnf"] = new Dictionary<string, object> { ["x5t#S256"] = boundTo } });
        Assert.Equal(boundTo, JwtSvidValidator.Validate(token, _rig.State.Current.Bundle, [Api], now).Svid?.CnfX5tS256);
        var outcome = Decider().Decide(new CallRequest { Jwt = "Bearer " + token, Resource = Api, Path = "/v1/items" }, "test");
        Assert.False(outcome.Allowed, "a certificate-bound JWT-SVID was honoured as a bearer token without its certificate");
        Assert.Equal(AuthzCodes.BoundJwtWithoutCertificate, outcome.Code);
    }

    [Fact]
    public async Task Headers_not_in_authz_headers_never_reach_the_policy()
    {
        var (child, _, svid) = await CallerAsync();
        using var _c = child;
        var headers = new Dictionary<string, string> { ["x-team"] = "blue", ["x-secret"] = "1", ["authorization"] = "Bearer secret-token" };
        // Allowed headers reach the context: the forbid on x-secret applies.
        var withSecret = Decider().Decide(Call(svid) with { Headers = headers }, "test");
        Assert.Equal(AuthzCodes.Denied, withSecret.Code);
        Assert.Contains("no-secret-header", withSecret.Reason, StringComparison.Ordinal);
        // Not listed: never seen (the same forbid cannot apply), and the token is not in the facts the ledger gets.
        var filtered = Decider(new AuthzOptions { Headers = ["x-team"] }).Decide(Call(svid) with { Headers = headers }, "test");
        Assert.True(filtered.Allowed, filtered.Reason);
        Assert.Equal(["x-team"], filtered.Facts.Headers.Keys);
    }

    [Fact]
    public async Task Without_policy_resource_or_credential_the_call_is_refused_with_its_own_code()
    {
        var entry = WebEntry();
        _rig.SetEntries(entry);
        using var child = Child.Start("/bin/sleep", "60");
        var instance = await _rig.ObserveAsync(child.Pid);
        using var svid = AsSvid(Assert.Single((await _rig.Cache.GetX509Async(instance, [entry], TestContext.Current.CancellationToken)).Svids));
        _rig.State.SetBundle(new TrustBundle(TrustDomain.Parse("example.org"), [_ca], []));
        var decider = Decider();
        Assert.Equal(AuthzCodes.NoPolicy, decider.Decide(Call(svid), "test").Code);
        PushPolicy(Policy, 1);
        Assert.Equal(AuthzCodes.NoResource, decider.Decide(Call(svid) with { Resource = null }, "test").Code);
        Assert.Equal(AuthzCodes.NoResource, decider.Decide(Call(svid) with { Resource = "not-a-spiffe-id" }, "test").Code);
        Assert.True(Decider(new AuthzOptions { DefaultResource = Api }).Decide(Call(svid) with { Resource = null }, "test").Allowed);
        var none = decider.Decide(new CallRequest { Resource = Api }, "test");
        Assert.Equal(AuthzCodes.NoCredential, none.Code);
        Assert.Contains("include_peer_certificate", none.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_pushed_call_policy_keeps_the_previous_one()
    {
        var (child, _, svid) = await CallerAsync();
        using var _c = child;
        Assert.False(_rig.State.TrySetCallPolicy(new CallPolicy { Version = 9, PolicySetJson = "{ not json" }, out var error));
        Assert.NotEmpty(error);
        Assert.Equal(3, _rig.State.CallPolicy.Version);
        Assert.True(Decider().Decide(Call(svid), "test").Allowed);
    }

    [Fact]
    public async Task Envoy_check_allows_with_decision_headers_and_denies_with_a_403_line()
    {
        var (child, _, svid) = await CallerAsync();
        using var _c = child;
        var service = new ExtAuthzService(Decider(), new AuthzOptions());
        var pem = Uri.EscapeDataString(svid.ExportCertificatePem());
        var check = new CheckRequest
        {
            Attributes = new AttributeContext
            {
                Source = new AttributeContext.Types.Peer { Certificate = pem, Principal = Web },
                Destination = new AttributeContext.Types.Peer { Principal = "spiffe://example.org/ignored" },
                Request = new AttributeContext.Types.Request { Http = new AttributeContext.Types.HttpRequest { Method = "GET", Path = "/v1/items", Host = "api" } },
            },
        };
        check.Attributes.ContextExtensions[ExtAuthzService.ResourceExtension] = Api;
        var ok = service.Decide(check);
        Assert.Equal(0, ok.Status.Code);
        Assert.Contains(ok.OkResponse.Headers, h => h.Header.Key == ExtAuthzService.CallerHeader && h.Header.Value == Web);
        Assert.Contains(ok.OkResponse.Headers, h => h.Header.Key == ExtAuthzService.DecisionIdHeader && h.Header.Value.StartsWith("c-", StringComparison.Ordinal));

        check.Attributes.Request.Http.Path = "/v1/admin";
        var denied = service.Decide(check);
        Assert.Equal(7, denied.Status.Code);
        Assert.Equal(Envoy.Type.V3.StatusCode.Forbidden, denied.DeniedResponse.Status.Code);
        Assert.Matches(@"^WRIT-AUTHZ-DENIED: .* \(decision c-[0-9a-f]{20}\)\n$", denied.DeniedResponse.Body);

        // Malformed requests are denials with a code, never exceptions.
        Assert.Contains(AuthzCodes.NoCredential, service.Decide(new CheckRequest()).DeniedResponse.Body, StringComparison.Ordinal);
        var garbage = check.Clone();
        garbage.Attributes.Source.Certificate = "%%%not-pem";
        Assert.Contains(AuthzCodes.BadCredential, service.Decide(garbage).DeniedResponse.Body, StringComparison.Ordinal);
        var huge = check.Clone();
        huge.Attributes.Source.Certificate = new string('A', ExtAuthzService.MaxCertificateChars + 1);
        Assert.Contains(AuthzCodes.BadCredential, service.Decide(huge).DeniedResponse.Body, StringComparison.Ordinal);
    }
}
