using System.Security.Cryptography;
using System.Text;
using Writ.Server.Keys;

namespace Writ.Server.Tests.Keys;

/// <summary>What every key manager must do; run against each implementation by the derived classes.</summary>
public abstract class KeyManagerConformanceTests : IDisposable
{
    protected KeyManagerConformanceTests()
    {
        Dir = Directory.CreateTempSubdirectory("writ-keys-").FullName;
    }

    protected string Dir { get; }

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    protected abstract IKeyManager Create();

    protected abstract string ExpectedName { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp directory left behind is not a test failure.
        }
        GC.SuppressFinalize(this);
    }

    protected static byte[] Spki(AsymmetricAlgorithm key) => key.ExportSubjectPublicKeyInfo();

    protected static bool Verifies(AsymmetricAlgorithm signer, AsymmetricAlgorithm verifier)
    {
        var data = Encoding.UTF8.GetBytes("writ key manager conformance");
        return (signer, verifier) switch
        {
            (ECDsa s, ECDsa v) => v.VerifyData(data, s.SignData(data, HashAlgorithmName.SHA256), HashAlgorithmName.SHA256),
            (RSA s, RSA v) => v.VerifyData(data, s.SignData(data, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            _ => false,
        };
    }

    [Fact]
    public void Has_its_configuration_name() => Assert.Equal(ExpectedName, Create().Name);

    [Theory]
    [InlineData(KeyType.EcP256, 256)]
    [InlineData(KeyType.EcP384, 384)]
    [InlineData(KeyType.Rsa2048, 2048)]
    public async Task Generated_key_is_returned_by_get_and_signs(KeyType type, int size)
    {
        var keys = Create();
        var generated = await keys.GenerateAsync("k1", type, Ct);
        Assert.Equal(size, generated.KeySize);
        Assert.Equal(type == KeyType.Rsa2048, generated is RSA);

        var got = await keys.GetAsync("k1", Ct);
        Assert.NotNull(got);
        Assert.Equal(Spki(generated), Spki(got));
        Assert.True(Verifies(got, generated));
        Assert.True(Verifies(generated, got));
    }

    [Fact]
    public async Task Unknown_id_is_null()
    {
        var keys = Create();
        Assert.Null(await keys.GetAsync("nope", Ct));
        await keys.GenerateAsync("k1", KeyType.EcP256, Ct);
        Assert.Null(await keys.GetAsync("nope", Ct));
        Assert.Null(await keys.GetAsync("K1", Ct));   // ids are case-sensitive
    }

    [Fact]
    public async Task Generate_again_replaces_the_key()
    {
        var keys = Create();
        var first = await keys.GenerateAsync("k1", KeyType.EcP256, Ct);
        var second = await keys.GenerateAsync("k1", KeyType.Rsa2048, Ct);
        var got = await keys.GetAsync("k1", Ct);
        Assert.NotNull(got);
        Assert.Equal(Spki(second), Spki(got));
        Assert.NotEqual(Spki(first), Spki(got));
    }

    [Fact]
    public async Task Delete_removes_only_that_key_and_unknown_ids_are_fine()
    {
        var keys = Create();
        await keys.GenerateAsync("k1", KeyType.EcP256, Ct);
        var k2 = await keys.GenerateAsync("k2", KeyType.EcP384, Ct);
        await keys.DeleteAsync("k1", Ct);
        await keys.DeleteAsync("k1", Ct);
        await keys.DeleteAsync("never-existed", Ct);
        Assert.Null(await keys.GetAsync("k1", Ct));
        Assert.Equal(Spki(k2), Spki((await keys.GetAsync("k2", Ct))!));
    }

    [Fact]
    public async Task Keys_are_distinct_per_id()
    {
        var keys = Create();
        var a = await keys.GenerateAsync("a", KeyType.EcP256, Ct);
        var b = await keys.GenerateAsync("b", KeyType.EcP256, Ct);
        Assert.NotEqual(Spki(a), Spki(b));
        Assert.False(Verifies((await keys.GetAsync("a", Ct))!, b));
    }

    [Fact]
    public async Task Empty_ids_are_a_bug()
    {
        var keys = Create();
        await Assert.ThrowsAnyAsync<ArgumentException>(() => keys.GenerateAsync("", KeyType.EcP256, Ct));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => keys.GetAsync("", Ct));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => keys.DeleteAsync("", Ct));
    }

    [Fact]
    public async Task Concurrent_generation_keeps_every_key()
    {
        var keys = Create();
        var generated = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(() => keys.GenerateAsync($"k{i}", KeyType.EcP256, Ct), Ct)));
        for (var i = 0; i < generated.Length; i++)
        {
            var got = await keys.GetAsync($"k{i}", Ct);
            Assert.NotNull(got);
            Assert.Equal(Spki(generated[i]), Spki(got));
        }
    }
}

public sealed class MemoryKeyManagerConformanceTests : KeyManagerConformanceTests
{
    protected override string ExpectedName => "memory";

    protected override IKeyManager Create() => new MemoryKeyManager();

    [Fact]
    public async Task A_new_instance_has_no_keys()
    {
        await Create().GenerateAsync("k1", KeyType.EcP256, Ct);
        Assert.Null(await Create().GetAsync("k1", Ct));
    }
}
