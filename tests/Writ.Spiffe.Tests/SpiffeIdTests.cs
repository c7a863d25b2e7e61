namespace Writ.Spiffe.Tests;

public sealed class SpiffeIdTests
{
    [Fact]
    public void Parses_parts_and_round_trips()
    {
        var id = SpiffeId.Parse("spiffe://example.org/ns/prod/sa/web");
        Assert.Equal("example.org", id.TrustDomain.Name);
        Assert.Equal("/ns/prod/sa/web", id.Path);
        Assert.Equal(["ns", "prod", "sa", "web"], id.Segments);
        Assert.Equal("spiffe://example.org/ns/prod/sa/web", id.ToString());
        Assert.True(id.MemberOf(TrustDomain.Parse("example.org")));
        Assert.False(id.MemberOf(TrustDomain.Parse("example.com")));
    }

    [Fact]
    public void Equality_is_on_the_full_text()
    {
        var a = SpiffeId.Parse("spiffe://example.org/a");
        var b = SpiffeId.FromSegments(TrustDomain.Parse("example.org"), "a");
        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, SpiffeId.Parse("spiffe://example.org/A"));
    }

    [Fact]
    public void Trust_domain_accepts_name_or_id()
    {
        var td = TrustDomain.Parse("spiffe://example.org/x/y");
        Assert.Equal("example.org", td.Name);
        Assert.Equal("spiffe://example.org", td.IdString);
        Assert.Equal(SpiffeId.Parse("spiffe://example.org"), td.Id);
        Assert.Equal(td, TrustDomain.Parse("example.org"));
        Assert.Equal("example.org", td.ToString());
        Assert.False(td.IsZero);
        Assert.True(default(TrustDomain).IsZero);
    }

    [Fact]
    public void Parse_throws_FormatException_with_the_rule()
    {
        var e = Assert.Throws<FormatException>(() => SpiffeId.Parse("spiffe://Example.org/a"));
        Assert.Contains("lowercase letters", e.Message, StringComparison.Ordinal);
        var e2 = Assert.Throws<FormatException>(() => TrustDomain.Parse("bad$td"));
        Assert.Contains("trust domain characters", e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromSegments_refuses_bad_segments()
    {
        var td = TrustDomain.Parse("example.org");
        Assert.Throws<ArgumentException>(() => SpiffeId.FromSegments(td, "a/b"));
        Assert.Throws<ArgumentException>(() => SpiffeId.FromSegments(td, ".."));
        Assert.Throws<ArgumentException>(() => SpiffeId.FromSegments(td, ""));
        Assert.Throws<ArgumentException>(() => SpiffeId.FromSegments(default, "a"));
        Assert.Equal("spiffe://example.org", SpiffeId.FromSegments(td).ToString());
    }

    [Fact]
    public void Random_input_never_throws()
    {
        var rng = new Random(7);
        const string alphabet = "spife:/.-_aZ09%@?#[]$ \u00e9\u0000";
        for (var i = 0; i < 5000; i++)
        {
            var chars = new char[rng.Next(0, 40)];
            for (var j = 0; j < chars.Length; j++)
            {
                chars[j] = alphabet[rng.Next(alphabet.Length)];
            }
            var text = (i % 3 == 0 ? "spiffe://" : "") + new string(chars);
            if (SpiffeId.TryParse(text, out var id, out var error))
            {
                Assert.Equal(text, id.ToString()); // accepted IDs are canonical: nothing is normalized away
                Assert.Null(error);
            }
            else
            {
                Assert.Null(id);
                Assert.False(string.IsNullOrEmpty(error));
            }
            _ = TrustDomain.TryParse(text, out _, out _);
        }
    }
}
