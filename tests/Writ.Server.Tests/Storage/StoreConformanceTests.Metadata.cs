using Writ.Server.Storage;

namespace Writ.Server.Tests.Storage;

/// <summary>Facts recorded at the first start (the trust domain the data belongs to), on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    [Fact]
    public async Task Metadata_is_recorded_once_and_a_later_value_never_replaces_it()
    {
        Assert.Null(await Store.Metadata.GetAsync("trust_domain", Ct));
        Assert.Equal("example.org", await Store.Metadata.SetIfAbsentAsync("trust_domain", "example.org", Ct));
        // A server configured for another trust domain learns the recorded one and changes nothing.
        Assert.Equal("example.org", await Store.Metadata.SetIfAbsentAsync("trust_domain", "other.org", Ct));
        await ReopenAsync();
        Assert.Equal("example.org", await Store.Metadata.GetAsync("trust_domain", Ct));
    }

    [Fact]
    public async Task Concurrent_first_records_from_two_stores_agree_on_one_winner()
    {
        var other = await OpenExtraAsync();
        var results = await Task.WhenAll(
            Enumerable.Range(0, 8).Select(i => (i % 2 == 0 ? Store : other).Metadata.SetIfAbsentAsync("trust_domain", $"td{i}.example", Ct)));
        Assert.Single(results.Distinct(StringComparer.Ordinal));
        Assert.Equal(results[0], await other.Metadata.GetAsync("trust_domain", Ct));
    }
}
