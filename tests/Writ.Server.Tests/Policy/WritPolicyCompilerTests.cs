using Writ.Server.Policy;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Policy;

public sealed class WritPolicyCompilerTests
{
    private static IReadOnlyList<string> Errors(params (string Name, string Text)[] files)
    {
        Assert.False(WritPolicyCompiler.TryCompile([.. files.Select(f => new PolicyFileRecord(f.Name, f.Text))], out var set, out var errors));
        Assert.Null(set);
        Assert.NotEmpty(errors);
        Assert.All(errors, e => Assert.DoesNotContain('\n', e));
        return errors;
    }

    [Fact]
    public void The_default_set_compiles_against_the_schema()
    {
        Assert.True(WritPolicyCompiler.TryCompile(WritPolicyCompiler.DefaultFiles, out var set, out var errors), string.Join("; ", errors));
        Assert.Equal(["writ-default-attest-node", "writ-default-x509", "writ-default-jwt-bound"], set!.Set.Policies.Select(p => p.Id));
        Assert.Equal(64, set.Sha256.Length);
    }

    [Fact]
    public void A_type_error_is_refused_with_file_line_and_policy()
    {
        var errors = Errors(("a.cedar", """
            @id("typo")
            permit (principal is Writ::Workload, action, resource) when { principal.uid == "1000" };
            """));
        Assert.Contains(errors, e => e.StartsWith("a.cedar:", StringComparison.Ordinal) && e.Contains("typo", StringComparison.Ordinal));
    }

    [Fact]
    public void An_unguarded_optional_attribute_is_refused()
    {
        var errors = Errors(("a.cedar", """permit (principal is Writ::Workload, action, resource) when { principal.exe_sha256 == "ab" };"""));
        Assert.Contains(errors, e => e.Contains("has exe_sha256", StringComparison.Ordinal));
    }

    [Fact]
    public void Unnamed_policies_of_two_files_do_not_clash_but_equal_ids_do()
    {
        Assert.True(WritPolicyCompiler.TryCompile([new("a.cedar", "permit (principal, action, resource);"), new("b.cedar", "permit (principal, action, resource);")], out var set, out _));
        Assert.Equal(["a.cedar#0", "b.cedar#0"], set!.Set.Policies.Select(p => p.Id));
        var errors = Errors(("a.cedar", """@id("x") permit (principal, action, resource);"""), ("b.cedar", """@id("x") forbid (principal, action, resource);"""));
        Assert.Contains(errors, e => e.StartsWith("b.cedar:", StringComparison.Ordinal) && e.Contains("also used in a.cedar", StringComparison.Ordinal));
    }

    [Fact]
    public void Max_ttl_is_read_from_permits_and_checked()
    {
        Assert.True(WritPolicyCompiler.TryCompile([new("a.cedar", """@id("ci") @max_ttl("5m") permit (principal, action, resource);""")], out var set, out _));
        Assert.Equal(TimeSpan.FromMinutes(5), set!.MaxTtl["ci"]);
        Assert.Contains(Errors(("a.cedar", """@max_ttl("soon") permit (principal, action, resource);""")), e => e.Contains("not a duration", StringComparison.Ordinal));
        Assert.Contains(Errors(("a.cedar", """@max_ttl("60") forbid (principal, action, resource);""")), e => e.Contains("permit policies only", StringComparison.Ordinal));
        Assert.Contains(Errors(("a.cedar", """@max_ttl("0") permit (principal, action, resource);""")), e => e.Contains("not a duration", StringComparison.Ordinal));
    }

    [Fact]
    public void Empty_sets_syntax_errors_and_templates_are_refused()
    {
        Assert.False(WritPolicyCompiler.TryCompile([], out _, out var empty));
        Assert.Contains("empty", empty[0], StringComparison.Ordinal);
        Assert.Contains(Errors(("a.cedar", "permit (principal, action resource);")), e => e.StartsWith("a.cedar:1:", StringComparison.Ordinal));
        Assert.Contains(Errors(("a.cedar", "permit (principal == ?principal, action, resource);")), e => e.Contains("template", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("300", 300)]
    [InlineData("45s", 45)]
    [InlineData("5m", 300)]
    [InlineData("2h", 7200)]
    [InlineData("1d", 86400)]
    public void Durations_parse(string text, int seconds)
    {
        Assert.True(WritPolicyCompiler.TryParseDuration(text, out var d));
        Assert.Equal(TimeSpan.FromSeconds(seconds), d);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-5")]
    [InlineData("5x")]
    [InlineData("m")]
    [InlineData("99999d")]
    public void Bad_durations_do_not_parse(string text) => Assert.False(WritPolicyCompiler.TryParseDuration(text, out _));
}
