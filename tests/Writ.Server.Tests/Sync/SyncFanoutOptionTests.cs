using Writ.Server.Configuration;

namespace Writ.Server.Tests.Sync;

/// <summary>The <c>sync.fanout</c> key (issue #16): shared by default, per_stream on request, anything else refused in one line.</summary>
public sealed class SyncFanoutOptionTests
{
    private static (ServerOptions? Options, IReadOnlyList<string> Errors) Build(string? fanout)
    {
        var c = new ConfigSources(ServerConfigLoader.Keys);
        c.Set("trust_domain", "example.org", "test");
        if (fanout is not null)
            c.Set("sync.fanout", fanout, "flag --sync-fanout");
        var o = ServerConfigLoader.Build(c, out var errors);
        return (o, errors);
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData("shared", true)]
    [InlineData("per_stream", false)]
    public void Known_modes_are_taken(string? value, bool shared)
    {
        var (o, errors) = Build(value);
        Assert.Empty(errors);
        Assert.Equal(shared, o!.SharedSyncFeed);
    }

    [Theory]
    [InlineData("Shared")]
    [InlineData("per-stream")]
    [InlineData("")]
    public void Other_values_are_refused_naming_the_key_and_the_choices(string value)
    {
        var (o, errors) = Build(value);
        Assert.Null(o);
        var error = Assert.Single(errors);
        Assert.Contains("sync.fanout", error, StringComparison.Ordinal);
        Assert.Contains("shared, per_stream", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
    }
}
