using System.Globalization;
using System.Net;
using System.Text;
using Writ.Policy.Evaluation;

namespace Writ.Policy.Extensions;

/// <summary>Cedar <c>ipaddr</c>: an IPv4 or IPv6 address with a prefix length (a single address has the full length).</summary>
public sealed class IpAddrValue : ExtensionValue
{
    private IpAddrValue(bool isV4, UInt128 address, int prefix)
    {
        IsIpv4 = isV4;
        Address = address;
        Prefix = prefix;
    }

    public bool IsIpv4 { get; }

    public bool IsIpv6 => !IsIpv4;

    /// <summary>The address bits (IPv4 in the low 32 bits).</summary>
    public UInt128 Address { get; }

    public int Prefix { get; }

    private int Width => IsIpv4 ? 32 : 128;

    public override string TypeName => "ipaddr";

    /// <summary>Parses <c>a.b.c.d</c>, an IPv6 address, either optionally with <c>/prefix</c>.</summary>
    public static bool TryParse(string text, out IpAddrValue? value, out string error)
    {
        ArgumentNullException.ThrowIfNull(text);
        value = null;
        error = $"\"{DecimalValue.Trim(text)}\" is not an IP address or CIDR range; write e.g. ip(\"10.0.0.1\"), ip(\"10.0.0.0/8\") or ip(\"::1\")";
        if (text.Length > 43) return false;
        if (Count(text, ':') >= 2 && Count(text, '.') >= 2) return false;
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var addrText = slash < 0 ? text.AsSpan() : text.AsSpan(0, slash);
        bool v4;
        UInt128 addr;
        if (TryParseV4(addrText, out var a4))
        {
            v4 = true;
            addr = a4;
        }
        else if (TryParseV6(addrText, out var a6))
        {
            v4 = false;
            addr = a6;
        }
        else
        {
            return false;
        }

        var max = v4 ? 32 : 128;
        var prefix = max;
        if (slash >= 0)
        {
            var p = text.AsSpan(slash + 1);
            if (p.Length == 0 || p.Length > (v4 ? 2 : 3)) return false;
            foreach (var c in p)
            {
                if (c is < '0' or > '9') return false;
            }

            if (p.Length > 1 && p[0] == '0') return false;
            prefix = int.Parse(p, NumberStyles.None, CultureInfo.InvariantCulture);
            if (prefix > max) return false;
        }

        error = "";
        value = new IpAddrValue(v4, addr, prefix);
        return true;
    }

    private static int Count(string s, char c)
    {
        var n = 0;
        foreach (var x in s)
        {
            if (x == c) n++;
        }

        return n;
    }

    private static bool TryParseV4(ReadOnlySpan<char> s, out uint addr)
    {
        addr = 0;
        var parts = 0;
        var i = 0;
        while (true)
        {
            var start = i;
            while (i < s.Length && s[i] is >= '0' and <= '9') i++;
            var len = i - start;
            if (len == 0 || len > 3 || (len > 1 && s[start] == '0')) return false;
            var v = int.Parse(s.Slice(start, len), NumberStyles.None, CultureInfo.InvariantCulture);
            if (v > 255) return false;
            addr = (addr << 8) | (uint)v;
            parts++;
            if (parts == 4) return i == s.Length;
            if (i >= s.Length || s[i] != '.') return false;
            i++;
        }
    }

    private static bool TryParseV6(ReadOnlySpan<char> s, out UInt128 addr)
    {
        addr = 0;
        var head = new List<ushort>();
        var tail = new List<ushort>();
        var dbl = s.IndexOf("::");
        if (dbl >= 0)
        {
            if (s[(dbl + 2)..].IndexOf("::") >= 0) return false;
            if (!Groups(s[..dbl], head) || !Groups(s[(dbl + 2)..], tail)) return false;
            if (head.Count + tail.Count > 7) return false;
        }
        else
        {
            if (!Groups(s, head) || head.Count != 8) return false;
        }

        var all = new ushort[8];
        for (var i = 0; i < head.Count; i++) all[i] = head[i];
        for (var i = 0; i < tail.Count; i++) all[8 - tail.Count + i] = tail[i];
        foreach (var g in all) addr = (addr << 16) | g;
        return true;

        static bool Groups(ReadOnlySpan<char> part, List<ushort> into)
        {
            if (part.Length == 0) return true;
            foreach (var range in part.Split(':'))
            {
                var g = part[range];
                if (g.Length is 0 or > 4) return false;
                if (!ushort.TryParse(g, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var v)) return false;
                into.Add(v);
            }

            return true;
        }
    }

    private UInt128 NetMask(int prefix) => prefix == 0 ? 0 : (Width == 32 ? (UInt128)(uint.MaxValue << (32 - prefix)) : UInt128.MaxValue << (128 - prefix));

    private UInt128 HostMask(int prefix) => Width == 32 ? (prefix >= 32 ? 0 : (UInt128)(uint.MaxValue >> prefix)) : (prefix >= 128 ? 0 : UInt128.MaxValue >> prefix);

    public bool IsLoopback => IsIpv4 ? (Address >> 24) == 127 && Prefix >= 8 : Address == 1 && Prefix >= 128;

    public bool IsMulticast => IsIpv4 ? (Address >> 28) == 0xE && Prefix >= 4 : (Address >> 120) == 0xFF && Prefix >= 8;

    /// <summary>True if this range lies within <paramref name="other"/> (same family only).</summary>
    public bool IsInRange(IpAddrValue other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (IsIpv4 != other.IsIpv4) return false;
        var selfNet = Address & NetMask(Prefix);
        var otherNet = other.Address & NetMask(other.Prefix);
        var selfBroadcast = Address | HostMask(Prefix);
        var otherBroadcast = other.Address | HostMask(other.Prefix);
        return otherNet <= selfNet && selfBroadcast <= otherBroadcast;
    }

    public override bool Equals(Value? other) => other is IpAddrValue o && o.IsIpv4 == IsIpv4 && o.Address == Address && o.Prefix == Prefix;

    public override int GetHashCode() => HashCode.Combine(IsIpv4, Address, Prefix);

    internal override void Write(StringBuilder sb)
    {
        string addr;
        if (IsIpv4)
        {
            var a = (uint)Address;
            addr = new IPAddress([(byte)(a >> 24), (byte)(a >> 16), (byte)(a >> 8), (byte)a]).ToString();
        }
        else
        {
            var bytes = new byte[16];
            for (var i = 0; i < 16; i++) bytes[i] = (byte)(Address >> (8 * (15 - i)));
            addr = new IPAddress(bytes).ToString();
        }

        sb.Append("ip(\"").Append(addr).Append('/').Append(Prefix.ToString(CultureInfo.InvariantCulture)).Append("\")");
    }
}
