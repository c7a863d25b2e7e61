using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Extensions;
using Writ.Policy.Json;
using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Json;

public class CedarJsonTests
{
    private static CedarSchema Schema()
    {
        Assert.True(CedarSchema.TryParseCedar("""
            namespace App {
              entity Group;
              entity User in [Group] { ip: ipaddr, score?: decimal, boss?: User, meta?: { since: datetime, spans: Set<duration> } } tags String;
              entity Doc;
              action view appliesTo { principal: [User], resource: [Doc], context: { src: ipaddr, max: decimal, who?: User } };
              action read in [view];
            }
            """, out var schema, out var errors), string.Join("; ", errors));
        return schema!;
    }

    [Fact]
    public void SchemaDirectsEntityAttributes()
    {
        Assert.True(Entities.TryParseJson("""
            [{"uid": {"type": "App::User", "id": "alice"},
              "attrs": {"ip": "10.0.0.1", "score": "1.5", "boss": {"type": "App::User", "id": "bob"},
                        "meta": {"since": "2024-01-01", "spans": ["1h", "-2d"]}},
              "parents": [{"type": "App::Group", "id": "g"}], "tags": {"t": "x"}}]
            """, Schema(), out var entities, out var error), error);
        Assert.True(entities!.TryGet(new EntityUid("App::User", "alice"), out var alice));
        Assert.IsType<IpAddrValue>(alice.Attributes["ip"]);
        Assert.Equal(15000, Assert.IsType<DecimalValue>(alice.Attributes["score"]).Scaled);
        Assert.Equal(new EntityUid("App::User", "bob"), Assert.IsType<EntityValue>(alice.Attributes["boss"]).Uid);
        var meta = Assert.IsType<RecordValue>(alice.Attributes["meta"]);
        Assert.IsType<DatetimeValue>(meta.Fields["since"]);
        Assert.All(Assert.IsType<SetValue>(meta.Fields["spans"]).Items, v => Assert.IsType<DurationValue>(v));

        // the schema's action hierarchy is added to the store
        Assert.True(entities.TryGet(new EntityUid("App::Action", "read"), out var read));
        Assert.Contains(new EntityUid("App::Action", "view"), read.Ancestors);
    }

    [Fact]
    public void ActionsInTheDataMustMatchTheirDeclaration()
    {
        // listed with all ancestors and no attributes, an action may appear in the data (as the corpus files do)
        Assert.True(Entities.TryParseJson("""[{"uid": {"type": "App::Action", "id": "read"}, "attrs": {}, "parents": [{"type": "App::Action", "id": "view"}]}]""",
            Schema(), out _, out var error), error);
    }

    [Fact]
    public void WithoutSchemaStringsStayStrings()
    {
        Assert.True(Entities.TryParseJson("""[{"uid": {"type": "U", "id": "a"}, "attrs": {"ip": "10.0.0.1", "r": {"type": "U", "id": "b"}}, "parents": []}]""",
            null, out var entities, out var error), error);
        Assert.True(entities!.TryGet(new EntityUid("U", "a"), out var a));
        Assert.IsType<StringValue>(a.Attributes["ip"]);
        Assert.IsType<RecordValue>(a.Attributes["r"]);
    }

    [Fact]
    public void ContextIsShapedByTheActionsContextType()
    {
        var schema = Schema();
        Assert.True(CedarJson.TryParseContext("""{"src": "192.168.1.1", "max": "2.5", "who": {"type": "App::User", "id": "a"}}""",
            schema, new EntityUid("App::Action", "view"), out var ctx, out var error), error);
        Assert.IsType<IpAddrValue>(ctx!.Fields["src"]);
        Assert.IsType<DecimalValue>(ctx.Fields["max"]);
        Assert.IsType<EntityValue>(ctx.Fields["who"]);
        Assert.False(CedarJson.TryParseContext("""{"src": "not-an-ip", "max": "1.0"}""", schema, new EntityUid("App::Action", "view"), out _, out error));
        Assert.Contains("not-an-ip", error, StringComparison.Ordinal);
        Assert.False(CedarJson.TryParseContext("""{"max": "1.0"}""", schema, new EntityUid("App::Action", "view"), out _, out error));
        Assert.Contains("missing the required attribute", error, StringComparison.Ordinal);
        Assert.False(CedarJson.TryParseContext("""{"src": "1.1.1.1", "max": "1.0", "admin": true}""", schema, new EntityUid("App::Action", "view"), out _, out error));
        Assert.Contains("does not declare", error, StringComparison.Ordinal);
        Assert.False(CedarJson.TryParseContext("""{}""", schema, new EntityUid("App::Action", "nope"), out _, out error));
        Assert.Contains("not declared", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""[{"uid": {"type": "App::Nope", "id": "a"}, "attrs": {}, "parents": []}]""", "does not declare")]
    [InlineData("""[{"uid": {"type": "App::User", "id": "a"}, "attrs": {}, "parents": []}]""", "missing the required attribute")]
    [InlineData("""[{"uid": {"type": "App::User", "id": "a"}, "attrs": {"ip": "1.1.1.1", "extra": 1}, "parents": []}]""", "does not declare")]
    [InlineData("""[{"uid": {"type": "App::User", "id": "a"}, "attrs": {"ip": "1.1.1.1", "boss": {"type": "App::Doc", "id": "d"}}, "parents": []}]""", "not of type")]
    [InlineData("""[{"uid": {"type": "App::User", "id": "a"}, "attrs": {"ip": "1.1.1.1"}, "parents": [{"type": "App::Doc", "id": "d"}]}]""", "cannot have a parent")]
    [InlineData("""[{"uid": {"type": "App::Doc", "id": "d"}, "attrs": {}, "parents": [], "tags": {"a": "b"}}]""", "declares no tags")]
    [InlineData("""[{"uid": {"type": "App::User", "id": "a"}, "attrs": {"ip": "1.1.1.1"}, "parents": [], "tags": {"a": 1}}]""", "not of type")]
    [InlineData("""[{"uid": {"type": "App::Action", "id": "delete"}, "attrs": {}, "parents": []}]""", "not declared")]
    [InlineData("""[{"uid": {"type": "App::Action", "id": "read"}, "attrs": {}, "parents": []}]""", "does not match its schema declaration")]
    [InlineData("""[{"uid": {"type": "App::Action", "id": "view"}, "attrs": {}, "parents": [{"type": "App::Action", "id": "read"}]}]""", "does not match its schema declaration")]
    [InlineData("""[{"uid": {"type": "App::Action", "id": "read"}, "attrs": {"x": 1}, "parents": [{"type": "App::Action", "id": "view"}]}]""", "does not match its schema declaration")]
    public void EntitiesThatBreakTheSchemaAreRejected(string json, string expected)
    {
        // An attacker who controls entity data must not smuggle in wrongly typed attributes or undeclared parents.
        Assert.False(Entities.TryParseJson(json, Schema(), out var entities, out var error));
        Assert.Null(entities);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void ExplicitEscapesAndOffsetExtension()
    {
        Assert.True(CedarJson.TryParseValue("""
            {"e": {"__entity": {"type": "A::B", "id": "x"}},
             "d": {"__extn": {"fn": "offset", "args": [{"__extn": {"fn": "datetime", "arg": "1970-01-01"}}, {"__extn": {"fn": "duration", "arg": "1500ms"}}]}},
             "big": 9223372036854775807}
            """, null, out var v, out var error), error);
        var r = Assert.IsType<RecordValue>(v);
        Assert.Equal(new EntityUid("A::B", "x"), Assert.IsType<EntityValue>(r.Fields["e"]).Uid);
        Assert.Equal(1500, Assert.IsType<DatetimeValue>(r.Fields["d"]).EpochMilliseconds);
        Assert.Equal(long.MaxValue, Assert.IsType<LongValue>(r.Fields["big"]).Value);
    }

    [Fact]
    public void HandwrittenSampleAuthorizesWithSchemaDirectedContext()
    {
        var schema = Schema();
        Assert.True(PolicySet.TryParse("""
            permit(principal, action in App::Action::"view", resource) when { context.src.isInRange(ip("192.168.0.0/16")) && context.max.lessThan(decimal("3.0")) };
            """, out var set, out _));
        Assert.True(Entities.TryParseJson("[]", schema, out var entities, out var error), error);
        Assert.True(CedarJson.TryParseContext("""{"src": "192.168.1.1", "max": "2.5"}""", schema, new EntityUid("App::Action", "view"), out var ctx, out error), error);
        var r = Authorizer.IsAuthorized(new Request(new EntityUid("App::User", "a"), new EntityUid("App::Action", "view"), new EntityUid("App::Doc", "d"), ctx), set!, entities!);
        Assert.Equal(Decision.Allow, r.Decision);
    }
}
