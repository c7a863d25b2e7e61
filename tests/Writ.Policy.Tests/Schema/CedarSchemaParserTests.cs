using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Schema;

public class CedarSchemaParserTests
{
    private static CedarSchema Parse(string text)
    {
        Assert.True(CedarSchema.TryParseCedar(text, out var schema, out var errors), string.Join(" | ", errors));
        Assert.Empty(errors);
        return schema!;
    }

    private static SchemaError ParseFails(string text)
    {
        Assert.False(CedarSchema.TryParseCedar(text, out var schema, out var errors));
        Assert.Null(schema);
        Assert.NotEmpty(errors);
        Assert.All(errors, e => Assert.DoesNotContain('\n', e.Message));
        return errors[0];
    }

    [Fact]
    public void Parses_entities_actions_and_common_types_in_a_namespace()
    {
        var s = Parse("""
            // a comment
            namespace App {
              type Ctx = { ip: ipaddr, "when"?: datetime };
              @doc("a user")
              entity User in [Group] = { name: String, age?: Long, groups: Set<Group>, @doc("flag") admin: Bool } tags String;
              entity Group;
              entity Color enum ["red", "green"];
              action "read", write in [all] appliesTo { principal: User, resource: [Group, User], context: Ctx };
              action all;
            }
            """);
        var user = s.EntityTypes["App::User"];
        Assert.Equal(["App::Group"], user.MemberOfTypes);
        Assert.Equal(StringType.Instance, user.Shape.Attributes["name"].Type);
        Assert.False(user.Shape.Attributes["age"].Required);
        Assert.Equal(new SetType(new EntityRefType("App::Group")), user.Shape.Attributes["groups"].Type);
        Assert.Equal("flag", user.Shape.Attributes["admin"].Annotations["doc"]);
        Assert.Equal(StringType.Instance, user.Tags);
        Assert.Equal("a user", user.Annotations["doc"]);
        Assert.Equal(["red", "green"], s.EntityTypes["App::Color"].EnumIds!);

        var read = s.Actions[new ActionRef("App::Action", "read")];
        Assert.Equal([new ActionRef("App::Action", "all")], read.MemberOf);
        Assert.Equal(["App::User"], read.PrincipalTypes!);
        Assert.Equal(["App::Group", "App::User"], read.ResourceTypes!);
        Assert.Equal(new ExtensionType("ipaddr"), read.Context.Attributes["ip"].Type);
        Assert.Equal(new ExtensionType("datetime"), read.Context.Attributes["when"].Type);
        Assert.False(read.Context.Attributes["when"].Required);

        var all = s.Actions[new ActionRef("App::Action", "all")];
        Assert.Null(all.PrincipalTypes);
        Assert.Null(all.ResourceTypes);
        Assert.True(s.IsKnownEntityType("App::Action"));
        Assert.True(s.IsKnownEntityType("App::User"));
        Assert.False(s.IsKnownEntityType("User"));
    }

    [Fact]
    public void Common_type_wins_over_entity_type_and_builtins_can_be_shadowed()
    {
        var s = Parse("""
            namespace Demo {
              entity Host { ip: ipaddr, bandwidth: decimal, s: String };
              entity String { groups: Set<__cedar::String> };
              type ipaddr = { repr: String, isV4: Bool };
            }
            """);
        var host = s.EntityTypes["Demo::Host"].Shape.Attributes;
        var ip = Assert.IsType<RecordType>(host["ip"].Type);
        Assert.Equal(new EntityRefType("Demo::String"), ip.Attributes["repr"].Type);
        Assert.Equal(BoolType.Instance, ip.Attributes["isV4"].Type);
        Assert.Equal(new ExtensionType("decimal"), host["bandwidth"].Type);
        Assert.Equal(new EntityRefType("Demo::String"), host["s"].Type);
        Assert.Equal(new SetType(StringType.Instance), s.EntityTypes["Demo::String"].Shape.Attributes["groups"].Type);
    }

    [Fact]
    public void Namespace_relative_name_falls_back_to_the_empty_namespace_and_qualified_names_are_absolute()
    {
        var s = Parse("""
            entity Root;
            namespace A { entity E { r: Root, b: B::F, self: E }; action go in [B::Action::"x"]; }
            namespace B { entity F; action x; }
            """);
        var e = s.EntityTypes["A::E"].Shape.Attributes;
        Assert.Equal(new EntityRefType("Root"), e["r"].Type);
        Assert.Equal(new EntityRefType("B::F"), e["b"].Type);
        Assert.Equal(new EntityRefType("A::E"), e["self"].Type);
        Assert.Equal([new ActionRef("B::Action", "x")], s.Actions[new ActionRef("A::Action", "go")].MemberOf);
    }

    [Fact]
    public void Common_types_are_inlined_through_chains()
    {
        var s = Parse("type A = Set<B>; type B = { x: C }; type C = Long; entity E { a: A };");
        Assert.Equal(
            new SetType(new RecordType(new Dictionary<string, AttributeDef> { ["x"] = new(LongType.Instance) })),
            s.EntityTypes["E"].Shape.Attributes["a"].Type);
    }

    [Theory]
    [InlineData("entity A { x: Nope };", 1, 15, "Nope")]
    [InlineData("namespace N {\n  entity A { x: Set<Missing> };\n}", 2, 21, "Missing")]
    [InlineData("entity A in [Missing];", 1, 14, "Missing")]
    [InlineData("entity A;\naction a appliesTo { principal: [A], resource: [Nope] };", 2, 49, "Nope")]
    public void Unknown_type_is_an_error_with_its_position(string text, int line, int column, string name)
    {
        var e = ParseFails(text);
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.Contains($"`{name}`", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("entity A;\nentity A;", 2, 8, "declared more than once")]
    [InlineData("action a;\naction \"a\";", 2, 8, "declared more than once")]
    [InlineData("type T = Long;\ntype T = String;", 2, 6, "declared more than once")]
    [InlineData("entity A { x: Long,\n  x: String };", 2, 3, "attribute `x`")]
    [InlineData("namespace N { entity A; }\nnamespace N { entity B; }", 2, 1, "namespace `N`")]
    public void Duplicates_are_errors(string text, int line, int column, string fragment)
    {
        var e = ParseFails(text);
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("entity A {", 1, 11)]
    [InlineData("entity A { x Long };", 1, 14)]
    [InlineData("entity A;\n  entity in;", 2, 10)]
    [InlineData("entity A { x: Long } foo;", 1, 22)]
    [InlineData("action a appliesTo { principal: [] , resource: [] };", 1, 33)]
    [InlineData("entity A; action a appliesTo { principal: A };", 1, 20)]
    [InlineData("entity A \"x\";", 1, 10)]
    [InlineData("entity A { s: \"\\q\" };", 1, 15)]
    [InlineData("entity A; # nope", 1, 11)]
    public void Bad_syntax_reports_line_and_column(string text, int line, int column)
    {
        var e = ParseFails(text);
        Assert.Equal((line, column), (e.Line, e.Column));
    }

    [Theory]
    [InlineData("type A = B; type B = A; entity E { a: A };", "cycle")]
    [InlineData("action a in b; action b in a;", "cycle")]
    [InlineData("type Long = String;", "reserved")]
    [InlineData("entity E; action a appliesTo { principal: E, resource: E, context: E };", "common type")]
    [InlineData("type T = Long; entity E; action a appliesTo { principal: E, resource: E, context: T };", "record")]
    [InlineData("type T = Long; entity E = T;", "`{`")]
    [InlineData("entity T; namespace N { entity T; }", "shadows")]
    [InlineData("namespace __cedar { entity T; }", "__cedar")]
    [InlineData("action a in nope;", "not a declared action")]
    [InlineData("namespace N { entity Action; }", "`Action` cannot be declared")]
    [InlineData("entity E; action a appliesTo { principal: Action, resource: E };", "action entity type")]
    public void Semantic_errors(string text, string fragment)
    {
        var e = ParseFails(text);
        Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
        Assert.True(e.Line > 0, "Cedar-syntax errors carry a position");
    }

    [Fact]
    public void Escapes_and_unicode_in_names_are_decoded()
    {
        var s = Parse("action \"\\u{1f}x\\\"\"; entity E { \"a b\": Long };");
        Assert.Contains(new ActionRef("Action", "\u001fx\""), s.Actions.Keys);
        Assert.True(s.EntityTypes["E"].Shape.Attributes.ContainsKey("a b"));
    }

    [Fact]
    public void Schema_error_messages_stay_on_one_line()
    {
        var e = ParseFails("entity A { \"x\\ny\": Long, \"x\\ny\": String };");
        Assert.Contains("x\\u{a}y", e.Message, StringComparison.Ordinal);
        Assert.False(CedarSchema.TryParseJson("{ \"\": { \"entityTypes\": { \"bad\\nname\": {} }, \"actions\": {} } }", out _, out var errors));
        Assert.All(errors, x => Assert.DoesNotContain('\n', x.Message));
    }
}
