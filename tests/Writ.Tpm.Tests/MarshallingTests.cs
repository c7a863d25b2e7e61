using Writ.Tpm.Marshalling;
using Xunit;

namespace Writ.Tpm.Tests;

public class MarshallingTests
{
    [Fact]
    public void Sized_structures_round_trip_big_endian()
    {
        var w = new TpmWriter().WriteUInt16(TpmSt.NoSessions).WriteUInt32(0).WriteSized(b => b.WriteUInt16(TpmAlg.Sha256).WriteUInt32(0xDEADBEEF));
        w.PatchUInt32(2, (uint)w.Length);
        var bytes = w.ToArray();
        Assert.Equal("80010000000e0006000bdeadbeef", Convert.ToHexStringLower(bytes));
        var r = new TpmReader(bytes);
        Assert.Equal(TpmSt.NoSessions, r.ReadUInt16());
        Assert.Equal(14u, r.ReadUInt32());
        var inner = new TpmReader(r.ReadSized());
        Assert.Equal(TpmAlg.Sha256, inner.ReadUInt16());
        Assert.Equal(0xDEADBEEFu, inner.ReadUInt32());
        r.ExpectEnd("the test structure");
    }

    [Fact]
    public void Truncated_input_is_a_format_error_not_an_index_error()
    {
        byte[] bytes = [0x00, 0x05, 0x01, 0x02];   // a TPM2B claiming 5 bytes with 2 present
        var e = Assert.Throws<TpmFormatException>(() => new TpmReader(bytes).ReadSized().ToArray());
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        Assert.Throws<TpmFormatException>(() => { var r = new TpmReader([1, 2, 3]); r.ReadUInt16(); r.ExpectEnd("x"); });
    }
}
