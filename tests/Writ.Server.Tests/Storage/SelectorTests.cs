using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Storage;

public class SelectorTests
{
    [Fact]
    public void Parse_of_a_bad_selector_throws_the_stable_code()
    {
        var ex = Assert.Throws<Writ.Protocol.Errors.WritException>(() => Selector.Parse("Unix:uid:1000"));
        Assert.Equal("WRIT-SELECTOR-INVALID", ex.Code);
        Assert.Equal(Writ.Protocol.Errors.WritErrorKind.InvalidArgument, ex.Kind);
        Assert.Equal(new Selector("unix", "uid:1000"), Selector.Parse("unix:uid:1000"));
    }

    [Fact]
    public void An_entry_matches_when_its_selectors_are_a_subset_of_the_workloads()
    {
        var workload = SelectorMatch.SetOf([new("unix", "uid:1000"), new("unix", "gid:1000"), new("container", "id:abc")]);

        Assert.True(SelectorMatch.Matches([new Selector("unix", "uid:1000")], workload));
        Assert.True(SelectorMatch.Matches([new Selector("unix", "uid:1000"), new Selector("container", "id:abc")], workload));
        Assert.False(SelectorMatch.Matches([new Selector("unix", "uid:1000"), new Selector("unix", "uid:0")], workload));
        Assert.False(SelectorMatch.Matches([], workload));   // an entry with no selectors matches nothing
        Assert.False(SelectorMatch.Matches([new Selector("unix", "UID:1000")], workload));   // ordinal, case-sensitive
        // "type:value" strings would make these two equal; the one rule compares type and value apart.
        Assert.False(SelectorMatch.Matches([new Selector("unix:uid", "1000")], workload));
        Assert.Equal(new Selector("unix", "uid:0"), SelectorMatch.FirstMissing([new Selector("unix", "uid:1000"), new Selector("unix", "uid:0")], workload));
        var proto = new Writ.Protocol.Agent.Entry { Selectors = { new Selector("unix", "gid:1000").ToProto() } };
        Assert.True(EvidenceProto.Matches(proto.Selectors, workload));
    }

    [Fact]
    public void Evidence_round_trips_through_the_protocol()
    {
        Assert.True(WorkloadEvidence.TryCreate([("unix", "uid:1"), ("cgroup", "path:/a")], [new("unix.pid", "7")], "7:9", out var ev, out var error), error);
        Assert.True(EvidenceProto.TryFromProto(ev!.ToProto(), out var back, out error), error);
        Assert.Equal(ev.Selectors, back!.Selectors);
        Assert.Equal(ev.Facts, back.Facts);
        Assert.Equal("7:9", back.InstanceId);
        Assert.True(new Selector("a", "z").CompareTo(new Selector("b", "a")) < 0);
    }

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
