namespace Writ.IntegrationTests.Harness;

public static class Expect
{
    /// <summary>
    /// A failed command: non-zero exit, exactly one line on stderr naming the problem under a stable code
    /// (<c>error: WRIT-…: message</c>, docs/errors.md), no stack trace.
    /// </summary>
    public static void OneLineError(ProcResult r, string expected)
    {
        Assert.True(r.ExitCode != 0, "expected failure:\n" + r);
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "expected one error line:\n" + r);
        Assert.Matches("^error: WRIT-[A-Z0-9]+(-[A-Z0-9]+)*: ", lines[0]);
        Assert.Contains(expected, lines[0], StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", r.Stderr, StringComparison.Ordinal);
    }

    /// <summary>A failed command run with <c>--output json</c>: one JSON error object on stderr, its code and message, nothing on stdout.</summary>
    public static void OneJsonError(ProcResult r, string code, string expected)
    {
        Assert.True(r.ExitCode != 0, "expected failure:\n" + r);
        Assert.True(r.Stdout.Length == 0, "expected no output:\n" + r);
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "expected one error line:\n" + r);
        using var doc = System.Text.Json.JsonDocument.Parse(lines[0]);
        var error = doc.RootElement.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Contains(expected, error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }
}
