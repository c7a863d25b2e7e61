using Writ.Server.Api;
using Writ.Spiffe;

namespace Writ.Server.Tests.Api;

/// <summary>
/// A Sync stream reuses its last chain verification (issue #16 fan-out) only for the same bundle, within a minute and
/// before the certificate ends: each way an attacker's stream could outlive its credential forces a new verification.
/// </summary>
public sealed class StreamCertificateCheckTests
{
    private static readonly SpiffeId Agent = SpiffeId.Parse("spiffe://example.org/writ/agent/join_token/a");
    private static readonly DateTimeOffset Now = new(2026, 12, 8, 3, 0, 0, TimeSpan.Zero);
    private static readonly object Bundle = new();
    private static readonly object Intermediates = new();

    [Fact]
    public void Nothing_is_reused_before_a_first_verification()
    {
        Assert.Null(new StreamCertificateCheck().StillValid(Bundle, Intermediates, Now));
    }

    [Fact]
    public void The_same_bundle_within_a_minute_reuses_the_verification()
    {
        var check = new StreamCertificateCheck();
        check.Validated(Agent, Bundle, Intermediates, Now, Now.AddHours(1).UtcDateTime);
        Assert.Equal(Agent, check.StillValid(Bundle, Intermediates, Now.AddSeconds(59)));
    }

    [Fact]
    public void A_new_bundle_forces_a_new_verification()
    {
        // An authority removed from the bundle (rotation, a compromised server's CA dropped) moves its sequence.
        var check = new StreamCertificateCheck();
        check.Validated(Agent, Bundle, Intermediates, Now, Now.AddHours(1).UtcDateTime);
        Assert.Null(check.StillValid(new object(), Intermediates, Now.AddSeconds(1)));
    }

    [Fact]
    public void New_intermediates_force_a_new_verification()
    {
        // Under an upstream authority the bundle holds only the upstream roots: an intermediate that went away (a server's
        // lost keys, a pruned authority) changes the intermediates, not the bundle.
        var check = new StreamCertificateCheck();
        check.Validated(Agent, Bundle, Intermediates, Now, Now.AddHours(1).UtcDateTime);
        Assert.Null(check.StillValid(Bundle, new object(), Now.AddSeconds(1)));
    }

    [Fact]
    public void A_minute_after_the_verification_it_is_made_again()
    {
        var check = new StreamCertificateCheck();
        check.Validated(Agent, Bundle, Intermediates, Now, Now.AddHours(1).UtcDateTime);
        Assert.Null(check.StillValid(Bundle, Intermediates, Now + StreamCertificateCheck.MaxAge));
    }

    [Fact]
    public void A_certificate_that_ends_within_the_minute_is_verified_again_at_its_end()
    {
        var check = new StreamCertificateCheck();
        check.Validated(Agent, Bundle, Intermediates, Now, Now.AddSeconds(10).UtcDateTime);
        Assert.Equal(Agent, check.StillValid(Bundle, Intermediates, Now.AddSeconds(9)));
        Assert.Null(check.StillValid(Bundle, Intermediates, Now.AddSeconds(10)));
    }
}
