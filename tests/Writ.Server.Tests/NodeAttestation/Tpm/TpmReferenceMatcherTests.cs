using Writ.Server.NodeAttestation.Tpm;
using Writ.Server.Storage;

namespace Writ.Server.Tests.NodeAttestation.Tpm;

public class TpmReferenceMatcherTests
{
    private static byte[] D(byte b, int size = 32) => Enumerable.Repeat(b, size).ToArray();
    private static string H(byte b, int size = 32) => Convert.ToHexStringLower(D(b, size));

    private static TpmReferenceSet Set(string name, params (string Bank, int Index, string Hex)[] pcrs) =>
        new(name, [.. pcrs.Select(p => new TpmPcrReference(p.Bank, p.Index, p.Hex))], DateTimeOffset.UnixEpoch);

    private static readonly (string, int, byte[])[] Node = [("sha256", 0, D(0x10)), ("sha256", 4, D(0x14)), ("sha256", 7, D(0x17)), ("sha1", 7, D(0x71, 20))];

    [Fact]
    public void A_set_matches_when_every_pcr_it_names_has_an_allowed_value()
    {
        var sets = new[]
        {
            Set("pcr7", ("sha256", 7, H(0x17))),
            Set("boot", ("sha256", 0, H(0x10)), ("sha256", 4, H(0x14))),
            Set("alternatives", ("sha256", 7, H(0x99)), ("sha256", 7, H(0x17).ToUpperInvariant())),   // several values for one PCR: either
            Set("sha1-bank", ("sha1", 7, H(0x71, 20))),
        };
        Assert.Equal(["alternatives", "boot", "pcr7", "sha1-bank"], TpmReferenceMatcher.Matching(Node, sets));
    }

    [Fact]
    public void A_set_does_not_match_on_a_changed_or_missing_pcr_or_another_bank()
    {
        var sets = new[]
        {
            Set("changed", ("sha256", 7, H(0x18))),
            Set("one-of-two-wrong", ("sha256", 0, H(0x10)), ("sha256", 4, H(0x15))),
            Set("not-quoted", ("sha256", 14, H(0x00))),
            Set("other-bank", ("sha384", 7, H(0x17, 48))),
            Set("empty"),
        };
        Assert.Empty(TpmReferenceMatcher.Matching(Node, sets));
        Assert.Empty(TpmReferenceMatcher.Matching([], [Set("pcr7", ("sha256", 7, H(0x17)))]));
    }

    [Fact]
    public void A_second_conflicting_value_for_one_pcr_never_makes_a_set_match()
    {
        // Attacker: reports PCR 7 twice, the real value and the reference value, hoping "one of them" is enough.
        (string, int, byte[])[] doubled = [("sha256", 7, D(0x66)), ("sha256", 7, D(0x17))];
        Assert.Empty(TpmReferenceMatcher.Matching(doubled, [Set("pcr7", ("sha256", 7, H(0x17)))]));
    }

    [Fact]
    public void Covers_names_the_pcrs_of_a_set()
    {
        var set = Set("boot", ("sha256", 0, H(0x10)), ("sha256", 7, H(0x17)));
        Assert.True(TpmReferenceMatcher.Covers(set, "sha256", 7));
        Assert.False(TpmReferenceMatcher.Covers(set, "sha256", 4));
        Assert.False(TpmReferenceMatcher.Covers(set, "sha1", 7));
    }
}
