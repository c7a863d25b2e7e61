using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Writ.Protocol.Errors;
using Writ.Server.Ci;
using Writ.Spiffe.X509;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Ci;

/// <summary>
/// CI logins (issue #15 item 4) through the one issuance pipeline with a real OIDC issuer: the per-job SVID, replay,
/// logout, expiry, matching, and every attack token refused with a code AND a ledger record.
/// </summary>
public sealed class CiLoginTests : IAsyncLifetime
{
    private CiHarness _h = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _h = await CiHarness.CreateAsync();

    public async ValueTask DisposeAsync() => await _h.DisposeAsync();

    [Fact]
    public async Task A_github_job_gets_a_per_job_svid_of_its_entry_recorded_against_its_session()
    {
        var entry = await _h.MainEntryAsync();
        var r = await _h.LoginAsync(_h.Token(), "https://deploy.example.org", "https://registry.example.org");

        Assert.Equal(entry.SpiffeId, r.Session.SpiffeId);
        Assert.Equal(entry.Id, r.Entry.Id);
        using var leaf = X509CertificateLoader.LoadCertificate(r.Chain[0]);
        var v = X509SvidValidator.Validate([leaf, .. _h.Server.Ca.Intermediates], _h.Server.Ca.Bundle, _h.Ca.Time.GetUtcNow());
        Assert.True(v.IsValid, v.Error);
        Assert.Equal(entry.SpiffeId, v.Id?.ToString());
        Assert.Equal(2, r.Jwts.Count);
        Assert.Equal(["https://deploy.example.org"], r.Jwts[0].Audience);

        // The ledger: the issuance decided on the oidc: evidence for instance ci:<session>, then ci.login.
        var issued = Assert.Single(await _h.LedgerAsync("x509.issued"));
        Assert.Equal(CiHarness.ServerId, issued.Actor);
        Assert.Contains("oidc:claim:repository:org/app", issued.DataJson, StringComparison.Ordinal);
        Assert.Contains("ci:" + r.Session.Id, issued.DataJson, StringComparison.Ordinal);
        Assert.Equal(2, (await _h.LedgerAsync("jwt.issued")).Count);
        var login = Assert.Single(await _h.LedgerAsync(CiLedger.LoginKind));
        Assert.Equal(entry.SpiffeId, login.Subject);
        Assert.Contains(r.Session.Id, login.DataJson, StringComparison.Ordinal);

        var stored = await _h.Store.CiSessions.GetAsync(r.Session.Id, Ct);
        Assert.Equal(leaf.SerialNumber, stored?.Serial);
        Assert.Equal(r.Jwts.Select(j => j.Jti), stored!.Jtis);
    }

    [Fact]
    public async Task The_svid_and_jwts_never_outlive_the_job_token()
    {
        await _h.MainEntryAsync();
        var claims = _h.GitHubClaims(lifetime: TimeSpan.FromMinutes(3));
        var exp = DateTimeOffset.FromUnixTimeSeconds(claims["exp"]!.GetValue<long>());

        var r = await _h.LoginAsync(_h.Token(claims), "https://deploy.example.org");

        Assert.True(r.X509ExpiresAt <= exp, $"SVID until {r.X509ExpiresAt:u}, token until {exp:u}");
        Assert.True(r.X509ExpiresAt >= exp.AddSeconds(-5));
        Assert.True(r.Jwts[0].ExpiresAt <= exp);
        Assert.Equal(exp, r.Session.ExpiresAt);
    }

    [Fact]
    public async Task A_token_is_accepted_once_and_the_replay_is_refused_with_a_code_and_a_record()
    {
        await _h.MainEntryAsync();
        var token = _h.Token();
        await _h.LoginAsync(token);

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token));
        Assert.Equal(CiCodes.Replayed, e.Code);
        Assert.DoesNotContain(token, e.Message, StringComparison.Ordinal);
        var refused = Assert.Single(await _h.LedgerAsync(CiLedger.LoginRefusedKind));
        Assert.Contains(CiCodes.Replayed, refused.DataJson, StringComparison.Ordinal);
        Assert.DoesNotContain(token, refused.DataJson, StringComparison.Ordinal);
        Assert.Single(await _h.LedgerAsync("x509.issued"));
    }

    [Fact]
    public async Task A_token_without_jti_is_accepted_once_by_its_hash()
    {
        await _h.MainEntryAsync();
        var claims = _h.GitHubClaims();
        claims.Remove("jti");
        var token = _h.Token(claims);
        await _h.LoginAsync(token);
        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token));
        Assert.Equal(CiCodes.Replayed, e.Code);
    }

    [Fact]
    public async Task Logout_revokes_everything_of_the_session_and_the_token_cannot_log_in_again()
    {
        await _h.MainEntryAsync();
        var token = _h.Token();
        var r = await _h.LoginAsync(token, "https://deploy.example.org");
        using var leaf = X509CertificateLoader.LoadCertificate(r.Chain[0]);
        var session = (await _h.Store.CiSessions.GetAsync(r.Session.Id, Ct))!;
        var more = await _h.Logins.MintJwtAsync(session, ["https://other.example.org"], 0, SHA256.HashData(leaf.RawData), Ct);

        var revoked = await _h.Logins.LogoutAsync((await _h.Store.CiSessions.GetAsync(r.Session.Id, Ct))!, Ct);

        Assert.Equal(3, revoked);
        Assert.True(_h.Server.Revocations.IsSerialRevoked(leaf.SerialNumber));
        Assert.True(_h.Server.Revocations.IsJtiRevoked(r.Jwts[0].Jti));
        Assert.True(_h.Server.Revocations.IsJtiRevoked(more.Jti));
        var crl = await _h.Server.Revocations.CurrentCrlAsync(Ct);
        Assert.Equal(1, crl.Count);
        Assert.Single(await _h.LedgerAsync(CiLedger.LogoutKind));
        Assert.Single(await _h.LedgerAsync("svid.revoked"));
        Assert.Equal("logout", (await _h.Store.CiSessions.GetAsync(r.Session.Id, Ct))?.EndReason);

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token));
        Assert.Equal(CiCodes.SessionEnded, e.Code);
        Assert.Contains("replayed after", e.Message, StringComparison.Ordinal);
        Assert.Contains(CiCodes.SessionEnded, Assert.Single(await _h.LedgerAsync(CiLedger.LoginRefusedKind)).DataJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_ref_other_than_main_matches_no_entry_and_is_refused_without_consuming_the_token()
    {
        await _h.MainEntryAsync();
        var token = _h.Token(_h.GitHubClaims(@ref: "refs/heads/feature"));

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token));
        Assert.Equal(CiCodes.NoEntry, e.Code);
        Assert.Contains("--parent-id " + CiHarness.ServerId, e.Message, StringComparison.Ordinal);
        Assert.Contains(CiCodes.NoEntry, Assert.Single(await _h.LedgerAsync(CiLedger.LoginRefusedKind)).DataJson, StringComparison.Ordinal);
        Assert.Empty(await _h.LedgerAsync("x509.issued"));

        // Another repository's job does not match either; an entry for the feature branch then lets the same token in.
        var other = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(_h.Token(_h.GitHubClaims(repository: "org/other"))));
        Assert.Equal(CiCodes.NoEntry, other.Code);
        await _h.EntryAsync("spiffe://example.org/ci/preview", "oidc:claim:repository:org/app", "oidc:claim:ref:refs/heads/feature");
        Assert.Equal("spiffe://example.org/ci/preview", (await _h.LoginAsync(token)).Session.SpiffeId);
    }

    [Fact]
    public async Task Entries_of_an_agent_never_match_a_ci_login()
    {
        await _h.Store.Entries.CreateAsync([new Writ.Server.Storage.RegistrationEntry
        {
            SpiffeId = "spiffe://example.org/ci/deployer",
            ParentId = "spiffe://example.org/writ/agent/join_token/t1",
            Selectors = [Protocol.Evidence.Selector.Parse("oidc:claim:repository:org/app")],
        }], Ct);
        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(_h.Token()));
        Assert.Equal(CiCodes.NoEntry, e.Code);
    }

    [Fact]
    public async Task Entries_of_two_identities_matching_one_token_need_the_job_to_name_one()
    {
        await _h.MainEntryAsync();
        await _h.EntryAsync("spiffe://example.org/ci/tester", "oidc:claim:repository:org/app");

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(_h.Token()));
        Assert.Equal(CiCodes.Ambiguous, e.Code);

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var r = await _h.Logins.LoginAsync(_h.Token(), Csr.Create(key), [], "spiffe://example.org/ci/tester", "peer", Ct);
        Assert.Equal("spiffe://example.org/ci/tester", r.Session.SpiffeId);
    }

    [Fact]
    public async Task A_policy_forbid_refuses_the_login_hands_out_nothing_and_ends_the_session()
    {
        await _h.MainEntryAsync();
        Writ.Server.Storage.PolicyFileRecord[] files =
        [
            .. Writ.Server.Policy.WritPolicyCompiler.DefaultFiles,
            new("ci.cedar", """
                forbid (principal, action == Writ::Action::"IssueJwtSvid", resource) when { context.audience.contains("https://forbidden.example.org") };
                """),
        ];
        await _h.Store.Policies.PushAsync(new Writ.Server.Storage.StoredPolicyVersion { Files = files, Sha256 = Writ.Server.Policy.WritPolicyCompiler.Sha256(files), Author = "uid:0" }, null, [], Ct);
        _h.Server.PolicyChanged.Raise();
        await _h.Server.Policy.RefreshAsync(Ct);
        var token = _h.Token();

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token, "https://forbidden.example.org"));

        Assert.Equal(CiCodes.Denied, e.Code);
        Assert.Contains("writ explain", e.Message, StringComparison.Ordinal);
        Assert.Single(await _h.LedgerAsync("issuance.denied"));
        Assert.Single(await _h.LedgerAsync("x509.issued"));
        Assert.Single(await _h.LedgerAsync("svid.revoked"));   // the X.509-SVID issued before the JWT was refused is not left valid
        var again = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token));
        Assert.Equal(CiCodes.SessionEnded, again.Code);
    }

    [Fact]
    public async Task The_sweep_ends_sessions_whose_token_expired()
    {
        await _h.MainEntryAsync();
        var r = await _h.LoginAsync(_h.Token(_h.GitHubClaims(lifetime: TimeSpan.FromMinutes(2))));
        Assert.Equal(0, await _h.Logins.SweepAsync(Ct));

        _h.Ca.Time.Advance(TimeSpan.FromMinutes(3));

        Assert.Equal(1, await _h.Logins.SweepAsync(Ct));
        var s = await _h.Store.CiSessions.GetAsync(r.Session.Id, Ct);
        Assert.Equal("expired", s?.EndReason);
        Assert.Contains(r.Session.Id, Assert.Single(await _h.LedgerAsync(CiLedger.ExpiredKind)).DataJson, StringComparison.Ordinal);
        var e = await Assert.ThrowsAsync<WritException>(() => _h.Logins.MintJwtAsync(s!, ["a"], 0, new byte[32], Ct));
        Assert.Equal(CiCodes.SessionEnded, e.Code);
    }

    public static TheoryData<string> Attacks => ["another-audience", "expired", "not-yet-valid", "unknown-issuer", "foreign-key", "alg-none", "hs256-public-key", "garbage"];

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task An_attack_token_is_refused_with_a_code_and_a_ledger_record_and_issues_nothing(string attack)
    {
        await _h.MainEntryAsync();
        var claims = _h.GitHubClaims();
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var token = attack switch
        {
            "another-audience" => _h.Token(_h.Issuer.Claims("repo:org/app:ref:refs/heads/main", "https://other.example.org", null, new Dictionary<string, object?> { ["repository"] = "org/app", ["ref"] = "refs/heads/main" })),
            "expired" => _h.Token(Set(claims, ("iat", now - 3600), ("nbf", now - 3600), ("exp", now - 600))),
            "not-yet-valid" => _h.Token(Set(claims, ("nbf", now + 3600), ("exp", now + 7200))),
            "unknown-issuer" => _h.Token(Set(claims, ("iss", "https://evil.example.org"))),
            "foreign-key" => _h.Issuer.Mint(claims, _h.Issuer.AddKey(publish: false)),
            "alg-none" => OidcTestIssuer.MintUnsigned(claims),
            "hs256-public-key" => OidcTestIssuer.MintHs256(claims, Encoding.ASCII.GetBytes(_h.Issuer.Current.PublicPem), _h.Issuer.Current.Kid),
            _ => "not-a-jwt",
        };

        var e = await Assert.ThrowsAsync<WritException>(() => _h.LoginAsync(token));

        Assert.StartsWith("WRIT-", e.Code, StringComparison.Ordinal);
        Assert.NotEqual(WritErrorKind.Internal, e.Kind);
        Assert.DoesNotContain(token, e.Message, StringComparison.Ordinal);
        var record = Assert.Single(await _h.LedgerAsync(CiLedger.LoginRefusedKind));
        using var data = JsonDocument.Parse(record.DataJson);
        Assert.Equal(e.Code, data.RootElement.GetProperty("code").GetString());
        Assert.DoesNotContain(token, record.DataJson, StringComparison.Ordinal);
        Assert.Empty(await _h.LedgerAsync("x509.issued"));
        Assert.Null(await _h.Store.CiSessions.GetByTokenKeyAsync("sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token))), Ct));
        if (attack == "unknown-issuer")
        {
            Assert.Equal(Writ.Server.Oidc.OidcErrors.UnknownIssuer, e.Code);
            Assert.Equal("ci:https://evil.example.org", record.Subject);
        }
    }

    private static System.Text.Json.Nodes.JsonObject Set(System.Text.Json.Nodes.JsonObject claims, params (string Name, object Value)[] values)
    {
        foreach (var (n, v) in values)
            claims[n] = System.Text.Json.Nodes.JsonValue.Create(v);
        return claims;
    }
}
