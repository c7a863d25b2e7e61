using System.Text.Json;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// Stable error codes end to end: a real server refuses a real CLI call, and the CLI prints the server's code (from the
/// writ-error-code trailer) on one line, or as one JSON object with --output json; the CLI's own errors have codes too.
/// </summary>
public sealed class ErrorCodeCliTests(SharedServer fixture) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    [Fact]
    public async Task A_server_refusal_prints_the_servers_code_and_message_on_one_line()
    {
        var r = await Server.WritAsync("entry", "show", "no-such-entry");
        Assert.Equal(1, r.ExitCode);
        Expect.OneLineError(r, "error: WRIT-STORE-NOT-FOUND: entry 'no-such-entry' does not exist");

        var invalid = await Server.WritAsync("token", "generate", "--ttl", "40d");
        Assert.Equal(1, invalid.ExitCode);
        Expect.OneLineError(invalid, "error: WRIT-INVALID-ARGUMENT: join token TTL must be between 1s and 30d");
    }

    [Fact]
    public async Task With_output_json_a_server_refusal_is_one_json_error_on_stderr_and_stdout_stays_empty()
    {
        var r = await Server.WritAsync("entry", "show", "no-such-entry", "--output", "json");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        var line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var doc = JsonDocument.Parse(line);
        var error = doc.RootElement.GetProperty("error");
        Assert.Equal("WRIT-STORE-NOT-FOUND", error.GetProperty("code").GetString());
        Assert.StartsWith("entry 'no-such-entry' does not exist", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(["error"], doc.RootElement.EnumerateObject().Select(p => p.Name));
    }

    [Theory]
    [InlineData("WRIT-CLI-UNKNOWN-COMMAND", 2, "entry", "lst")]
    [InlineData("WRIT-CLI-UNKNOWN-OPTION", 2, "entry", "list", "--bogus")]
    [InlineData("WRIT-CLI-MISSING-OPTION", 2, "jwt", "mint")]
    [InlineData("WRIT-CLI-ADMIN-SOCKET", 1, "entry", "list", "--admin-socket", "/nonexistent/writ/admin.sock")]
    public async Task Local_cli_errors_have_codes_in_text_and_in_json(string code, int exit, params string[] args)
    {
        var text = await Proc.WritAsync(args);
        Assert.Equal(exit, text.ExitCode);
        Expect.OneLineError(text, $"error: {code}: ");

        var json = await Proc.WritAsync([.. args, "--output=json"]);
        Assert.Equal(exit, json.ExitCode);
        using var doc = JsonDocument.Parse(Assert.Single(json.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal(code, doc.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(doc.RootElement.GetProperty("error").GetProperty("message").GetString()));
    }
}
