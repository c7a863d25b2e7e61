using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Spiffe;
using static Writ.Server.Tests.Ca.CaTest;

namespace Writ.Server.Tests.Ca;

/// <summary>A CA is bound to its trust domain: it signs nothing outside it, and its journal says which it is.</summary>
public sealed class CaTrustDomainTests
{
    private static readonly SpiffeId Foreign = SpiffeId.Parse("spiffe://other.org/workload");

    [Fact]
    public async Task The_ca_refuses_to_sign_an_id_outside_its_trust_domain_whatever_the_caller_asks()
    {
        await using var h = await CaHarness.CreateAsync();
        var ca = await h.StartCaAsync(new CaOptions(), new MemoryKeyManager());

        foreach (var sign in (Action[])[
            () => ca.SignX509Svid(Foreign, WorkloadKey(), TimeSpan.FromMinutes(5)),
            () => ca.SignX509SvidDer(Foreign, WorkloadKey(), TimeSpan.FromMinutes(5)),
            () => ca.MintJwtSvid(Foreign, ["aud"], TimeSpan.FromMinutes(5)),
            () => ca.MintJwtSvidWithId(Foreign, ["aud"], TimeSpan.FromMinutes(5), null)])
        {
            var e = Assert.Throws<ArgumentException>(sign);
            OneLine(e);
            Assert.Contains("example.org", e.Message, StringComparison.Ordinal);
            Assert.Contains("spiffe://other.org/workload", e.Message, StringComparison.Ordinal);
        }
        // Its own trust domain is signed as before.
        Assert.Equal(CaHarness.Workload.ToString(), ca.SignX509Svid(CaHarness.Workload, WorkloadKey(), TimeSpan.FromMinutes(5))[0]
            .GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.UrlName, false));
    }

    [Fact]
    public async Task The_journal_names_the_trust_domain_its_ca_was_made_for()
    {
        await using var h = await CaHarness.CreateAsync();
        Assert.Null(await WritCa.JournalTrustDomainAsync(h.Store, Ct));
        await h.StartCaAsync(new CaOptions(), new MemoryKeyManager());
        Assert.Equal(CaHarness.Td, await WritCa.JournalTrustDomainAsync(h.Store, Ct));
    }
}
