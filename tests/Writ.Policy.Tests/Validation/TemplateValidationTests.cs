using Writ.Policy.Ast;
using Writ.Policy.Schema;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Validation;

/// <summary>Templates are checked for every entity type a slot could be linked to (expectations checked against cedar-wasm 4.12).</summary>
public class TemplateValidationTests
{
    private const string SchemaText = """
        namespace App {
          entity Group;
          entity User in [Group] { name: String, age?: Long };
          entity Admin in [Group] { name: String };
          entity Doc { owner: User };
          action view appliesTo { principal: [User, Admin], resource: [Doc] };
        }
        """;

    private static ValidationResult Validate(string template)
    {
        Assert.True(CedarSchema.TryParseCedar(SchemaText, out var schema, out var schemaErrors), string.Join(" | ", schemaErrors));
        Assert.True(PolicySet.TryParse(template, out var set, out var errors), string.Join(" | ", errors));
        Assert.Single(set!.Templates);
        return Validator.Validate(set, schema!);
    }

    [Theory]
    [InlineData("""permit(principal == ?principal, action == App::Action::"view", resource) when { principal.name == "x" };""")]
    [InlineData("""permit(principal in ?principal, action == App::Action::"view", resource) when { principal.name == "x" };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource in ?resource) when { resource.owner == principal };""")]
    [InlineData("""permit(principal is App::User in ?principal, action, resource == ?resource);""")]
    public void Well_typed_templates_validate(string template)
    {
        var r = Validate(template);
        Assert.True(r.Passed, string.Join(" | ", r.Errors));
    }

    [Fact]
    public void A_template_is_checked_for_every_principal_type_its_slot_allows()
    {
        var r = Validate("""permit(principal == ?principal, action == App::Action::"view", resource) when { principal.age > 1 };""");
        Assert.Contains(r.Errors, e => e.Kind == ValidationErrorKind.UnsafeAttributeAccess && e.Message.Contains("age", StringComparison.Ordinal));
        Assert.Contains(r.Errors, e => e.Kind == ValidationErrorKind.UnsafeOptionalAttributeAccess);
    }
}
