namespace Writ.Tests.Shared;

/// <summary>
/// Where the PostgreSQL tests find their server: env <c>WRIT_TEST_PG</c>, an Npgsql connection string for a superuser
/// (<c>./test.sh</c> starts a throwaway PostgreSQL and sets it). Without one the test fails: a run that could not start
/// PostgreSQL must not pass by skipping. A developer without PostgreSQL may opt out explicitly with
/// <c>WRIT_TEST_PG=skip</c>, which skips them, except under CI (<c>CI</c> set), where it fails too. Linked into every
/// test project that has PostgreSQL tests.
/// </summary>
internal static class TestPostgresGate
{
    public const string Variable = "WRIT_TEST_PG";

    /// <summary>The opt-out value.</summary>
    public const string Skip = "skip";

    /// <summary>The connection string; otherwise fails the test, or skips it when the run explicitly opted out.</summary>
    public static string ConnectionString()
    {
        var (connection, skip, fail) = Decide(Environment.GetEnvironmentVariable(Variable), Environment.GetEnvironmentVariable("CI"));
        if (fail is not null)
        {
            Assert.Fail(fail);
        }
        if (skip is not null)
        {
            Assert.Skip(skip);
        }
        return connection!;
    }

    /// <summary>
    /// The rule, on the two variables' values (tested without touching the environment): exactly one of a connection
    /// string, a reason to skip and a reason to fail.
    /// </summary>
    internal static (string? Connection, string? Skip, string? Fail) Decide(string? value, string? ci)
    {
        var optedOut = value is not null && string.Equals(value.Trim(), Skip, StringComparison.OrdinalIgnoreCase);
        if (!string.IsNullOrWhiteSpace(value) && !optedOut)
        {
            return (value, null, null);
        }
        if (optedOut)
        {
            return string.IsNullOrEmpty(ci)
                ? (null, $"{Variable}=skip: PostgreSQL tests skipped on request (unset it and run ./test.sh, or export an Npgsql connection string, to run them)", null)
                : (null, null, $"{Variable}=skip is not honoured under CI: the PostgreSQL tests must run there (test.sh starts PostgreSQL)");
        }
        return (null, null, $"{Variable} is not set: run ./test.sh (it starts PostgreSQL), or export an Npgsql superuser connection string " +
            $"(eval \"$(../shared/scripts/pg-start.sh 55433)\"), or opt out with {Variable}=skip outside CI");
    }
}
