using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Storage;

public class SelectorTests
{
    [Theory]
    [InlineData("unix:uid:1000", "unix", "uid:1000")]
    [InlineData("k8s:pod-label:app=web", "k8s", "pod-label:app=web")]
    [InlineData("docker_2:id:abc", "docker_2", "id:abc")]
    [InlineData("a:b", "a", "b")]
    public void Parses_at_first_colon(string text, string type, string value)
    {
        Assert.True(Selector.TryParse(text, out var s, out var error), error);
        Assert.Equal(new Selector(type, value), s);
        Assert.Equal(text, s.ToString());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("unix")]
    [InlineData(":uid:1000")]
    [InlineData("unix:")]
    [InlineData("Unix:uid:1000")]
    [InlineData("un ix:uid:1000")]
    [InlineData("unix:uid: 1000")]
    [InlineData("unix:uid:1000\n")]
    [InlineData("unix:uid:\u00001000")]
    [InlineData("un.ix:uid:1000")]
    public void Rejects_malformed_with_one_line_reason(string? text)
    {
        Assert.False(Selector.TryParse(text, out var s, out var error));
        Assert.Null(s);
        Assert.False(string.IsNullOrWhiteSpace(error));
        Assert.DoesNotContain('\n', error);
    }
}
