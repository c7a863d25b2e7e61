using Writ.Server.Ledger;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Ledger;

public sealed class RevocationCrossCheckTests
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private static LedgerEvent Revoked(long seq, string kind, string member, string id, DateTimeOffset? expires) => new()
    {
        Seq = seq,
        At = Now.AddMinutes(-10),
        Kind = kind,
        Actor = "uid:0",
        Subject = "spiffe://example.org/w",
        DataJson = expires is { } x
            ? $$"""{"expires_at":"{{x.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss'Z'}}","reason":"r","{{member}}":"{{id}}"}"""
            : $$"""{"reason":"r","{{member}}":"{{id}}"}""",
    };

    private static RevocationRecord Row(string? serial = null, string? jti = null, DateTimeOffset? expires = null) => new()
    {
        SerialHex = serial,
        Jti = jti,
        SpiffeId = "spiffe://example.org/w",
        RevokedAt = Now.AddMinutes(-10),
        ExpiresAt = expires ?? Now.AddHours(1),
        Reason = "r",
    };

    private static RevocationCrossCheck With(params LedgerEvent[] events)
    {
        var check = new RevocationCrossCheck();
        foreach (var e in events)
            check.Add(e);
        return check;
    }

    [Fact]
    public void Rows_and_records_that_match_pass_serials_compared_in_upper_case()
    {
        var check = With(
            new LedgerEvent { Seq = 1, At = Now, Kind = "entry.created", Actor = "a", Subject = "s", DataJson = """{"serial":"FF"}""" },
            Revoked(2, "svid.revoked", "serial", "0abc", Now.AddHours(1)),
            Revoked(3, "jwt.revoked", "jti", "j-1", Now.AddMinutes(5)));
        Assert.Equal(2, check.Records);
        Assert.Empty(check.Check([Row(serial: "0ABC"), Row(jti: "j-1", expires: Now.AddMinutes(5))], Now, 3));
    }

    [Fact]
    public void A_row_whose_expiry_was_moved_earlier_is_named()
    {
        // An attacker with the database sets the row's expiry in the past: every reader drops it, so the certificate is
        // un-revoked while its row is still there.
        var check = With(Revoked(4, "svid.revoked", "serial", "0ABC", Now.AddHours(1)));
        var problem = Assert.Single(check.Check([Row(serial: "0ABC", expires: Now.AddMinutes(-10))], Now, 4));
        Assert.Contains("X.509 serial 0ABC expires at", problem, StringComparison.Ordinal);
        Assert.Contains("in its ledger record 4", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_row_whose_serial_was_rewritten_in_lower_case_is_named()
    {
        // The server's deny list keys on the serial as stored: a lower-case row slips past it.
        var check = With(Revoked(5, "svid.revoked", "serial", "0ABC", Now.AddHours(1)));
        var problem = Assert.Single(check.Check([Row(serial: "0abc")], Now, 5));
        Assert.Contains("is stored as '0abc'", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_row_deleted_while_its_certificate_is_valid_is_named()
    {
        var check = With(Revoked(7, "svid.revoked", "serial", "0ABC", Now.AddHours(1)));
        var problem = Assert.Single(check.Check([], Now, 7));
        Assert.Contains("X.509 serial 0ABC is revoked in the ledger (record 7) but missing from the revocations table", problem, StringComparison.Ordinal);
        Assert.Contains("writ revoke --serial 0ABC", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_row_inserted_without_a_record_is_named()
    {
        var problem = Assert.Single(With().Check([Row(serial: "DEADBEEF")], Now, 0));
        Assert.Contains("X.509 serial DEADBEEF is in the revocations table but the ledger has no svid.revoked record", problem, StringComparison.Ordinal);
        Assert.Contains("JWT jti j-9 is in the revocations table but the ledger has no jwt.revoked record",
            Assert.Single(With().Check([Row(jti: "j-9")], Now, 0)), StringComparison.Ordinal);
    }

    [Fact]
    public void A_record_of_an_expired_credential_may_have_lost_its_row_to_pruning()
    {
        var check = With(Revoked(1, "svid.revoked", "serial", "01", Now.AddSeconds(-1)), Revoked(2, "jwt.revoked", "jti", "j", Now.AddHours(-2)));
        Assert.Empty(check.Check([], Now, 2));
    }

    [Fact]
    public void A_record_appended_after_the_rows_were_read_is_not_held_against_the_table()
    {
        var check = With(Revoked(5, "svid.revoked", "serial", "05", Now.AddHours(1)));
        Assert.Empty(check.Check([], Now, 4));
        Assert.Single(check.Check([], Now, 5));
    }

    [Fact]
    public void A_jwt_record_without_an_expiry_needs_no_row_but_a_row_still_needs_its_record()
    {
        var check = With(Revoked(1, "jwt.revoked", "jti", "j-1", null));
        Assert.Empty(check.Check([], Now, 1));
        Assert.Empty(check.Check([Row(jti: "j-1")], Now, 1));
    }
}
