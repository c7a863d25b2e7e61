using Writ.Tests.Shared;

namespace Writ.Server.Tests.Storage;

/// <summary>
/// The rule that keeps a run without PostgreSQL from passing by skipping: only an explicit <c>WRIT_TEST_PG=skip</c>,
/// outside CI, skips the PostgreSQL tests; a missing server is a failure everywhere else.
/// </summary>
public sealed class TestPostgresGateTests
{
    [Fact]
    public void A_connection_string_is_used_as_given()
    {
        Assert.Equal(("Host=127.0.0.1;Port=5432", null, null), TestPostgresGate.Decide("Host=127.0.0.1;Port=5432", null));
        Assert.Equal(("Host=127.0.0.1;Port=5432", null, null), TestPostgresGate.Decide("Host=127.0.0.1;Port=5432", "true"));
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("  ", null)]
    [InlineData(null, "true")]
    [InlineData("", "true")]
    public void A_missing_server_fails_the_test_instead_of_skipping_it(string? value, string? ci)
    {
        var (connection, skip, fail) = TestPostgresGate.Decide(value, ci);
        Assert.Null(connection);
        Assert.Null(skip);
        Assert.Contains("WRIT_TEST_PG is not set", fail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("skip")]
    [InlineData("SKIP")]
    public void An_explicit_opt_out_skips_only_outside_ci(string value)
    {
        var outside = TestPostgresGate.Decide(value, null);
        Assert.Null(outside.Connection);
        Assert.Null(outside.Fail);
        Assert.Contains("skipped on request", outside.Skip, StringComparison.Ordinal);

        var underCi = TestPostgresGate.Decide(value, "true");
        Assert.Null(underCi.Connection);
        Assert.Null(underCi.Skip);
        Assert.Contains("not honoured under CI", underCi.Fail, StringComparison.Ordinal);
    }
}
