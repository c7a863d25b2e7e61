using System.Security.Cryptography;
using Writ.Server.Issuance;
using Writ.Server.Tests.Policy;
using Writ.Spiffe.X509;

namespace Writ.Server.Tests.Issuance;

/// <summary>Issue #13 item 2: SignX509Svids answers per CSR; one refused CSR (denied, foreign entry, bad CSR) does not fail the others.</summary>
public sealed class SignBatchTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_batch_of_three_with_one_denied_gets_two_svids_and_one_coded_refusal()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var web = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var api = await h.EntryAsync("spiffe://example.org/api", "unix:uid:1000");
        var db = await h.EntryAsync("spiffe://example.org/db", "unix:uid:1000", "unix:gid:4242");   // the evidence lacks gid 4242
        var ev = PipelineHarness.Evidence("42:100", "unix:uid:1000", "unix:gid:1000");
        using var k1 = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var k2 = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var k3 = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var batch = await h.Pipeline.SignX509Async(h.Node,
            [new X509SvidRequest(web.Id, Csr.Create(k1), ev), new X509SvidRequest(db.Id, Csr.Create(k2), ev), new X509SvidRequest(api.Id, Csr.Create(k3), ev)], Ct);

        Assert.Equal(["spiffe://example.org/web", "spiffe://example.org/api"], batch.Issued.Select(i => i.Entry.SpiffeId).ToArray());
        var refused = Assert.Single(batch.Denials);
        Assert.Equal((db.Id, IssuanceErrors.Denied, 7), (refused.EntryId, refused.ErrorCode, refused.Code));
        Assert.NotNull(refused.DecisionId);
        Assert.Contains("unix:gid:4242", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Each_kind_of_refusal_carries_its_stable_code_and_the_rest_of_the_batch_is_signed()
    {
        await using var h = await PipelineHarness.CreateAsync();
        var web = await h.EntryAsync("spiffe://example.org/web", "unix:uid:1000");
        var ev = PipelineHarness.Evidence("42:100", "unix:uid:1000");
        using var k = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var batch = await h.Pipeline.SignX509Async(h.Node,
        [
            new X509SvidRequest("no-such-entry", Csr.Create(k), ev),
            new X509SvidRequest(web.Id, new byte[] { 0x30, 0x03, 0x02, 0x01, 0x00 }, ev),
            new X509SvidRequest(web.Id, Csr.Create(k), null, "the evidence was refused (test)", "42:100"),
            new X509SvidRequest(web.Id, Csr.Create(k), ev),
        ], Ct);

        Assert.Single(batch.Issued);
        Assert.Equal([IssuanceErrors.EntryUnauthorized, IssuanceErrors.BadCsr, IssuanceErrors.BadEvidence], batch.Denials.Select(d => d.ErrorCode).ToArray());
    }
}
