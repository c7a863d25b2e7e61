using Writ.Spiffe;

namespace Writ.Workload.Tests;

public class AuthorizeTests
{
    private static readonly SpiffeId Api = SpiffeId.Parse("spiffe://example.org/api");
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://example.org/web");
    private static readonly SpiffeId Foreign = SpiffeId.Parse("spiffe://other.org/api");

    [Fact]
    public void Id_accepts_only_the_expected_identity()
    {
        var a = Authorize.Id(Api);
        Assert.Null(a(Api));
        Assert.Contains("not the expected", a(Web), StringComparison.Ordinal);
        Assert.NotNull(a(Foreign));   // same path, another trust domain
    }

    [Fact]
    public void MemberOf_refuses_another_trust_domain()
    {
        var a = Authorize.MemberOf("example.org");
        Assert.Null(a(Api));
        Assert.Null(a(Web));
        Assert.Contains("not a member", a(Foreign), StringComparison.Ordinal);
    }

    [Fact]
    public void Matching_and_OneOf_follow_their_argument()
    {
        Assert.Null(Authorize.Matching(p => p.Path.StartsWith("/api", StringComparison.Ordinal))(Api));
        Assert.NotNull(Authorize.Matching(p => p.Path.StartsWith("/api", StringComparison.Ordinal))(Web));
        Assert.Null(Authorize.OneOf(Api, Web)(Web));
        Assert.NotNull(Authorize.OneOf(Api)(Foreign));
    }
}
