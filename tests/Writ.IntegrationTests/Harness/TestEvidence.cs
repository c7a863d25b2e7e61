using System.Security.Cryptography;
using Writ.Protocol.Agent;

namespace Writ.IntegrationTests.Harness;

/// <summary>Workload evidence as an agent sends it with a CSR or JWT request (selectors "type:value", facts, instance id).</summary>
public static class TestEvidence
{
    private static int _next = 1000;

    /// <summary>Evidence of a fresh instance with these selectors (default: unix:uid:1000).</summary>
    public static AttestedWorkload Of(params string[] selectors)
    {
        var pid = Interlocked.Increment(ref _next);
        var w = new AttestedWorkload { InstanceId = $"{pid}:{RandomNumberGenerator.GetInt32(1, int.MaxValue)}" };
        foreach (var s in selectors.Length == 0 ? ["unix:uid:1000"] : selectors)
        {
            var i = s.IndexOf(':', StringComparison.Ordinal);
            w.Selectors.Add(new Selector { Type = s[..i], Value = s[(i + 1)..] });
        }
        w.Facts["unix.pid"] = pid.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return w;
    }

    /// <summary>A 32-byte stand-in for the instance's X.509-SVID thumbprint (binds a JWT-SVID: the default policy wants it).</summary>
    public static Google.Protobuf.ByteString Thumbprint(byte[] leafDer) => Google.Protobuf.ByteString.CopyFrom(SHA256.HashData(leafDer));
}
