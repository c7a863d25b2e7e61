using System.Text.Json;
using Writ.Protocol.Evidence;
using Writ.Server.Oidc;

namespace Writ.Server.Tests.Oidc;

/// <summary>Selectors from a validated token: iss, sub and the configured claims only; values that cannot be selectors are left out, never escaped.</summary>
public sealed class OidcSelectorsTests
{
    private const string Issuer = "https://token.actions.githubusercontent.com";

    private static ValidatedToken Token(string payload) => new()
    {
        Issuer = Issuer,
        Subject = JsonDocument.Parse(payload).RootElement.GetProperty("sub").GetString()!,
        Audiences = ["writ"],
        ExpiresAt = DateTimeOffset.UnixEpoch.AddDays(1),
        Claims = JsonDocument.Parse(payload).RootElement.Clone(),
        TokenSha256 = new string('0', 64),
        Algorithm = "RS256",
    };

    private static OidcIssuerConfig Config(params string[] claims) => new() { Issuer = Issuer, Audiences = ["writ"], Claims = claims };

    private static List<string> Strings(OidcSelectors.Result r) => [.. r.Selectors.Select(s => s.ToString())];

    [Fact]
    public void Issuer_subject_and_configured_claims_become_selectors()
    {
        var token = Token("""
            {"iss":"https://token.actions.githubusercontent.com","sub":"repo:acme/app:ref:refs/heads/main",
             "repository":"acme/app","ref":"refs/heads/main","run_number":42,"ref_protected":true,"runner_environment":"github-hosted",
             "groups":["admins","devs",7,false],"actor":"mallory"}
            """);
        var r = OidcSelectors.From(token, Config("repository", "ref", "run_number", "ref_protected", "groups", "not_in_token"));

        Assert.Equal(
        [
            "oidc:claim:groups:7",
            "oidc:claim:groups:admins",
            "oidc:claim:groups:devs",
            "oidc:claim:groups:false",
            "oidc:claim:ref:refs/heads/main",
            "oidc:claim:ref_protected:true",
            "oidc:claim:repository:acme/app",
            "oidc:claim:run_number:42",
            "oidc:iss:https://token.actions.githubusercontent.com",
            "oidc:sub:repo:acme/app:ref:refs/heads/main",
        ], Strings(r));
        Assert.Empty(r.Omitted);
        Assert.DoesNotContain(r.Selectors, s => s.Value.Contains("actor", StringComparison.Ordinal));   // not configured
        Assert.All(r.Selectors, s => Assert.True(Selector.IsValid(s.Type, s.Value, out _)));
    }

    [Fact]
    public void Objects_and_nested_lists_give_no_selector_and_are_reported()
    {
        var token = Token("""{"sub":"job","ctx":{"a":"b"},"nested":[["x"],{"y":1},"ok"],"nothing":null}""");
        var r = OidcSelectors.From(token, Config("ctx", "nested", "nothing"));
        Assert.Equal(["oidc:claim:nested:ok", "oidc:iss:" + Issuer, "oidc:sub:job"], Strings(r));
        Assert.Equal(3, r.Omitted.Count);
    }

    [Fact]
    public void A_value_with_whitespace_is_omitted_never_escaped_into_another_selector()
    {
        // An attacker who controls a claim value (a branch name, say) tries to smuggle a second selector in.
        var token = Token("""{"sub":"job","ref":"main oidc:sub:admin","environment":"prod\u0000","workflow":"","ok":"main"}""");
        var r = OidcSelectors.From(token, Config("ref", "environment", "workflow", "ok"));
        Assert.Equal(["oidc:claim:ok:main", "oidc:iss:" + Issuer, "oidc:sub:job"], Strings(r));
        Assert.Equal(3, r.Omitted.Count);
        Assert.DoesNotContain(r.Selectors, s => s.Value.Contains("admin", StringComparison.Ordinal));
        Assert.All(r.Omitted, line => Assert.DoesNotContain("admin", line, StringComparison.Ordinal));
    }

    [Fact]
    public void A_subject_that_cannot_be_a_selector_is_omitted()
    {
        var r = OidcSelectors.From(Token("""{"sub":"system:serviceaccount:ci runner"}"""), Config());
        Assert.Equal(["oidc:iss:" + Issuer], Strings(r));
        Assert.Single(r.Omitted);
    }

    [Fact]
    public void A_claim_name_with_a_colon_cannot_pose_as_another_claim()
    {
        // Configured "a:b" with value "c" would read as claim "a" with value "b:c": such names give no selector.
        var r = OidcSelectors.From(Token("""{"sub":"job","a:b":"c","a":"b:c"}"""), Config("a:b"));
        Assert.Equal(["oidc:iss:" + Issuer, "oidc:sub:job"], Strings(r));
        Assert.Single(r.Omitted);
    }
}
