using Writ.Policy.Ast;
using Writ.Policy.Schema;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Validation;

public class ValidatorTests
{
    private const string SchemaText = """
        namespace App {
          entity Group;
          entity User in [Group] { name: String, age?: Long, manager?: User, ip?: ipaddr, tags: Set<String> } tags String;
          entity Doc { owner: User, level: Long, when: datetime, meta: { public: Bool, label?: String } };
          entity Color enum ["red", "green"];
          action view, edit appliesTo { principal: [User], resource: [Doc], context: { mfa: Bool, score?: decimal } };
          action paint appliesTo { principal: [User], resource: [Color] };
          action admin in [edit];
        }
        """;

    private static readonly CedarSchema Schema = ParseSchema();

    private static CedarSchema ParseSchema()
    {
        Assert.True(CedarSchema.TryParseCedar(SchemaText, out var s, out var errors), string.Join(" | ", errors));
        return s!;
    }

    private static ValidationResult Validate(string policies)
    {
        Assert.True(PolicySet.TryParse(policies, out var set, out var errors), string.Join(" | ", errors));
        return Validator.Validate(set!, Schema);
    }

    private static void Valid(string policy)
    {
        var r = Validate(policy);
        Assert.True(r.Passed, string.Join(" | ", r.Errors));
    }

    private static ValidationError Invalid(string policy, ValidationErrorKind kind)
    {
        var r = Validate(policy);
        Assert.False(r.Passed, "expected validation errors");
        Assert.All(r.Errors, e => Assert.DoesNotContain('\n', e.Message));
        Assert.Contains(r.Errors, e => e.Kind == kind);
        return r.Errors.First(e => e.Kind == kind);
    }

    [Theory]
    [InlineData("""permit(principal is App::User, action == App::Action::"view", resource) when { resource.owner == principal && resource.level > 2 };""")]
    [InlineData("""permit(principal, action in [App::Action::"view", App::Action::"edit"], resource) when { principal has age && principal.age >= 18 };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { if principal has manager then principal.manager.name == "x" else false };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { resource.meta has label && resource.meta.label like "a*" };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { context has score && context.score.lessThan(decimal("1.5")) };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { resource.when < datetime("2024-01-01") && principal.tags.contains("a") };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { principal.hasTag("k") && principal.getTag("k") == "v" };""")]
    [InlineData("""permit(principal in App::Group::"g", action == App::Action::"paint", resource == App::Color::"red");""")]
    [InlineData("""forbid(principal, action == App::Action::"view", resource) unless { context.mfa };""")]
    [InlineData("""permit(principal, action in App::Action::"edit", resource);""")]
    public void Well_typed_policies_validate(string policy) => Valid(policy);

    [Fact]
    public void Unknown_entity_type_is_reported_with_the_policy_id()
    {
        var e = Invalid("""permit(principal == App::Usr::"a", action == App::Action::"view", resource);""", ValidationErrorKind.UnrecognizedEntityType);
        Assert.Equal("policy0", e.PolicyId);
        Assert.Contains("App::Usr", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_action_is_reported() =>
        Invalid("""permit(principal, action == App::Action::"delete", resource);""", ValidationErrorKind.UnrecognizedActionId);

    [Fact]
    public void Unknown_attribute_is_reported_at_its_position()
    {
        var e = Invalid("permit(principal, action == App::Action::\"view\", resource)\nwhen { resource.titel == \"x\" };", ValidationErrorKind.UnsafeAttributeAccess);
        Assert.Equal(2, e.Line);
        Assert.Equal(8, e.Column);
        Assert.Contains("titel", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { principal.age > 1 };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { principal has age || principal.age > 1 };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { resource has owner && resource.owner has age && principal.age > 1 };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { if principal has age then true else principal.age > 1 };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { (principal has age || true) && principal.age > 1 };""")]
    public void Optional_attribute_needs_a_has_guard_that_really_covers_it(string policy) =>
        Invalid(policy, ValidationErrorKind.UnsafeOptionalAttributeAccess);

    [Fact]
    public void Tag_access_without_hasTag_is_rejected() =>
        Invalid("""permit(principal, action == App::Action::"view", resource) when { principal.getTag("k") == "v" };""", ValidationErrorKind.UnsafeTagAccess);

    [Fact]
    public void Tags_on_a_type_without_tags_are_rejected() =>
        Invalid("""permit(principal, action == App::Action::"view", resource) when { resource.getTag("k") == "v" };""", ValidationErrorKind.UnsafeTagAccess);

    [Fact]
    public void HasTag_on_a_type_without_tags_is_false_so_the_policy_is_impossible()
    {
        var r = Validate("""permit(principal, action == App::Action::"view", resource) when { resource.hasTag("k") && resource.getTag("k") == "v" };""");
        Assert.True(r.Passed, string.Join(" | ", r.Errors));
        Assert.Single(r.Warnings);
    }

    [Theory]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { [1, "a"].contains(1) };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { [principal, resource].contains(principal) };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { principal == resource.level };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { (if context.mfa then 1 else "x") == 1 };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { principal.tags.contains(1) };""")]
    public void Strict_mode_rejects_mixed_types(string policy) => Invalid(policy, ValidationErrorKind.IncompatibleTypes);

    [Theory]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { resource.level + "1" == 2 };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { principal.name };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { principal.name in principal.tags };""")]
    [InlineData("""permit(principal, action == App::Action::"view", resource) when { resource.level < "3" };""")]
    public void Wrong_operand_types_are_rejected(string policy) => Invalid(policy, ValidationErrorKind.UnexpectedType);

    [Fact]
    public void Invalid_extension_literal_is_rejected() =>
        Invalid("""permit(principal, action == App::Action::"view", resource) when { principal has ip && principal.ip.isInRange(ip("10.0.0.0/33")) };""", ValidationErrorKind.FunctionArgumentValidation);

    [Fact]
    public void Extension_constructor_on_a_non_literal_is_rejected() =>
        Invalid("""permit(principal, action == App::Action::"view", resource) when { ip(principal.name).isIpv4() };""", ValidationErrorKind.NonLiteralExtensionConstructor);

    [Fact]
    public void Wrong_argument_count_is_rejected() =>
        Invalid("""permit(principal, action == App::Action::"view", resource) when { resource.when.offset() == resource.when };""", ValidationErrorKind.WrongNumberArguments);

    [Fact]
    public void Empty_set_literal_is_rejected() =>
        Invalid("""permit(principal, action == App::Action::"view", resource) when { principal.tags.containsAll([]) };""", ValidationErrorKind.EmptySetForbidden);

    [Fact]
    public void Enum_entity_ids_are_checked() =>
        Invalid("""permit(principal, action == App::Action::"paint", resource == App::Color::"blue");""", ValidationErrorKind.InvalidEnumEntity);

    [Fact]
    public void Scope_that_no_action_applies_to_is_rejected() =>
        Invalid("""permit(principal, action == App::Action::"paint", resource is App::Doc);""", ValidationErrorKind.InvalidActionApplication);

    [Fact]
    public void Action_without_appliesTo_applies_to_nothing() =>
        Invalid("""permit(principal, action == App::Action::"admin", resource);""", ValidationErrorKind.InvalidActionApplication);

    [Fact]
    public void Errors_in_a_branch_that_can_never_run_are_not_reported()
    {
        // Cedar's typechecker skips the right side of `false && ...`; the policy is impossible, not invalid.
        var r = Validate("""permit(principal, action == App::Action::"view", resource) when { false && principal.nope };""");
        Assert.True(r.Passed, string.Join(" | ", r.Errors));
        Assert.Single(r.Warnings);
    }

    [Fact]
    public void Every_policy_is_checked_and_named()
    {
        var r = Validate("""
            permit(principal, action == App::Action::"view", resource);
            permit(principal, action == App::Action::"view", resource) when { principal.nope };
            permit(principal, action == App::Action::"view", resource) when { resource.nope };
            """);
        Assert.Equal(["policy1", "policy2"], r.Errors.Select(e => e.PolicyId).Distinct().Order().ToArray());
    }

    [Fact]
    public void Error_messages_stay_on_one_line_whatever_the_policy_text_contains()
    {
        var e = Invalid("permit(principal, action == App::Action::\"view\", resource) when { principal[\"a\\nb\\r\\u{2028}\"] == ip(\"1.2.3.4\\n\") };", ValidationErrorKind.UnsafeAttributeAccess);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\u2028', e.Message);
        Assert.Contains("a\\u{a}b", e.Message, StringComparison.Ordinal);
    }
}
