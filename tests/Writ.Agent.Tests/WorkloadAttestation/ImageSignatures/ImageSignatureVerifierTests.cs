using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation.ImageSignatures;
using Writ.Tests.Shared;

namespace Writ.Agent.Tests.WorkloadAttestation.ImageSignatures;

/// <summary>
/// The image signature verifier against an OCI registry on loopback HTTPS (real manifests and blobs, the anonymous
/// token dance) and an air-gapped directory, with cosign simple-signing payloads signed by <c>openssl</c>. Each attack
/// test gives the attacker a signature that is valid for something and checks it does not name a signer.
/// </summary>
public sealed class ImageSignatureVerifierTests : IAsyncLifetime
{
    private const string Repo = "team/app";
    private static readonly string Digest = "sha256:" + new string('a', 64);
    private static readonly string OtherDigest = "sha256:" + new string('b', 64);

    private readonly TempDir _dir = new();
    private readonly EventLog _log = new();
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-12-07T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private OciTestRegistry _registry = null!;
    private string _keys = null!;
    private CosignTestKey _release = null!;

    public async ValueTask InitializeAsync()
    {
        _registry = await OciTestRegistry.StartAsync(_dir.Combine("registry"));
        _keys = Directory.CreateDirectory(_dir.Combine("keys")).FullName;
        _release = await CosignTestKey.CreateAsync(_dir.Path, "release", ed25519: false, _keys);
    }

    public async ValueTask DisposeAsync()
    {
        await _registry.DisposeAsync();
        _dir.Dispose();
    }

    private string Image => $"{_registry.Host}/{Repo}:1.2";

    private string DockerReference => $"{_registry.Host}/{Repo}";

    private ImageSignatureVerifier Verifier(TimeSpan? ttl = null, string? signaturesDir = null, string? ca = "") => new(
        new ImageSignatureOptions
        {
            KeysDir = _keys,
            SignaturesDir = signaturesDir,
            RegistryCaPath = ca == "" ? _registry.Server.CaPemPath : ca,
            CacheTtl = ttl ?? TimeSpan.FromMinutes(10),
        },
        _log,
        _time);

    private async Task<(byte[] Payload, string Signature, string? LayerDigest)> SignedAsync(CosignTestKey key, string? dockerReference = null, string? digest = null, string? type = null)
    {
        var payload = type is null
            ? OciTestRegistry.Payload(dockerReference ?? DockerReference, digest ?? Digest)
            : OciTestRegistry.Payload(dockerReference ?? DockerReference, digest ?? Digest, type);
        return (payload, await key.SignAsync(payload), null);
    }

    [Fact]
    public async Task Ecdsa_signature_in_the_registry_names_the_key_after_the_token_dance()
    {
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Equal(["release"], result.Signers);
        Assert.Contains($"repository:{Repo}:pull", _registry.TokenScopes);
        Assert.Contains(_registry.Server.Log, p => p.StartsWith($"/v2/{Repo}/manifests/sha256-{new string('a', 64)}.sig", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Ed25519_signature_names_the_key()
    {
        var ed = await CosignTestKey.CreateAsync(_dir.Path, "ed-team", ed25519: true, _keys);
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(ed));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Equal(["ed-team"], result.Signers);
    }

    [Fact]
    public async Task Every_registered_signer_is_named_sorted_and_an_unregistered_key_is_not()
    {
        var ed = await CosignTestKey.CreateAsync(_dir.Path, "audit", ed25519: true, _keys);
        var stranger = await CosignTestKey.CreateAsync(_dir.Path, "stranger", ed25519: false, keysDir: null);
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release), await SignedAsync(stranger), await SignedAsync(ed), await SignedAsync(_release));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Equal(["audit", "release"], result.Signers);
    }

    [Fact]
    public async Task Attack_a_valid_signature_over_another_digest_does_not_count()
    {
        // The attacker copies a registered key's real signature of another image into this image's signature tag.
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release, digest: OtherDigest));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Empty(result.Signers);
        Assert.Contains(_log.Events, e => e.Id == 2784 && e.Message.Contains("another image digest", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Attack_a_payload_whose_bytes_differ_from_the_layer_digest_does_not_count()
    {
        var signed = await SignedAsync(_release);
        _registry.PublishSignatures(Repo, Digest, (signed.Payload, signed.Signature, OciTestRegistry.Sha256(Encoding.UTF8.GetBytes("other content"))));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.Contains(_log.Events, e => e.Id == 2784 && e.Message.Contains("layer digest", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Attack_a_signature_by_an_unregistered_key_names_no_signer()
    {
        var stranger = await CosignTestKey.CreateAsync(_dir.Path, "stranger", ed25519: true, keysDir: null);
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(stranger));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Empty(result.Signers);
    }

    [Fact]
    public async Task Attack_a_tampered_payload_does_not_verify()
    {
        var (payload, signature, _) = await SignedAsync(_release);
        // Same digest and reference, one byte more (a member added after signing): the signature no longer matches.
        var tampered = JsonNode.Parse(payload)!.AsObject();
        tampered["optional"] = new JsonObject { ["approved"] = "yes" };
        _registry.PublishSignatures(Repo, Digest, (Encoding.UTF8.GetBytes(tampered.ToJsonString()), signature, null));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Empty(result.Signers);
    }

    /// <summary>
    /// Attack: the registered key's own signature re-encoded as IEEE P1363 (r || s, what JWS and some signers emit)
    /// instead of cosign's ASN.1 DER. Only the DER form counts, as in cosign: one encoding, no guessing between two.
    /// </summary>
    [Fact]
    public async Task Attack_a_p1363_encoding_of_a_valid_ecdsa_signature_does_not_count()
    {
        var (payload, der, _) = await SignedAsync(_release);
        var sequence = new System.Formats.Asn1.AsnReader(Convert.FromBase64String(der), System.Formats.Asn1.AsnEncodingRules.DER).ReadSequence();
        static byte[] Fixed(ReadOnlySpan<byte> integer)
        {
            var trimmed = integer.TrimStart((byte)0);
            var result = new byte[32];
            trimmed.CopyTo(result.AsSpan(32 - trimmed.Length));
            return result;
        }
        var p1363 = Convert.ToBase64String([.. Fixed(sequence.ReadIntegerBytes().Span), .. Fixed(sequence.ReadIntegerBytes().Span)]);
        using (var key = System.Security.Cryptography.ECDsa.Create())
        {
            // The re-encoding is a valid signature of the key in that format: only the format decides.
            key.ImportFromPem(File.ReadAllText(_release.PublicPem));
            Assert.True(key.VerifyData(payload, Convert.FromBase64String(p1363), System.Security.Cryptography.HashAlgorithmName.SHA256,
                System.Security.Cryptography.DSASignatureFormat.IeeeP1363FixedFieldConcatenation));
        }
        _registry.PublishSignatures(Repo, Digest, (payload, p1363, null));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Empty(result.Signers);
    }

    [Fact]
    public async Task Attack_a_signed_payload_of_another_type_does_not_count()
    {
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release, type: "https://in-toto.io/Statement/v1"));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.Contains(_log.Events, e => e.Id == 2784 && e.Message.Contains("type", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Attack_a_signature_naming_another_repository_does_not_count()
    {
        // Signed for the same digest pushed to another repository (where other rules may apply).
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release, dockerReference: $"{_registry.Host}/other/app"));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.Contains(_log.Events, e => e.Id == 2784 && e.Message.Contains("another repository", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Attack_a_payload_with_a_duplicated_digest_member_does_not_count()
    {
        // Readers that keep the first or the last duplicate would disagree on what was signed.
        var payload = Encoding.UTF8.GetBytes(
            $"{{\"critical\":{{\"identity\":{{\"docker-reference\":\"{DockerReference}\"}},\"image\":{{\"docker-manifest-digest\":\"{OtherDigest}\",\"docker-manifest-digest\":\"{Digest}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}");
        _registry.PublishSignatures(Repo, Digest, (payload, await _release.SignAsync(payload), null));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Attack_a_huge_signature_manifest_is_an_error_not_a_crash(bool withLength)
    {
        _registry.ManifestOverride = async ctx =>
        {
            ctx.Response.ContentType = "application/vnd.oci.image.manifest.v1+json";
            var chunk = new byte[64 * 1024];
            Array.Fill(chunk, (byte)' ');
            if (withLength)
                ctx.Response.ContentLength = 64L * chunk.Length;
            for (var i = 0; i < 64; i++)
                await ctx.Response.Body.WriteAsync(chunk);
        };
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-REGISTRY:", result.Error, StringComparison.Ordinal);
        Assert.Contains("larger than", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unsigned_image_has_no_signers_and_no_error()
    {
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.True(result.Error is null, result.Error);
        Assert.Empty(result.Signers);
        Assert.Equal(2, _registry.ManifestRequests); // the 401 and the retry with the token; the 404 is the answer
    }

    [Fact]
    public async Task A_registry_that_is_down_is_an_error_retried_after_the_retry_time_then_succeeds()
    {
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        _registry.Down = true;
        using var verifier = Verifier();
        var ct = TestContext.Current.CancellationToken;

        var down = await verifier.SignersAsync(Image, Digest, ct);
        Assert.Empty(down.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-UNREACHABLE:", down.Error, StringComparison.Ordinal);
        Assert.Contains(_log.Events, e => e.Id == 2783 && e.Level == LogLevel.Warning);

        _registry.Down = false;
        var requests = _registry.Server.Requests;
        _time.Advance(ImageSignatureVerifier.RetryAfter - TimeSpan.FromSeconds(1));
        var stillCached = await verifier.SignersAsync(Image, Digest, ct);
        Assert.Equal(down, stillCached);
        Assert.Equal(requests, _registry.Server.Requests);

        _time.Advance(TimeSpan.FromSeconds(2));
        var back = await verifier.SignersAsync(Image, Digest, ct);
        Assert.Null(back.Error);
        Assert.Equal(["release"], back.Signers);
    }

    [Fact]
    public async Task A_positive_result_survives_an_outage_until_the_ttl_and_not_after()
    {
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        using var verifier = Verifier(ttl: TimeSpan.FromMinutes(5));
        var ct = TestContext.Current.CancellationToken;
        Assert.Equal(["release"], (await verifier.SignersAsync(Image, Digest, ct)).Signers);

        _registry.Down = true;
        _time.Advance(TimeSpan.FromMinutes(4));
        var cached = await verifier.SignersAsync(Image, Digest, ct);
        Assert.Null(cached.Error);
        Assert.Equal(["release"], cached.Signers);

        _time.Advance(TimeSpan.FromMinutes(2));
        var expired = await verifier.SignersAsync(Image, Digest, ct);
        Assert.Empty(expired.Signers);
        Assert.NotNull(expired.Error);
    }

    [Fact]
    public async Task An_unsigned_result_is_reused_for_the_ttl_then_a_new_signature_is_seen()
    {
        using var verifier = Verifier(ttl: TimeSpan.FromMinutes(5));
        var ct = TestContext.Current.CancellationToken;
        Assert.Empty((await verifier.SignersAsync(Image, Digest, ct)).Signers);

        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        _time.Advance(TimeSpan.FromMinutes(4));
        Assert.Empty((await verifier.SignersAsync(Image, Digest, ct)).Signers);

        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(["release"], (await verifier.SignersAsync(Image, Digest, ct)).Signers);
    }

    [Fact]
    public async Task Concurrent_lookups_of_one_image_share_one_fetch()
    {
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var inner = _registry.Server.Handler;
        _registry.Server.Handler = async ctx =>
        {
            await gate.Task;
            await inner(ctx);
        };
        using var verifier = Verifier();
        var ct = TestContext.Current.CancellationToken;

        var lookups = Enumerable.Range(0, 8).Select(_ => verifier.SignersAsync(Image, Digest, ct).AsTask()).ToArray();
        gate.SetResult();
        var results = await Task.WhenAll(lookups);

        Assert.All(results, r => Assert.Equal(["release"], r.Signers));
        Assert.Equal(2, _registry.ManifestRequests);
    }

    [Fact]
    public async Task A_registry_that_wants_credentials_is_an_auth_error()
    {
        _registry.BasicOnly = true;
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-AUTH:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_registry_that_refuses_its_anonymous_token_is_an_auth_error()
    {
        _registry.RefuseTokens = true;
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-AUTH:", result.Error, StringComparison.Ordinal);
        Assert.Equal(2, _registry.ManifestRequests); // one token, one retry: no loop
    }

    [Fact]
    public async Task A_signature_tag_that_is_an_index_is_a_registry_error()
    {
        _registry.ManifestOverride = async ctx =>
        {
            ctx.Response.ContentType = "application/vnd.oci.image.index.v1+json";
            await ctx.Response.WriteAsync(new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = "application/vnd.oci.image.index.v1+json", ["manifests"] = new JsonArray() }.ToJsonString());
        };
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-REGISTRY:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_redirected_blob_is_fetched_without_the_registry_token()
    {
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        _registry.RedirectBlobs = true;
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Equal(["release"], result.Signers);
        Assert.Equal([""], _registry.CdnAuthorizations);
    }

    [Fact]
    public async Task A_redirected_manifest_is_not_followed()
    {
        _registry.ManifestOverride = ctx =>
        {
            ctx.Response.StatusCode = 302;
            ctx.Response.Headers.Location = "https://127.0.0.1:1/elsewhere";
            return Task.CompletedTask;
        };
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-REGISTRY:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_registry_certificate_that_does_not_chain_to_the_registry_ca_is_refused()
    {
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        var (otherCa, _) = LoopbackHttps.IssueCertificates("other");
        var otherCaPem = _dir.Combine("other-ca.pem");
        await File.WriteAllTextAsync(otherCaPem, otherCa.ExportCertificatePem(), TestContext.Current.CancellationToken);
        using var verifier = Verifier(ca: otherCaPem);

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-UNREACHABLE:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Air_gapped_directory_in_cosign_download_format_is_used_without_the_registry()
    {
        var sigs = Directory.CreateDirectory(_dir.Combine("signatures")).FullName;
        var good = await SignedAsync(_release);
        var otherDigest = await SignedAsync(_release, digest: OtherDigest);
        static string Line((byte[] Payload, string Signature, string?) s) => new JsonObject
        {
            ["Base64Signature"] = s.Signature,
            ["Payload"] = Convert.ToBase64String(s.Payload),
            ["Cert"] = null,
            ["Chain"] = null,
            ["Bundle"] = null,
            ["RFC3161Timestamp"] = null,
        }.ToJsonString();
        await File.WriteAllTextAsync(Path.Combine(sigs, $"sha256-{new string('a', 64)}.sig"), Line(otherDigest) + "\nnot json\n" + Line(good) + "\n", TestContext.Current.CancellationToken);
        _registry.Down = true;
        var requests = _registry.Server.Requests;
        using var verifier = Verifier(signaturesDir: sigs);

        var signed = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);
        var unsigned = await verifier.SignersAsync(Image, OtherDigest, TestContext.Current.CancellationToken);
        var thirdDigest = "sha256:" + new string('c', 64);
        await File.WriteAllTextAsync(Path.Combine(sigs, $"sha256-{new string('c', 64)}.json"), Line(await SignedAsync(_release, digest: thirdDigest)), TestContext.Current.CancellationToken);
        var fromJson = await verifier.SignersAsync(Image, thirdDigest, TestContext.Current.CancellationToken);
        Assert.Equal(["release"], fromJson.Signers);

        Assert.Null(signed.Error);
        Assert.Equal(["release"], signed.Signers);
        Assert.Equal(ImageSignatureResult.None.Signers, unsigned.Signers);
        Assert.Null(unsigned.Error);
        Assert.Equal(requests, _registry.Server.Requests);
        Assert.Equal(2, _log.Events.Count(e => e.Id == 2784)); // the other digest and the line that is not JSON
    }

    [Fact]
    public async Task Bad_key_files_are_skipped_and_logged_and_the_good_ones_are_used()
    {
        await File.WriteAllTextAsync(Path.Combine(_keys, "garbage.pub"), "not a key", TestContext.Current.CancellationToken);
        await CosignTestKey.OpensslAsync(_dir.Path, "ecparam", "-genkey", "-name", "secp384r1", "-noout", "-out", "p384.pem");
        await CosignTestKey.OpensslAsync(_dir.Path, "pkey", "-in", "p384.pem", "-pubout", "-out", Path.Combine(_keys, "p384.pub"));
        await CosignTestKey.OpensslAsync(_dir.Path, "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem");
        await CosignTestKey.OpensslAsync(_dir.Path, "pkey", "-in", "rsa.pem", "-pubout", "-out", Path.Combine(_keys, "rsa.pub"));
        File.Copy(_release.PublicPem, Path.Combine(_keys, "bad name.pub"));
        File.Copy(_release.PublicPem, Path.Combine(_keys, "not-a-key-extension.pem"));
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        using var verifier = Verifier();

        Assert.Equal(["release"], verifier.KeyNames);
        var skipped = _log.Events.Where(e => e.Id == 2780).Select(e => e.Message).ToList();
        Assert.Equal(4, skipped.Count);
        Assert.Contains(skipped, m => m.Contains("garbage.pub", StringComparison.Ordinal) && m.Contains("PEM", StringComparison.Ordinal));
        Assert.Contains(skipped, m => m.Contains("p384.pub", StringComparison.Ordinal) && m.Contains("P-256", StringComparison.Ordinal));
        Assert.Contains(skipped, m => m.Contains("rsa.pub", StringComparison.Ordinal) && m.Contains("1.2.840.113549.1.1.1", StringComparison.Ordinal));
        Assert.Contains(skipped, m => m.Contains("bad name.pub", StringComparison.Ordinal));
        Assert.Equal(["release"], (await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken)).Signers);
    }

    [Fact]
    public async Task Keys_mounted_from_a_configmap_as_symlinks_are_loaded()
    {
        // A ConfigMap or Secret volume: <dir>/release.pub -> ..data/release.pub -> ..2026_12_07_…/release.pub.
        var mount = Directory.CreateDirectory(_dir.Combine("configmap")).FullName;
        var version = Directory.CreateDirectory(Path.Combine(mount, "..2026_12_07_12_00_00.123")).FullName;
        File.Copy(_release.PublicPem, Path.Combine(version, "release.pub"));
        File.CreateSymbolicLink(Path.Combine(mount, "..data"), Path.GetFileName(version));
        File.CreateSymbolicLink(Path.Combine(mount, "release.pub"), Path.Combine("..data", "release.pub"));
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        using var verifier = new ImageSignatureVerifier(
            new ImageSignatureOptions { KeysDir = mount, RegistryCaPath = _registry.Server.CaPemPath }, _log, _time);

        Assert.Equal(["release"], verifier.KeyNames);
        Assert.Equal(["release"], (await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken)).Signers);
    }

    [Fact]
    public async Task No_usable_key_means_no_lookup_and_no_signers()
    {
        File.Delete(Path.Combine(_keys, "release.pub"));
        _registry.PublishSignatures(Repo, Digest, await SignedAsync(_release));
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, Digest, TestContext.Current.CancellationToken);

        Assert.Equal(ImageSignatureResult.None, result);
        Assert.Equal(0, _registry.Server.Requests);
        Assert.Contains(_log.Events, e => e.Id == 2782);
    }

    [Theory]
    [InlineData("sha256:abc")]
    [InlineData("sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    [InlineData("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/../x")]
    public async Task A_digest_that_is_not_sha256_hex_is_a_reference_error_without_a_request(string digest)
    {
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(Image, digest, TestContext.Current.CancellationToken);

        Assert.Empty(result.Signers);
        Assert.StartsWith("WRIT-IMAGESIG-REFERENCE:", result.Error, StringComparison.Ordinal);
        Assert.Equal(0, _registry.Server.Requests);
    }

    [Theory]
    [InlineData("127.0.0.1:5000/team/../admin")]
    [InlineData("127.0.0.1:5000/Team/App")]
    [InlineData("127.0.0.1:5000/team/app?x=1")]
    [InlineData("")]
    public async Task An_image_reference_that_cannot_name_a_repository_is_a_reference_error(string image)
    {
        using var verifier = Verifier();

        var result = await verifier.SignersAsync(image, Digest, TestContext.Current.CancellationToken);

        Assert.StartsWith("WRIT-IMAGESIG-REFERENCE:", result.Error, StringComparison.Ordinal);
        Assert.Equal(0, _registry.Server.Requests);
    }

    /// <summary>Log events with their ids.</summary>
    private sealed class EventLog : ILogger
    {
        private readonly List<(int Id, LogLevel Level, string Message)> _events = [];

        public IReadOnlyList<(int Id, LogLevel Level, string Message)> Events
        {
            get
            {
                lock (_events)
                    return [.. _events];
            }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_events)
                _events.Add((eventId.Id, logLevel, formatter(state, exception)));
        }
    }
}
