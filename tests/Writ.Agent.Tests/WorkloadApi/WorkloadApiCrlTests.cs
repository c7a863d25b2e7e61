using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Agent.Sync;
using Writ.Agent.Tests.Instances;
using Writ.Protocol.Agent;
using Writ.Spiffe;

using Host = Writ.Agent.Tests.WorkloadApi.WorkloadApiHost;

namespace Writ.Agent.Tests.WorkloadApi;

/// <summary>
/// The CRLs the server pushes with its bundle: kept in the agent state (published with the batch that carried them) and
/// served in the Workload API's <c>crl</c> fields, a CRL-only change (a revocation) reaching streams already open.
/// </summary>
public sealed class WorkloadApiCrlTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly TrustDomain Td = TrustDomain.Parse("example.org");

    private static string OwnUid => "unix:uid:" + InstanceRig.Ids(Environment.ProcessId).Uid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void Pushed_crls_are_published_with_their_batch_current_first_and_kept_until_the_next_bundle()
    {
        using var rig = new InstanceRig();
        Assert.Empty(rig.State.Current.Crls.Der);
        var (current, retired) = (Crl(1), Crl(2));

        // The bundle rides on the first page of a batch: nothing is visible before the batch ends.
        var first = new SyncUpdate { Revision = 1, Reset = true, Bundle = BundleWith(current, retired) };
        Assert.Null(rig.State.Apply(first, Td));
        Assert.Empty(rig.State.Current.Crls.Der);
        var generation = rig.State.Changed.Generation;
        var published = rig.State.Apply(new SyncUpdate { Revision = 1, PageEnd = true }, Td);
        Assert.NotNull(published);
        Assert.Equal([current, retired], published.Crls.Der.Select(c => c.ToByteArray()));
        Assert.True(rig.State.Changed.Generation > generation);   // streams wake

        // A batch without a bundle keeps them; the next bundle replaces them (a revocation re-signs the CRL).
        rig.State.Apply(new SyncUpdate { Revision = 2, PageEnd = true, Upserts = { InstanceRig.Entry("web", OwnUid) } }, Td);
        Assert.Equal(published.Crls.Hash, rig.State.Current.Crls.Hash);
        var next = Crl(3);
        rig.State.Apply(new SyncUpdate { Revision = 3, PageEnd = true, Bundle = BundleWith(next) }, Td);
        Assert.Equal([next], rig.State.Current.Crls.Der.Select(c => c.ToByteArray()));
        Assert.NotEqual(published.Crls.Hash, rig.State.Current.Crls.Hash);

        // An abandoned half batch (a reset starts over) does not leak its CRL into the next one.
        Assert.Null(rig.State.Apply(new SyncUpdate { Revision = 4, Reset = true, Bundle = BundleWith(Crl(4)) }, Td));
        rig.State.Apply(new SyncUpdate { Revision = 4, Reset = true, PageEnd = true }, Td);
        Assert.Equal([next], rig.State.Current.Crls.Der.Select(c => c.ToByteArray()));

        // A bundle with no CRL at all (nothing unexpired revoked, older servers) clears them rather than keep stale ones.
        rig.State.Apply(new SyncUpdate { Revision = 5, PageEnd = true, Bundle = new Bundle { TrustDomain = Td.Name } }, Td);
        Assert.Empty(rig.State.Current.Crls.Der);
        Assert.Equal("", rig.State.Current.Crls.Hash);
    }

    [Fact]
    public void Crl_sets_differ_when_the_split_between_crls_differs()
    {
        // Hashing the concatenation alone would make [ab, c] and [a, bc] the same set.
        var a = CrlSet.From(new Bundle { CrlDer = ByteString.CopyFrom([1, 2]), RetiredCrlDer = { ByteString.CopyFrom([3]) } });
        var b = CrlSet.From(new Bundle { CrlDer = ByteString.CopyFrom([1]), RetiredCrlDer = { ByteString.CopyFrom([2, 3]) } });
        Assert.NotEqual(a.Hash, b.Hash);
        Assert.Equal(a.Hash, CrlSet.From(new Bundle { CrlDer = ByteString.CopyFrom([1, 2]), RetiredCrlDer = { ByteString.CopyFrom([3]) } }).Hash);
    }

    [Fact]
    public async Task A_crl_only_change_reaches_open_x509_svid_and_x509_bundle_streams_with_the_same_svid()
    {
        await using var host = await Host.StartAsync();
        host.Rig.SetEntries(InstanceRig.Entry("web", OwnUid));
        var before = Crl(10);
        Push(host.Rig.State, before);

        using var svids = host.Client.FetchX509SVID(new X509SVIDRequest(), Host.Headers, cancellationToken: Ct);
        using var bundles = host.Client.FetchX509Bundles(new X509BundlesRequest(), Host.Headers, cancellationToken: Ct);
        Assert.True(await svids.ResponseStream.MoveNext(Ct));
        Assert.True(await bundles.ResponseStream.MoveNext(Ct));
        var first = svids.ResponseStream.Current;
        Assert.Equal([before], first.Crl.Select(c => c.ToByteArray()));
        Assert.Equal([before], bundles.ResponseStream.Current.Crl.Select(c => c.ToByteArray()));

        // The server revoked someone else's SVID: a new CRL, nothing else changed. Both streams send it.
        var (after, retired) = (Crl(11), Crl(12));
        Push(host.Rig.State, after, retired);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(10));
        Assert.True(await svids.ResponseStream.MoveNext(deadline.Token));
        Assert.True(await bundles.ResponseStream.MoveNext(deadline.Token));
        var second = svids.ResponseStream.Current;
        Assert.Equal([after, retired], second.Crl.Select(c => c.ToByteArray()));
        Assert.Equal([after, retired], bundles.ResponseStream.Current.Crl.Select(c => c.ToByteArray()));
        Assert.Equal(first.Svids.Single().X509Svid, second.Svids.Single().X509Svid);   // the same SVID, not a rotation

        // What the workload gets is a CRL a verifier can read.
        CertificateRevocationListBuilder.Load(second.Crl[0].ToByteArray(), out var number);
        Assert.Equal(11, (int)number);
    }

    private static void Push(AgentState state, params byte[][] crls) =>
        state.Apply(new SyncUpdate { Revision = state.Current.Revision + 1, PageEnd = true, Bundle = BundleWith(crls) }, Td);

    private static Bundle BundleWith(params byte[][] crls)
    {
        var b = new Bundle { TrustDomain = Td.Name, CrlDer = ByteString.CopyFrom(crls[0]) };
        b.RetiredCrlDer.AddRange(crls.Skip(1).Select(c => ByteString.CopyFrom(c)));
        return b;
    }

    private static X509Certificate2 CaCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=test CA", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.KeyCertSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        return req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
    }

    /// <summary>A real (empty) CRL with this number, signed by a throwaway CA.</summary>
    private static byte[] Crl(int number)
    {
        using var ca = CaCertificate();
        var now = DateTimeOffset.UtcNow;
        return new CertificateRevocationListBuilder().Build(ca, number, now.AddHours(1), HashAlgorithmName.SHA256, thisUpdate: now);
    }
}
