using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Differential;

/// <summary>Engine differences from the reference that the differential tests found, pinned down one by one.</summary>
public class RegressionTests
{
    private const string SchemaText = """
        entity Group in [Group] { name: String };
        entity User in [Group] { name: String, age?: Long, boss?: User, ip?: ipaddr, rec: { a: Long, b?: String } } tags String;
        entity Doc { size: Long };
        entity Color enum ["red", "green"];
        action read appliesTo { principal: [User], resource: [Doc], context: { n: Long, s?: String } };
        """;

    private static readonly CedarSchema Schema = ParseSchema();

    private static CedarSchema ParseSchema()
    {
        Assert.True(CedarSchema.TryParseCedar(SchemaText, out var s, out var errors), string.Join(" | ", errors));
        return s!;
    }

    private const string GoodUser = """{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "rec": {"a": 1}}, "parents": [{"type": "Group", "id": "g"}], "tags": {"t": "x"}}""";

    [Fact]
    public void ConformingEntitiesParseWithTheSchema()
    {
        Assert.True(Entities.TryParseJson("[" + GoodUser + """, {"uid": {"type": "Group", "id": "g"}, "attrs": {"name": "G"}, "parents": []}]""", Schema, out var e, out var error), error);
        Assert.Equal(2 + 1, e!.Count);   // plus the schema's action
    }

    [Theory]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"rec": {"a": 1}}, "parents": []}""", "required attribute \"name\"")]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "rec": {"a": 1}, "admin": true}, "parents": []}""", "\"admin\", which the schema does not declare")]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "age": "42", "rec": {"a": 1}}, "parents": []}""", "is not of type Long")]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "rec": {}}, "parents": []}""", "required attribute \"a\"")]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "rec": {"a": 1, "z": 2}}, "parents": []}""", "\"z\", which the schema does not declare")]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "boss": {"__entity": {"type": "Doc", "id": "d"}}, "rec": {"a": 1}}, "parents": []}""", "is not of type User")]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "rec": {"a": 1}}, "parents": [{"type": "Doc", "id": "d"}]}""", "cannot have a parent of type Doc")]
    [InlineData("""{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "rec": {"a": 1}}, "parents": [], "tags": {"t": 1}}""", "is not of type String")]
    [InlineData("""{"uid": {"type": "Doc", "id": "d"}, "attrs": {"size": 1}, "parents": [], "tags": {"t": 1}}""", "declares no tags")]
    [InlineData("""{"uid": {"type": "Admin", "id": "root"}, "attrs": {}, "parents": []}""", "does not declare")]
    [InlineData("""{"uid": {"type": "Color", "id": "blue"}, "attrs": {}, "parents": []}""", "enumerated ids of Color")]
    [InlineData("""{"uid": {"type": "Action", "id": "write"}, "attrs": {}, "parents": []}""", "Action::\"write\" is not declared in the schema")]
    public void EntitiesThatBreakTheSchemaAreRefused(string entity, string why)
    {
        Assert.False(Entities.TryParseJson("[" + entity + "]", Schema, out var e, out var error));
        Assert.Null(e);
        Assert.Contains(why, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
        Assert.True(Entities.TryParseJson("[" + entity + "]", null, out _, out error), error);   // without a schema anything well-formed goes
    }

    [Theory]
    [InlineData("ip(\"1.2.3.4\",).isIpv4()", true)]
    [InlineData("[1, 2].contains(1,)", true)]
    [InlineData("decimal(\"1.0\").lessThan(decimal(\"2.0\"),)", true)]
    [InlineData("[1, 2,].contains(1)", true)]
    [InlineData("ip(,).isIpv4()", false)]
    [InlineData("ip(\"1.2.3.4\",,).isIpv4()", false)]
    [InlineData("ip(\"1.2.3.4\").isIpv4(,)", false)]
    [InlineData("[1,,2].isEmpty()", false)]
    public void CallArgumentsMayEndWithOneTrailingCommaAsInCedar(string expr, bool parses)
    {
        Assert.Equal(parses, PolicySet.TryParse("permit(principal, action, resource) when { " + expr + " };", out var set, out var errors));
        if (parses) Assert.True(Authorizer.IsAuthorized(new Request(new EntityUid("U", "a"), new EntityUid("Action", "a"), new EntityUid("U", "a")), set!, Entities.Empty).IsAllowed);
        else Assert.NotEmpty(errors);
    }

    /// <summary>Expected answers are cedar-wasm 4.12.0's (checkParsePolicySet).</summary>
    [Theory]
    [InlineData("!-1 == 1", false)]
    [InlineData("-!true", false)]
    [InlineData("!!!!true", true)]
    [InlineData("!!!!!true", false)]
    [InlineData("----1 == 1", true)]
    [InlineData("- -1 == 1", true)]
    [InlineData("!(-1 == 1)", true)]
    [InlineData("context.is", false)]
    [InlineData("context.in", false)]
    [InlineData("context.true", false)]
    [InlineData("context.then", false)]
    [InlineData("context.__cedar", false)]
    [InlineData("context.permit", true)]
    [InlineData("context.principal", true)]
    [InlineData("context[\"is\"]", true)]
    [InlineData("context.ip.is.isIpv6()", false)]
    [InlineData("context has is", false)]
    [InlineData("context has true", false)]
    [InlineData("principal has a.is", false)]
    [InlineData("{is: 1} == {}", false)]
    [InlineData("{if: 1} == {}", false)]
    [InlineData("-9223372036854775808 < 0", true)]
    [InlineData("-9223372036854775808[\"a\"]", false)]
    [InlineData("-9223372036854775808.a", false)]
    [InlineData("-1[\"a\"] == 1", true)]
    public void ExpressionsParseExactlyAsInCedar(string expr, bool parses)
    {
        Assert.Equal(parses, PolicySet.TryParse("permit(principal, action, resource) when { " + expr + " };", out _, out var errors));
        if (!parses) Assert.All(errors, e => Assert.DoesNotContain('\n', e.Message));
    }

    [Theory]
    [InlineData("permit(principal, action, resource,);", true)]
    [InlineData("permit(principal, action, resource,,);", false)]
    [InlineData("permit(principal, action,);", false)]
    public void ScopesParseExactlyAsInCedar(string policy, bool parses) =>
        Assert.Equal(parses, PolicySet.TryParse(policy, out _, out _));

    [Fact]
    public void SchemaDirectedExtensionValuesMayOmitTheEscape()
    {
        const string json = """[{"uid": {"type": "User", "id": "a"}, "attrs": {"name": "A", "rec": {"a": 1}, "ip": {"fn": "ip", "arg": "10.0.0.1"}}, "parents": []}]""";
        Assert.True(Entities.TryParseJson(json, Schema, out var e, out var error), error);
        Assert.True(e!.TryGet(new EntityUid("User", "a"), out var user));
        Assert.IsType<Extensions.IpAddrValue>(user.Attributes["ip"]);
        Assert.True(Entities.TryParseJson(json, null, out e, out error), error);   // without a schema it is just a record
        Assert.True(e!.TryGet(new EntityUid("User", "a"), out user));
        Assert.IsType<RecordValue>(user.Attributes["ip"]);
        Assert.False(Entities.TryParseJson(json.Replace("10.0.0.1", "10.0.0.300", StringComparison.Ordinal), Schema, out _, out error));
        Assert.Contains("not an IP address", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"n": 1}""", true)]
    [InlineData("""{"n": 1, "s": "x"}""", true)]
    [InlineData("""{}""", false)]
    [InlineData("""{"n": "1"}""", false)]
    [InlineData("""{"n": 1, "extra": true}""", false)]
    [InlineData("""{"n": 1, "s": 2}""", false)]
    public void ContextMustConformToTheActionsContextType(string json, bool ok)
    {
        var read = new EntityUid("Action", "read");
        Assert.Equal(ok, CedarJson.TryParseContext(json, Schema, read, out var context, out var error));
        Assert.Equal(ok, context is not null);
        if (!ok) Assert.Contains("context of Action::\"read\"", error, StringComparison.Ordinal);
        Assert.True(CedarJson.TryParseContext(json, null, read, out _, out error), error);
    }

    [Theory]
    [InlineData("""[{"uid": {"type": "G", "id": "a"}, "attrs": {}, "parents": [{"type": "G", "id": "a"}]}]""")]
    [InlineData("""[{"uid": {"type": "G", "id": "a"}, "attrs": {}, "parents": [{"type": "G", "id": "b"}]}, {"uid": {"type": "G", "id": "b"}, "attrs": {}, "parents": [{"type": "G", "id": "c"}]}, {"uid": {"type": "G", "id": "c"}, "attrs": {}, "parents": [{"type": "G", "id": "a"}]}]""")]
    public void CyclicHierarchiesAreRefused(string json)
    {
        Assert.False(Entities.TryParseJson(json, null, out _, out var error));
        Assert.Contains("cycle", error, StringComparison.Ordinal);
        Assert.True(Entities.TryParseJson("""[{"uid": {"type": "G", "id": "a"}, "attrs": {}, "parents": [{"type": "G", "id": "b"}]}, {"uid": {"type": "G", "id": "b"}, "attrs": {}, "parents": []}]""", null, out _, out error), error);
    }

    [Fact]
    public void TemplateErrorsAreReportedOnceUnderTheTemplateAndLinksOnlyForTheirSlots()
    {
        Assert.True(PolicySet.TryParse("""
            permit(principal == ?principal, action == Action::"read", resource) when { principal.age > 1 };
            """, out var set, out var errors), string.Join(" | ", errors));
        Assert.True(set!.TryLink("policy0", "ok", new Dictionary<SlotId, EntityUid> { [SlotId.Principal] = new("User", "a") }, out set, out var e1), e1);
        Assert.True(set!.TryLink("policy0", "wrongType", new Dictionary<SlotId, EntityUid> { [SlotId.Principal] = new("Group", "g") }, out set, out var e2), e2);
        Assert.True(set!.TryLink("policy0", "unknownType", new Dictionary<SlotId, EntityUid> { [SlotId.Principal] = new("Robot", "r") }, out set, out var e3), e3);
        var result = Validator.Validate(set!, Schema);
        var ids = result.Errors.Select(e => e.PolicyId).Distinct().Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["policy0", "unknownType", "wrongType"], ids);   // `age` is optional: an error of the template only
        Assert.Contains(result.Errors, e => e.PolicyId == "unknownType" && e.Kind == ValidationErrorKind.UnrecognizedEntityType);
        Assert.Contains(result.Errors, e => e.PolicyId == "wrongType" && e.Kind == ValidationErrorKind.InvalidActionApplication);
        Assert.DoesNotContain(result.Errors, e => e.PolicyId != "policy0" && e.Kind == ValidationErrorKind.UnsafeOptionalAttributeAccess);
    }
}
