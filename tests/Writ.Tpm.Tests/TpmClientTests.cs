using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Tests.Shared;
using Writ.Tpm.Commands;
using Writ.Tpm.Device;
using Writ.Tpm.Marshalling;
using Writ.Tpm.Structures;
using Xunit;

namespace Writ.Tpm.Tests;

/// <summary>
/// Writ's TPM client against a real swtpm, each result checked by software nobody here wrote: tpm2_checkquote verifies
/// quotes, tpm2_makecredential makes the credentials ActivateCredential recovers, tpm2_pcrread reads PCRs, .NET checks
/// signatures and the EK certificate chain; and after every operation tpm2_getcap finds no transient object or session.
/// </summary>
public class TpmClientTests
{
    private static readonly TpmPcrSelection[] DefaultPcrs = [new(TpmAlg.Sha256, [0, 1, 2, 3, 4, 5, 6, 7, 14])];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_ek_certificate_from_nv_chains_to_the_manufacturer_ca_and_certifies_the_ek()
    {
        using var ca = SwtpmCa.Create();
        await using var tpm = await Swtpm.StartAsync(ca, Ct);
        var ek = new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port)).ReadEndorsement();

        Assert.Equal(TpmHandle.EkCertRsaNv, ek.CertificateIndex);
        using var cert = X509CertificateLoader.LoadCertificate(ek.Certificate!);
        AssertChainsTo(ca, cert);
        // The EK made from the default template is the certified key (tpm2-tools' own EK agrees).
        using var rsa = cert.GetRSAPublicKey()!;
        var modulus = rsa.ExportParameters(false).Modulus!;
        using var dir = new TempDir();
        await tpm.Tpm2Async("tpm2_createek", ["-c", dir.File("ek.ctx"), "-G", "rsa", "-u", dir.File("ek.pem"), "-f", "pem"], Ct);
        await tpm.Tpm2Async("tpm2_flushcontext", ["-t"], Ct);
        using var fromTool = RSA.Create();
        fromTool.ImportFromPem(File.ReadAllText(dir.File("ek.pem")));
        Assert.Equal(modulus, fromTool.ExportParameters(false).Modulus);
        Assert.True(TpmTemplates.SameKey(ek.Public, cert));
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
    }

    [Fact]
    public async Task Without_an_rsa_ek_certificate_the_p384_ek_of_the_high_range_template_is_used_and_activates_credentials()
    {
        using var ca = SwtpmCa.Create();
        await using var tpm = await Swtpm.StartAsync(ca, Ct);
        await tpm.Tpm2Async("tpm2_nvundefine", ["-C", "p", "0x1c00002"], Ct);   // only swtpm's ECC EK certificate is left
        var ops = new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port));

        var ek = ops.ReadEndorsement();

        Assert.Equal(TpmHandle.EkCertEccP256HighNv, ek.CertificateIndex);
        using var cert = X509CertificateLoader.LoadCertificate(ek.Certificate!);
        AssertChainsTo(ca, cert);
        Assert.Equal(384, cert.PublicKey.GetECDsaPublicKey()!.KeySize);
        Assert.True(TpmTemplates.SameKey(ek.Public, cert));
        var ak = ops.CreateKey(ek, TpmTemplates.AttestationKey());
        var agentKey = ops.CreateKey(ek, TpmTemplates.AgentKey());
        var secret = RandomNumberGenerator.GetBytes(32);
        var (blob, encrypted) = await MakeCredentialAsync(ek, ak, secret);
        var answer = ops.AnswerChallenge(ek, ak, agentKey, blob, encrypted, new byte[32], DefaultPcrs, new byte[32]);
        Assert.Equal(secret, answer.Secret);
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
    }

    private static void AssertChainsTo(SwtpmCa ca, X509Certificate2 cert)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.CustomTrustStore.Add(X509CertificateLoader.LoadCertificateFromFile(ca.RootCertificatePath));
        chain.ChainPolicy.ExtraStore.Add(X509CertificateLoader.LoadCertificateFromFile(ca.IssuerCertificatePath));
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid;
        Assert.True(chain.Build(cert), string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation)));
    }

    [Fact]
    public async Task A_tpm_without_an_ek_certificate_still_gives_its_default_ek()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        var ek = new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port)).ReadEndorsement();
        Assert.Null(ek.Certificate);
        Assert.Equal(TpmAlg.Rsa, (ushort)((ek.Public[0] << 8) | ek.Public[1]));
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
    }

    /// <summary>ExtendPcr (TPM2_PCR_Extend, `writ bench tpm`'s drift) gives PCR 14 = SHA-256(old || SHA-256(data)), as tpm2_pcrread reads it.</summary>
    [Fact]
    public async Task Extend_pcr_extends_the_sha256_bank_as_tpm2_pcrread_shows()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        static string Pcr14(string text) => System.Text.RegularExpressions.Regex.Match(text, @"14\s*:\s*0x([0-9A-F]{64})").Groups[1].Value;
        var before = Convert.FromHexString(Pcr14(await tpm.Tpm2Async("tpm2_pcrread", ["sha256:14"], Ct)));

        new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port)).ExtendPcr(14, "a measured component"u8);

        var expected = SHA256.HashData([.. before, .. SHA256.HashData("a measured component"u8)]);
        Assert.Equal(Convert.ToHexString(expected), Pcr14(await tpm.Tpm2Async("tpm2_pcrread", ["sha256:14"], Ct)));
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
    }

    [Fact]
    public async Task Objects_leaked_by_a_killed_process_on_a_tcp_tpm_are_reclaimed_instead_of_failing_every_operation()
    {
        using var ca = SwtpmCa.Create();
        await using var tpm = await Swtpm.StartAsync(ca, Ct);
        using var dir = new TempDir();
        // tpm2-tools on a TPM without a resource manager leaves what it creates loaded, as a process killed mid-operation
        // would: fill every transient object slot that way.
        for (var i = 0; i < 8 && !(await TpmTools.LoadedHandlesAsync(tpm, Ct)).Contains("0x80000002", StringComparison.Ordinal); i++)
            await tpm.Tpm2Async("tpm2_createprimary", ["-C", "o", "-G", "ecc", "-c", dir.File($"p{i}.ctx")], Ct);
        Assert.Contains("0x80000002", await TpmTools.LoadedHandlesAsync(tpm, Ct), StringComparison.Ordinal);
        var full = await Assert.ThrowsAsync<InvalidOperationException>(() => tpm.Tpm2Async("tpm2_createprimary", ["-C", "o", "-G", "ecc", "-c", dir.File("x.ctx")], Ct));
        Assert.Contains("0x902", full.Message, StringComparison.Ordinal);   // TPM_RC_OBJECT_MEMORY: the slots really are full

        var ek = new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port)).ReadEndorsement();
        Assert.NotNull(ek.Certificate);
        Assert.DoesNotContain("0x8000", await TpmTools.LoadedHandlesAsync(tpm, Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pcr_read_of_all_24_pcrs_equals_tpm2_pcrread()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        await tpm.ExtendPcrAsync(14, "writ", Ct);
        await tpm.ExtendPcrAsync(23, "more than eight per call", Ct);
        List<TpmPcrValue> values;
        using (var client = Tpm2.Open(TpmAddress.Tcp("127.0.0.1", tpm.Port)))
        {
            values = client.PcrRead([new TpmPcrSelection(TpmAlg.Sha256, [.. Enumerable.Range(0, 24)])]);
        }
        Assert.Equal(24, values.Count);
        var text = await tpm.Tpm2Async("tpm2_pcrread", ["sha256:all"], Ct);
        var fromTool = System.Text.RegularExpressions.Regex.Matches(text, @"(\d+)\s*:\s*0x([0-9A-F]{64})")
            .ToDictionary(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), m => m.Groups[2].Value);
        Assert.Equal(24, fromTool.Count);
        foreach (var v in values)
        {
            Assert.Equal(fromTool[v.Index], Convert.ToHexString(v.Digest.Span));
        }
    }

    [Fact]
    public async Task A_quote_by_a_new_ak_under_the_ek_is_verified_by_tpm2_checkquote()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        await tpm.ExtendPcrAsync(7, "secure boot", Ct);
        var ops = new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port));
        var ek = ops.ReadEndorsement();
        var ak = ops.CreateKey(ek, TpmTemplates.AttestationKey());
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
        var nonce = RandomNumberGenerator.GetBytes(32);
        var (quote, values) = ops.Quote(ek, ak, nonce, DefaultPcrs);
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));

        using var akKey = TpmTools.EcdsaOf(ak.Public);
        var pem = akKey.ExportSubjectPublicKeyInfoPem();
        Assert.Equal(0, await TpmTools.CheckQuoteAsync(pem, quote.Attest, quote.Signature, nonce, Ct));
        // A nonce other than the quoted one is refused by the same tool.
        Assert.NotEqual(0, await TpmTools.CheckQuoteAsync(pem, quote.Attest, quote.Signature, RandomNumberGenerator.GetBytes(32), Ct));

        var (type, extra, attested) = TpmTools.ReadAttest(quote.Attest);
        Assert.Equal(TpmSt.AttestQuote, type);
        Assert.Equal(nonce, extra);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7, 14], values.Select(v => v.Index));
        Assert.Equal(SHA256.HashData(values.SelectMany(v => v.Digest.ToArray()).ToArray()), TpmTools.QuotePcrDigest(attested));
    }

    [Fact]
    public async Task A_credential_from_tpm2_makecredential_for_this_ek_and_ak_is_activated()
    {
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        var ops = new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port));
        var ek = ops.ReadEndorsement();
        var ak = ops.CreateKey(ek, TpmTemplates.AttestationKey());
        var agentKey = ops.CreateKey(ek, TpmTemplates.AgentKey());
        var secret = RandomNumberGenerator.GetBytes(32);
        var (blob, encrypted) = await MakeCredentialAsync(ek, ak, secret);
        var nonce = RandomNumberGenerator.GetBytes(32);
        var digest = SHA256.HashData("to be signed"u8);

        var answer = ops.AnswerChallenge(ek, ak, agentKey, blob, encrypted, nonce, DefaultPcrs, digest);

        Assert.Equal(secret, answer.Secret);
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
        // The agent key's signature verifies with .NET against the key's public area.
        using var key = TpmTools.EcdsaOf(agentKey.Public);
        Assert.True(key.VerifyHash(digest, TpmTools.EcdsaP1363(answer.Signature)));
        Assert.False(key.VerifyHash(SHA256.HashData("something else"u8), TpmTools.EcdsaP1363(answer.Signature)));
        // The certification is by the AK, over the nonce, and names the agent key.
        var (type, extra, attested) = TpmTools.ReadAttest(answer.Certify.Attest);
        Assert.Equal(TpmSt.AttestCertify, type);
        Assert.Equal(nonce, extra);
        Assert.Equal(TpmTools.NameOf(agentKey.Public), new TpmReader(attested).ReadSized().ToArray());
        using var akKey = TpmTools.EcdsaOf(ak.Public);
        Assert.True(akKey.VerifyData(answer.Certify.Attest, TpmTools.EcdsaP1363(answer.Certify.Signature), HashAlgorithmName.SHA256));
        Assert.True(akKey.VerifyData(answer.Quote.Attest, TpmTools.EcdsaP1363(answer.Quote.Signature), HashAlgorithmName.SHA256));
    }

    [Fact]
    public async Task A_credential_made_for_another_tpms_ek_fails_with_a_clear_error_and_leaves_nothing_loaded()
    {
        // ECC EKs: swtpm (libtpms) goes into failure mode on an RSA-EK credential made for another EK, so the wrong-EK case
        // uses the ECC default EK (L-2), where the wrong seed fails the credential's integrity check as on any TPM.
        await using var tpm = await Swtpm.StartAsync(null, Ct);
        await using var other = await Swtpm.StartAsync(null, Ct);
        var ops = new TpmOperations(TpmAddress.Tcp("127.0.0.1", tpm.Port));
        var ek = EccEk(tpm);
        var otherEk = EccEk(other);
        var ak = ops.CreateKey(ek, TpmTemplates.AttestationKey());
        var agentKey = ops.CreateKey(ek, TpmTemplates.AgentKey());
        var (blob, encrypted) = await MakeCredentialAsync(otherEk, ak, RandomNumberGenerator.GetBytes(32));

        var e = Assert.Throws<TpmException>(() => ops.AnswerChallenge(ek, ak, agentKey, blob, encrypted, new byte[32], DefaultPcrs, new byte[32]));

        Assert.StartsWith("TPM2_ActivateCredential failed: TPM_RC_", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("the credential was not made for this TPM's EK and this AK", e.Message, StringComparison.Ordinal);
        Assert.Contains($"0x{e.ResponseCode:x}", e.Message, StringComparison.Ordinal);
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
        // The right EK with another AK's name (an AK from another TPM): refused too.
        var otherAk = new TpmOperations(TpmAddress.Tcp("127.0.0.1", other.Port)).CreateKey(otherEk, TpmTemplates.AttestationKey());
        var (blob2, encrypted2) = await MakeCredentialAsync(ek, otherAk, RandomNumberGenerator.GetBytes(32));
        var e2 = Assert.Throws<TpmException>(() => ops.AnswerChallenge(ek, ak, agentKey, blob2, encrypted2, new byte[32], DefaultPcrs, new byte[32]));
        Assert.Equal(TpmRc.Integrity, e2.BaseCode);
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(tpm, Ct));
        // A key blob of this TPM does not load into another one.
        var load = Assert.Throws<TpmException>(() => new TpmOperations(TpmAddress.Tcp("127.0.0.1", other.Port)).Quote(otherEk, ak, new byte[32], DefaultPcrs));
        Assert.StartsWith("TPM2_Load failed", load.Message, StringComparison.Ordinal);
        Assert.Equal("", await TpmTools.LoadedHandlesAsync(other, Ct));
    }

    private static TpmEndorsementKey EccEk(Swtpm tpm)
    {
        using var client = Tpm2.Open(TpmAddress.Tcp("127.0.0.1", tpm.Port));
        var ek = client.CreatePrimary(TpmHandle.Endorsement, TpmTemplates.EkEccP256());
        client.FlushContext(ek.Handle);
        return new TpmEndorsementKey(null, null, TpmTemplates.EkEccP256(), ek.Public);
    }

    [Fact]
    public async Task A_closed_port_or_missing_device_is_a_clear_error()
    {
        int port;
        using (var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            l.Start();
            port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        }
        var closed = Assert.Throws<TpmDeviceException>(() => new TpmOperations(TpmAddress.Tcp("127.0.0.1", port)).ReadEndorsement());
        Assert.Equal($"cannot reach the TPM at tcp://127.0.0.1:{port}: connection refused (is the TPM simulator running on that port?)", closed.Message);
        var missing = Assert.Throws<TpmDeviceException>(() => new TpmOperations(TpmAddress.Device("/dev/writ-no-such-tpm")).ReadEndorsement());
        Assert.StartsWith("cannot open the TPM device /dev/writ-no-such-tpm: it does not exist", missing.Message, StringComparison.Ordinal);
        await Task.CompletedTask;
    }

    [Theory]
    [InlineData("8001 7fffffff 00000000", "sent a response of 2147483647 bytes")]       // a size far beyond any TPM response
    [InlineData("8001 00000004 00000000", "sent a response of 4 bytes")]                // shorter than its own header
    [InlineData("8001 00000020 00000000 0000", "closed the connection in the middle of a response")]
    public async Task A_tcp_peer_that_is_not_a_sane_tpm_is_refused_without_reading_unbounded_data(string response, string expected)
    {
        // A hostile or broken "TPM" on the port: the client reads the header, checks the size, and never allocates or waits for more.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var peer = Task.Run(async () =>
        {
            using var s = await listener.AcceptSocketAsync(Ct);
            await s.ReceiveAsync(new byte[4096], Ct);
            await s.SendAsync(Convert.FromHexString(response.Replace(" ", "", StringComparison.Ordinal)), Ct);
            s.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        }, Ct);
        using var client = Tpm2.Open(TpmAddress.Tcp("127.0.0.1", port));
        var e = Assert.Throws<TpmDeviceException>(() => client.GetTpmProperty(TpmCap.PtNvBufferMax));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        await peer;
    }

    [Theory]
    [InlineData("/dev/tpmrm0", "/dev/tpmrm0")]
    [InlineData("tcp://127.0.0.1:2321", "tcp://127.0.0.1:2321")]
    [InlineData("TCP://localhost:1", "tcp://localhost:1")]
    public void Tpm_addresses_parse(string text, string canonical)
    {
        Assert.True(TpmAddress.TryParse(text, out var a, out var error), error);
        Assert.Equal(canonical, a.ToString());
    }

    [Theory]
    [InlineData("", "the TPM address is empty")]
    [InlineData("tpmrm0", "is neither a device path")]
    [InlineData("http://127.0.0.1:2321", "is neither a device path")]
    [InlineData("tcp://127.0.0.1", "is not tcp://HOST:PORT")]
    [InlineData("tcp://127.0.0.1:0", "is not tcp://HOST:PORT")]
    [InlineData("tcp://127.0.0.1:65536", "is not tcp://HOST:PORT")]
    [InlineData("tcp://:2321", "is not tcp://HOST:PORT")]
    [InlineData("tcp://host:2321/path", "is not tcp://HOST:PORT")]
    public void Bad_tpm_addresses_are_refused_with_a_reason(string text, string reason)
    {
        Assert.False(TpmAddress.TryParse(text, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x2DFu, TpmCc.ActivateCredential, "TPM2_ActivateCredential failed: TPM_RC_INTEGRITY (0x2df, parameter 2): the credential was not made for this TPM's EK and this AK")]
    [InlineData(0x18Bu, TpmCc.Load, "TPM2_Load failed: TPM_RC_HANDLE (0x18b, handle 1): the handle does not name a loaded object or session")]
    [InlineData(0x9A2u, TpmCc.Quote, "TPM2_Quote failed: TPM_RC_BAD_AUTH (0x9a2, session 1): the authorization is wrong (a bad password, or a policy that does not match)")]
    [InlineData(0x902u, TpmCc.CreatePrimary, "TPM2_CreatePrimary failed: TPM_RC_OBJECT_MEMORY (0x902): the TPM has no room for another object: something leaks transient handles")]
    [InlineData(0x143u, TpmCc.Certify, "TPM2_Certify failed: TPM_RC_COMMAND_CODE (0x143): the TPM does not implement this command")]
    public void Response_codes_read_as_sentences(uint rc, uint cc, string message) =>
        Assert.Equal(message, new TpmException(cc, rc).Message);

    private static Task<(byte[] Blob, byte[] EncryptedSecret)> MakeCredentialAsync(TpmEndorsementKey ek, TpmKeyBlob ak, byte[] secret) =>
        TpmTools.MakeCredentialAsync(ek.Public, ak.Public, secret, Ct);
}

internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("writ-tpm-test-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
