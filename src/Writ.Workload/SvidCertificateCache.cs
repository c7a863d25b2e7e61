using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.X509;

namespace Writ.Workload;

/// <summary>The TLS form of an SVID (leaf with its private key, and a certificate context with the intermediates), made once per SVID.</summary>
internal sealed class SvidCertificateCache
{
    internal sealed record Entry(X509Certificate2 Leaf, SslStreamCertificateContext Context);

    private readonly ConditionalWeakTable<X509Svid, Entry> _entries = [];

    public Entry For(X509Svid svid) => _entries.GetValue(svid, Create);

    private static Entry Create(X509Svid svid)
    {
        var leaf = svid.PrivateKey switch
        {
            ECDsa ec => svid.Leaf.CopyWithPrivateKey(ec),
            RSA rsa => svid.Leaf.CopyWithPrivateKey(rsa),
            _ => throw new WorkloadApiException(WorkloadErrors.NoSvid, $"the X.509-SVID of {svid.Id} has no usable private key (EC or RSA)"),
        };
        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < svid.Chain.Count; i++)
        {
            intermediates.Add(svid.Chain[i]);
        }
        return new Entry(leaf, SslStreamCertificateContext.Create(leaf, intermediates, offline: true));
    }
}
