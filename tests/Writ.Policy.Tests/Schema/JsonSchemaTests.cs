using System.Text.Json;
using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Schema;

public class JsonSchemaTests
{
    private const string PhotoJson = """
        {
          "PhotoApp": {
            "commonTypes": {
              "Ctx": { "type": "Record", "attributes": { "ip": { "type": "Extension", "name": "ipaddr" }, "mfa": { "type": "Boolean", "required": false } } },
              "Tags": { "type": "Set", "element": { "type": "String" } }
            },
            "entityTypes": {
              "User": {
                "memberOfTypes": ["Group"],
                "shape": { "type": "Record", "attributes": {
                  "tags": { "type": "Tags" },
                  "manager": { "type": "Entity", "name": "User", "required": false },
                  "level": { "type": "EntityOrCommon", "name": "__cedar::Long", "annotations": { "doc": "level" } },
                  "root": { "type": "Root" } } },
                "tags": { "type": "Long" },
                "annotations": { "doc": "a user" }
              },
              "Group": {},
              "Color": { "enum": ["red", "blue"] }
            },
            "actions": {
              "view": { "appliesTo": { "principalTypes": ["User"], "resourceTypes": ["Group"], "context": { "type": "Ctx" } }, "memberOf": [{ "id": "all" }] },
              "all": {}
            }
          },
          "": { "entityTypes": { "Root": {} }, "actions": {} }
        }
        """;

    [Fact]
    public void Reads_json_schema_with_common_types_and_name_resolution()
    {
        Assert.True(CedarSchema.TryParseJson(PhotoJson, out var s, out var errors), string.Join(" | ", errors));
        var user = s!.EntityTypes["PhotoApp::User"];
        Assert.Equal(["PhotoApp::Group"], user.MemberOfTypes);
        Assert.Equal(new SetType(StringType.Instance), user.Shape.Attributes["tags"].Type);
        Assert.Equal(new EntityRefType("PhotoApp::User"), user.Shape.Attributes["manager"].Type);
        Assert.False(user.Shape.Attributes["manager"].Required);
        Assert.Equal(LongType.Instance, user.Shape.Attributes["level"].Type);
        Assert.Equal("level", user.Shape.Attributes["level"].Annotations["doc"]);
        Assert.Equal(new EntityRefType("Root"), user.Shape.Attributes["root"].Type);
        Assert.Equal(LongType.Instance, user.Tags);
        Assert.Equal(["red", "blue"], s.EntityTypes["PhotoApp::Color"].EnumIds!);
        var view = s.Actions[new ActionRef("PhotoApp::Action", "view")];
        Assert.Equal(new ExtensionType("ipaddr"), view.Context.Attributes["ip"].Type);
        Assert.False(view.Context.Attributes["mfa"].Required);
        Assert.Equal([new ActionRef("PhotoApp::Action", "all")], view.MemberOf);
    }

    [Fact]
    public void ToJson_writes_cedar_json_format_and_reads_back_equal()
    {
        Assert.True(CedarSchema.TryParseJson(PhotoJson, out var s, out _));
        var json = s!.ToJson();
        using var doc = JsonDocument.Parse(json);
        var user = doc.RootElement.GetProperty("PhotoApp").GetProperty("entityTypes").GetProperty("User");
        Assert.Equal("Record", user.GetProperty("shape").GetProperty("type").GetString());
        var manager = user.GetProperty("shape").GetProperty("attributes").GetProperty("manager");
        Assert.Equal("Entity", manager.GetProperty("type").GetString());
        Assert.Equal("PhotoApp::User", manager.GetProperty("name").GetString());
        Assert.False(manager.GetProperty("required").GetBoolean());
        var ctx = doc.RootElement.GetProperty("PhotoApp").GetProperty("actions").GetProperty("view").GetProperty("appliesTo").GetProperty("context");
        Assert.Equal("Boolean", ctx.GetProperty("attributes").GetProperty("mfa").GetProperty("type").GetString());

        Assert.True(CedarSchema.TryParseJson(json, out var again, out var errors), string.Join(" | ", errors));
        Assert.True(s.StructurallyEquals(again!));
    }

    [Fact]
    public void Cedar_text_to_json_to_model_is_equal()
    {
        const string text = """
            namespace N { type T = { a?: Set<decimal> }; entity E in [F] { t: T, @doc("x") d: duration } tags Bool; entity F enum ["f"]; action a appliesTo { principal: E, resource: [E, F], context: T }; }
            entity Top { e: N::E };
            action b in N::Action::"a";
            """;
        Assert.True(CedarSchema.TryParseCedar(text, out var fromCedar, out var errors), string.Join(" | ", errors));
        Assert.True(CedarSchema.TryParseJson(fromCedar!.ToJson(), out var fromJson, out errors), string.Join(" | ", errors));
        Assert.True(fromCedar.StructurallyEquals(fromJson!));
        Assert.Equal(fromCedar.ToJson(), fromJson!.ToJson());
    }

    [Fact]
    public void A_changed_model_is_not_structurally_equal()
    {
        Assert.True(CedarSchema.TryParseCedar("entity A { x: Long };", out var a, out _));
        Assert.True(CedarSchema.TryParseCedar("entity A { x?: Long };", out var b, out _));
        Assert.True(CedarSchema.TryParseCedar("entity A { x: String };", out var c, out _));
        Assert.False(a!.StructurallyEquals(b!));
        Assert.False(a.StructurallyEquals(c!));
    }

    [Theory]
    [InlineData("""{ "": { "entityTypes": { "A": { "shape": { "type": "Nope" } } }, "actions": {} } }""", "`Nope`")]
    [InlineData("""{ "": { "entityTypes": { "A": {}, "A": {} }, "actions": {} } }""", "twice")]
    [InlineData("""{ "": { "entityTypes": {}, "actions": {}, "extra": {} } }""", "unknown key \"extra\"")]
    [InlineData("""{ "": { "entityTypes": { "A": {} }, "actions": { "a": { "appliesTo": { "principalTypes": ["A"] } } } } }""", "resourceTypes")]
    [InlineData("""{ "": { "entityTypes": { "A": { "shape": { "type": "Record", "attributes": { "x": { "type": "Extension", "name": "money" } } } } }, "actions": {} } }""", "money")]
    [InlineData("""{ "": { "entityTypes": { "A": { "shape": { "type": "Long" } } }, "actions": {} } }""", "record")]
    [InlineData("""{ "": { "entityTypes": { "A": { "shape": { "type": "Set" } } }, "actions": {} } }""", "element")]
    [InlineData("""{ "": { "entityTypes": {}, "actions": { "a": { "memberOf": [{ "id": "b" }] } } } }""", "not a declared action")]
    [InlineData("""{ "": { "entityTypes": { "A": { "memberOfTypes": ["Ghost"] } }, "actions": {} } }""", "Ghost")]
    [InlineData("""{ "": { "entityTypes": { "in": {} }, "actions": {} } }""", "reserved")]
    [InlineData("""{ "": { "entityTypes": {}, "actions": {} } """, "not valid JSON")]
    [InlineData("""[]""", "object")]
    [InlineData("""{ "": { "entityTypes": {}, "actions": { "a": { "attributes": {} } } } }""", "attributes")]
    [InlineData("""{ "": { "entityTypes": {} } }""", "\"actions\"")]
    [InlineData("""{ "N": { "actions": {} } }""", "\"entityTypes\"")]
    [InlineData("""{ "": { "entityTypes": { "A": { "shape": { "type": "Record", "attributes": {}, "additionalAttributes": true } } }, "actions": {} } }""", "additionalAttributes")]
    [InlineData("""{ "": { "entityTypes": { "A": { "enum": ["a"], "memberOfTypes": [] } }, "actions": {} } }""", "enum")]
    public void Json_errors_say_what_is_wrong(string json, string fragment)
    {
        Assert.False(CedarSchema.TryParseJson(json, out var s, out var errors));
        Assert.Null(s);
        Assert.Contains(errors, e => e.Message.Contains(fragment, StringComparison.Ordinal));
        Assert.All(errors, e => Assert.DoesNotContain('\n', e.Message));
    }
}
