using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using Envoy.Config.Core.V3;
using Envoy.Extensions.TransportSockets.Tls.V3;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Writ.Agent.Cache;
using Writ.Spiffe.Bundles;

namespace Writ.Agent.Sds;

/// <summary>
/// The trust bundles SDS can serve a caller: the agent's own trust domain's and one per foreign trust domain the caller's
/// entries federate with (<see cref="Federated"/>, issue #16; the same set as the Workload API's <c>federated_bundles</c>).
/// </summary>
public sealed record SdsBundleSet(TrustBundle Own, IReadOnlyList<TrustBundle> Federated)
{
    public static SdsBundleSet OwnOnly(TrustBundle own) => new(own, []);

    /// <summary>Every bundle, the own one first.</summary>
    public IEnumerable<TrustBundle> All => Federated.Prepend(Own);
}

/// <summary>What a set of requested resource names resolves to: the secrets, and the names this caller has none for.</summary>
public sealed record SdsSelection(IReadOnlyList<Secret> Secrets, IReadOnlyList<string> Unknown);

/// <summary>
/// The one mapping of a caller's X.509-SVIDs and the agent's bundles to Envoy <c>Secret</c>s, named as SPIRE names them:
/// <list type="bullet">
/// <item>a <c>tls_certificate</c> (chain and PKCS#8 key as inline PEM) per SVID named by its SPIFFE ID, and the first
/// SVID (entries ordered by SPIFFE ID) again under <see cref="SdsOptions.DefaultSvidName"/>;</item>
/// <item>a <c>validation_context</c> (<c>trusted_ca</c>, inline PEM roots) under <see cref="SdsOptions.DefaultBundleName"/>
/// with the own trust domain's roots, under each trust domain's ID (<c>spiffe://td</c>) with that domain's roots, and
/// under <see cref="SdsOptions.DefaultAllBundlesName"/> with the roots of every trust domain.</item>
/// </list>
/// No names asked means everything the caller may have, by SPIFFE ID (SVIDs) and trust domain ID (bundles), as SPIRE
/// answers. A name the caller has nothing for is reported in <see cref="SdsSelection.Unknown"/> (the service refuses it).
/// </summary>
public static class SdsSecrets
{
    public const string SecretTypeUrl = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

    /// <summary>PEM of one SVID's chain and key, built once per cached SVID (the cache replaces, never mutates, an SVID).</summary>
    private sealed record SvidPem(ByteString Chain, ByteString Key);

    private static readonly ConditionalWeakTable<CachedX509, SvidPem> SvidPems = [];

    private static readonly ConditionalWeakTable<TrustBundle, ByteString> BundlePems = [];

    public static SdsSelection Select(IReadOnlyCollection<string> names, IReadOnlyList<CachedX509> svids, SdsBundleSet bundles, SdsOptions options)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(svids);
        ArgumentNullException.ThrowIfNull(bundles);
        ArgumentNullException.ThrowIfNull(options);
        var secrets = new List<Secret>();
        var wanted = new HashSet<string>(names.Where(n => n.Length > 0), StringComparer.Ordinal);
        var all = wanted.Count == 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);

        void Add(string name, Secret secret)
        {
            if (seen.Add(name))
            {
                secrets.Add(secret);
            }
            wanted.Remove(name);
        }

        foreach (var bundle in bundles.All)
        {
            var id = bundle.TrustDomain.IdString;
            if (all || wanted.Contains(id))
            {
                Add(id, Validation(id, [bundle]));
            }
        }
        if (!all && wanted.Contains(options.DefaultBundleName))
        {
            Add(options.DefaultBundleName, Validation(options.DefaultBundleName, [bundles.Own]));
        }
        if (!all && wanted.Contains(options.DefaultAllBundlesName))
        {
            Add(options.DefaultAllBundlesName, Validation(options.DefaultAllBundlesName, [.. bundles.All]));
        }
        for (var i = 0; i < svids.Count; i++)
        {
            var svid = svids[i];
            if (all || wanted.Contains(svid.SpiffeId))
            {
                Add(svid.SpiffeId, Certificate(svid.SpiffeId, svid));
            }
            if (i == 0 && !all && wanted.Contains(options.DefaultSvidName))
            {
                Add(options.DefaultSvidName, Certificate(options.DefaultSvidName, svid));
            }
        }
        return new SdsSelection(secrets, [.. wanted.Order(StringComparer.Ordinal)]);
    }

    /// <summary>The secrets as a discovery response's resources (each an Any of <see cref="SecretTypeUrl"/>).</summary>
    public static IEnumerable<Any> Resources(SdsSelection selection)
    {
        ArgumentNullException.ThrowIfNull(selection);
        return selection.Secrets.Select(s => Any.Pack(s));
    }

    /// <summary>SHA-256 over the resources' encoding: two responses with the same hash carry the same secrets.</summary>
    public static string Hash(IEnumerable<Any> resources)
    {
        ArgumentNullException.ThrowIfNull(resources);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var r in resources)
        {
            sha.AppendData(r.ToByteArray());
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static Secret Certificate(string name, CachedX509 svid)
    {
        var pem = SvidPems.GetValue(svid, s =>
        {
            var chain = new StringBuilder();
            foreach (var c in s.Chain)
            {
                chain.Append(PemEncoding.Write("CERTIFICATE", c.RawData)).Append('\n');
            }
            var keyChars = PemEncoding.Write("PRIVATE KEY", s.KeyPkcs8);
            try
            {
                var key = new byte[Encoding.ASCII.GetByteCount(keyChars) + 1];
                Encoding.ASCII.GetBytes(keyChars, key);
                key[^1] = (byte)'\n';
                return new SvidPem(ByteString.CopyFromUtf8(chain.ToString()), UnsafeByteOperations.UnsafeWrap(key));
            }
            finally
            {
                Array.Clear(keyChars);
            }
        });
        return new Secret
        {
            Name = name,
            TlsCertificate = new TlsCertificate
            {
                CertificateChain = new DataSource { InlineBytes = pem.Chain },
                PrivateKey = new DataSource { InlineBytes = pem.Key },
            },
        };
    }

    private static Secret Validation(string name, IReadOnlyList<TrustBundle> bundles)
    {
        var roots = bundles.Count == 1 ? PemOf(bundles[0]) : ByteString.CopyFrom([.. bundles.SelectMany(b => PemOf(b).ToByteArray())]);
        return new Secret
        {
            Name = name,
            ValidationContext = new CertificateValidationContext { TrustedCa = new DataSource { InlineBytes = roots } },
        };
    }

    private static ByteString PemOf(TrustBundle bundle) => BundlePems.GetValue(bundle, b =>
    {
        var pem = new StringBuilder();
        foreach (var c in b.X509Authorities)
        {
            pem.Append(PemEncoding.Write("CERTIFICATE", c.RawData)).Append('\n');
        }
        return ByteString.CopyFromUtf8(pem.ToString());
    });
}
