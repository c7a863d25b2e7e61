using Writ.Server.Ledger;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Storage;

/// <summary>TPM reference sets (issue #14): create/get/list/delete with their ledger records, on every backend.</summary>
public abstract partial class StoreConformanceTests
{
    private static readonly string Pcr7A = new('a', 64);
    private static readonly string Pcr7B = new('b', 64);

    private static TpmPcrReference Pcr(string bank, int index, string hex) => new(bank, index, hex);

    private static TpmReferenceSet RefSet(string name, params TpmPcrReference[] pcrs) => new(name, pcrs, default);

    [Fact]
    public async Task A_tpm_reference_set_is_stored_normalised_listed_by_name_and_survives_a_reopen()
    {
        var set = RefSet("prod-2026q4", Pcr("sha256", 7, Pcr7B.ToUpperInvariant()), Pcr("sha256", 7, Pcr7A), Pcr("sha1", 0, new string('0', 40)), Pcr("sha256", 7, Pcr7A));
        var stored = await Store.TpmReferenceSets.CreateAsync(set, Ct);
        Assert.Equal(Start, stored.CreatedAt);
        Assert.Equal(["sha1:0:" + new string('0', 40), "sha256:7:" + Pcr7A, "sha256:7:" + Pcr7B], stored.Pcrs.Select(p => p.ToString()));
        await Store.TpmReferenceSets.CreateAsync(RefSet("a.staging", Pcr("sha384", 23, new string('c', 96))), Ct);

        await ReopenAsync();
        var got = await Store.TpmReferenceSets.GetAsync("prod-2026q4", Ct);
        Assert.NotNull(got);
        Assert.Equal(stored.Pcrs, got.Pcrs);
        Assert.Equal(Start, got.CreatedAt);
        Assert.Equal(["a.staging", "prod-2026q4"], (await Store.TpmReferenceSets.ListAsync(Ct)).Select(s => s.Name));
        Assert.Null(await Store.TpmReferenceSets.GetAsync("nope", Ct));
    }

    [Fact]
    public async Task Tpm_reference_set_create_and_delete_append_their_records_and_refusals_append_none()
    {
        var set = RefSet("prod", Pcr("sha256", 7, Pcr7A));
        await Store.TpmReferenceSets.CreateAsync(set, Ct, [LedgerEvents.TpmReference(LedgerEvents.TpmReferenceCreated, "uid:1000", set)]);
        var dup = RefSet("prod", Pcr("sha256", 4, Pcr7B));
        var conflict = await StoreAssert.ThrowsOneLineAsync<StoreConflictException>(() =>
            Store.TpmReferenceSets.CreateAsync(dup, Ct, [LedgerEvents.TpmReference(LedgerEvents.TpmReferenceCreated, "uid:1000", dup)]));
        Assert.Contains("'prod' already exists", conflict.Message, StringComparison.Ordinal);
        await StoreAssert.ThrowsOneLineAsync<StoreNotFoundException>(() =>
            Store.TpmReferenceSets.DeleteAsync("ghost", Ct, [LedgerEvents.TpmReference(LedgerEvents.TpmReferenceDeleted, "uid:1000", RefSet("ghost"))]));
        await Store.TpmReferenceSets.DeleteAsync("prod", Ct, [LedgerEvents.TpmReference(LedgerEvents.TpmReferenceDeleted, "uid:1000", set)]);

        Assert.Empty(await Store.TpmReferenceSets.ListAsync(Ct));
        var all = await AllLedgerAsync(Store);
        Assert.Equal(["tpm_reference.created", "tpm_reference.deleted"], all.Select(e => e.Kind));
        Assert.All(all, e => Assert.Equal("tpm_reference:prod", e.Subject));
        Assert.Contains($"\"pcrs\":[\"sha256:7:{Pcr7A}\"]", all[0].DataJson, StringComparison.Ordinal);
        AssertChained(all);
        // The kept name is free again after the delete.
        await Store.TpmReferenceSets.CreateAsync(dup, Ct);
    }

    [Fact]
    public async Task A_ledger_record_that_cannot_be_written_rolls_the_tpm_reference_set_back()
    {
        var set = RefSet("prod", Pcr("sha256", 7, Pcr7A));
        var bad = LedgerEvents.TpmReference(LedgerEvents.TpmReferenceCreated, "uid:1000", set) with { Kind = "" };
        await Assert.ThrowsAnyAsync<Exception>(() => Store.TpmReferenceSets.CreateAsync(set, Ct, [bad]));
        Assert.Null(await Store.TpmReferenceSets.GetAsync("prod", Ct));
    }

    [Theory]
    [InlineData("Prod", "sha256", 7, 64)]       // upper case name
    [InlineData("-prod", "sha256", 7, 64)]      // must start with a letter or digit
    [InlineData("prod", "md5", 7, 32)]          // unknown bank
    [InlineData("prod", "sha256", 24, 64)]      // index out of range
    [InlineData("prod", "sha256", -1, 64)]
    [InlineData("prod", "sha256", 7, 40)]       // a sha1-sized value in the sha256 bank
    [InlineData("prod", "sha1", 7, 64)]
    public async Task An_invalid_tpm_reference_set_is_refused_and_nothing_is_written(string name, string bank, int index, int hexLength)
    {
        await Assert.ThrowsAsync<ArgumentException>(() => Store.TpmReferenceSets.CreateAsync(RefSet(name, Pcr(bank, index, new string('a', hexLength))), Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.TpmReferenceSets.CreateAsync(RefSet("empty"), Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.TpmReferenceSets.CreateAsync(RefSet("nothex", Pcr("sha256", 7, new string('g', 64))), Ct));
        Assert.Empty(await Store.TpmReferenceSets.ListAsync(Ct));
    }

    [Fact]
    public async Task Concurrent_creates_of_one_tpm_reference_name_from_two_stores_let_exactly_one_win()
    {
        var other = await OpenExtraAsync();
        var attempts = Enumerable.Range(0, 6).Select(async i =>
        {
            try
            {
                await (i % 2 == 0 ? Store : other).TpmReferenceSets.CreateAsync(RefSet("race", Pcr("sha256", i, Pcr7A)), Ct);
                return true;
            }
            catch (StoreConflictException)
            {
                return false;
            }
        });
        Assert.Single(await Task.WhenAll(attempts), won => won);
        Assert.Single(await other.TpmReferenceSets.ListAsync(Ct));
    }
}
