using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Extensions;
using Writ.Policy.Json;
using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Json;

public class CedarJsonRoundTripTests
{
    [Fact]
    public void EntitiesRoundTripThroughJson()
    {
        const string json = """
            [{"uid": {"type": "User", "id": "a\"b"}, "attrs": {"n": -9223372036854775808, "s": "x", "set": [1, "y", {"__entity": {"type": "G", "id": "g"}}],
               "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.0/8"}}, "d": {"__extn": {"fn": "decimal", "arg": "-1.5"}},
               "t": {"__extn": {"fn": "datetime", "arg": "2024-01-01T10:00:00Z"}}, "du": {"__extn": {"fn": "duration", "arg": "-1d"}},
               "r": {"nested": {"deep": true}}},
              "parents": [{"type": "G", "id": "g"}], "tags": {"k": "v"}},
             {"uid": {"type": "G", "id": "g"}, "attrs": {}, "parents": []}]
            """;
        Assert.True(Entities.TryParseJson(json, null, out var first, out var error), error);
        var written = CedarJson.ToJson(first!);
        Assert.True(Entities.TryParseJson(written, null, out var second, out error), error + "\n" + written);
        Assert.Equal(first!.Count, second!.Count);
        foreach (var e in first.All)
        {
            Assert.True(second.TryGet(e.Uid, out var other));
            Assert.Equal(e.Attributes.Count, other.Attributes.Count);
            foreach (var (k, v) in e.Attributes) Assert.Equal(v, other.Attributes[k]);
            Assert.True(e.Parents.SetEquals(other.Parents));
            Assert.Equal(e.Tags.Count, other.Tags.Count);
        }
    }

    [Fact]
    public void ParsesARequest()
    {
        Assert.True(CedarJson.TryParseRequest("""
            {"principal": {"type": "User", "id": "a"}, "action": {"__entity": {"type": "Action", "id": "v"}}, "resource": {"type": "Doc", "id": "d"},
             "context": {"ip": {"__extn": {"fn": "ip", "arg": "1.2.3.4"}}}}
            """, null, out var request, out var error), error);
        Assert.Equal(new EntityUid("Action", "v"), request!.Action);
        Assert.IsType<IpAddrValue>(request.Context.Fields["ip"]);
        Assert.False(CedarJson.TryParseRequest("""{"principal": {"type": "User", "id": "a"}}""", null, out _, out error));
        Assert.Contains("principal, action and resource", error, StringComparison.Ordinal);
    }
}
