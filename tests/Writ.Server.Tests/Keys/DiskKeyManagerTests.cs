using System.Security.Cryptography;
using Writ.Server.Keys;

namespace Writ.Server.Tests.Keys;

/// <summary>The conformance suite on the disk key manager, plus what only files have: modes, atomic replace, corruption.</summary>
public sealed class DiskKeyManagerTests : KeyManagerConformanceTests
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private string KeyPath => Path.Combine(Dir, "keys.json");

    protected override string ExpectedName => "disk";

    protected override IKeyManager Create() => new DiskKeyManager(KeyPath);

    private static void OneLine(Exception e)
    {
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }

    [Fact]
    public async Task Key_file_is_private_to_its_owner()
    {
        await Create().GenerateAsync("k1", KeyType.EcP256, Ct);
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(KeyPath));
    }

    [Fact]
    public async Task Keys_survive_a_new_instance()
    {
        var generated = await Create().GenerateAsync("k1", KeyType.EcP384, Ct);
        var rsa = await Create().GenerateAsync("k2", KeyType.Rsa2048, Ct);
        var fresh = Create();
        Assert.Equal(Spki(generated), Spki((await fresh.GetAsync("k1", Ct))!));
        Assert.Equal(Spki(rsa), Spki((await fresh.GetAsync("k2", Ct))!));
        await fresh.DeleteAsync("k1", Ct);
        Assert.Null(await Create().GetAsync("k1", Ct));
        Assert.NotNull(await Create().GetAsync("k2", Ct));
    }

    [Fact]
    public async Task Two_instances_on_one_file_never_drop_each_others_keys()
    {
        var a = Create();
        var b = Create();
        await a.GenerateAsync("k1", KeyType.EcP256, Ct);
        var k2 = await b.GenerateAsync("k2", KeyType.EcP256, Ct);   // b read the file after a wrote k1
        var k3 = await a.GenerateAsync("k3", KeyType.EcP256, Ct);   // a's cache predates k2

        Assert.Equal(Spki(k2), Spki((await a.GetAsync("k2", Ct))!));
        await b.DeleteAsync("k1", Ct);
        Assert.Null(await Create().GetAsync("k1", Ct));
        var fresh = Create();
        Assert.Equal(Spki(k2), Spki((await fresh.GetAsync("k2", Ct))!));
        Assert.Equal(Spki(k3), Spki((await fresh.GetAsync("k3", Ct))!));
    }

    [Fact]
    public async Task Replace_is_atomic_and_leaves_no_temp_file()
    {
        var keys = Create();
        await keys.GenerateAsync("k1", KeyType.EcP256, Ct);
        var before = await File.ReadAllBytesAsync(KeyPath, Ct);
        // A reader that opened the file before the replace keeps seeing the whole old file: the new one was renamed over
        // it, not written into it (an in-place rewrite would show it truncated or half new).
        await using var reader = new FileStream(KeyPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);

        await keys.GenerateAsync("k1", KeyType.EcP256, Ct);
        await keys.GenerateAsync("k2", KeyType.EcP256, Ct);
        await keys.DeleteAsync("k2", Ct);

        using var old = new MemoryStream();
        await reader.CopyToAsync(old, Ct);
        Assert.Equal(before, old.ToArray());
        Assert.NotEqual(before, await File.ReadAllBytesAsync(KeyPath, Ct));
        Assert.Equal([KeyPath], Directory.GetFiles(Dir));
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(KeyPath));
        Assert.NotNull(await Create().GetAsync("k1", Ct));
    }

    [Fact]
    public async Task A_stale_world_readable_temp_file_does_not_make_the_key_file_readable()
    {
        // A crash left keys.json.tmp behind, created by someone with a lax mode.
        var tmp = KeyPath + ".tmp";
        await File.WriteAllTextAsync(tmp, "{}", Ct);
        File.SetUnixFileMode(tmp, OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        await Create().GenerateAsync("k1", KeyType.EcP256, Ct);

        Assert.Equal(OwnerOnly, File.GetUnixFileMode(KeyPath));
        Assert.False(File.Exists(tmp));
    }

    [Fact]
    public async Task A_failed_write_changes_neither_the_file_nor_what_the_instance_believes()
    {
        var keys = Create();
        var k1 = await keys.GenerateAsync("k1", KeyType.EcP256, Ct);
        var before = await File.ReadAllBytesAsync(KeyPath, Ct);
        Directory.CreateDirectory(KeyPath + ".tmp");   // the temp file cannot be created, even by root

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => keys.GenerateAsync("k2", KeyType.EcP256, Ct));
        OneLine(e);
        Assert.Contains(KeyPath, e.Message, StringComparison.Ordinal);
        Assert.Null(await keys.GetAsync("k2", Ct));
        Assert.Equal(before, await File.ReadAllBytesAsync(KeyPath, Ct));
        await Assert.ThrowsAsync<InvalidOperationException>(() => keys.DeleteAsync("k1", Ct));
        Assert.Equal(Spki(k1), Spki((await keys.GetAsync("k1", Ct))!));

        Directory.Delete(KeyPath + ".tmp");
        await keys.GenerateAsync("k2", KeyType.EcP256, Ct);
        Assert.NotNull(await Create().GetAsync("k2", Ct));
        Assert.NotNull(await Create().GetAsync("k1", Ct));
    }

    public static TheoryData<string> CorruptFiles =>
    [
        "",
        "not json at all",
        "{\"k1\": \"MIGHAgEAMBMGByqGSM49",
        "null",
        "[1, 2, 3]",
        "{\"k1\": 42}",
        "{\"k1\": \"%%% not base64 %%%\"}",
        "{\"k1\": \"AAAA\"}",
        "{\"k1\": null}",
    ];

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public async Task A_corrupt_key_file_is_refused_in_one_line_and_left_unchanged(string content)
    {
        await File.WriteAllTextAsync(KeyPath, content, Ct);
        File.SetUnixFileMode(KeyPath, OwnerOnly);
        var before = await File.ReadAllBytesAsync(KeyPath, Ct);
        var keys = Create();

        var get = await Assert.ThrowsAsync<InvalidOperationException>(() => keys.GetAsync("k1", Ct));
        var gen = await Assert.ThrowsAsync<InvalidOperationException>(() => keys.GenerateAsync("k2", KeyType.EcP256, Ct));
        var del = await Assert.ThrowsAsync<InvalidOperationException>(() => keys.DeleteAsync("k1", Ct));

        foreach (var e in new[] { get, gen, del })
        {
            OneLine(e);
            Assert.Contains(KeyPath, e.Message, StringComparison.Ordinal);
            Assert.Contains("corrupt", e.Message, StringComparison.Ordinal);
        }
        Assert.Equal(before, await File.ReadAllBytesAsync(KeyPath, Ct));
        Assert.Equal([KeyPath], Directory.GetFiles(Dir));
    }

    [Fact]
    public async Task One_damaged_key_among_good_ones_is_refused_without_leaking_key_material()
    {
        await Create().GenerateAsync("good", KeyType.EcP256, Ct);
        var json = await File.ReadAllTextAsync(KeyPath, Ct);
        var good = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(json)!["good"];
        var damaged = Convert.ToBase64String(Convert.FromBase64String(good)[..^8]);   // truncated PKCS#8
        await File.WriteAllTextAsync(KeyPath, System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["good"] = good, ["bad"] = damaged }), Ct);
        var before = await File.ReadAllBytesAsync(KeyPath, Ct);

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Create().GetAsync("good", Ct));

        OneLine(e);
        Assert.DoesNotContain(good[..16], e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(damaged[..16], e.Message, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllBytesAsync(KeyPath, Ct));
    }

    [Theory]
    [InlineData(UnixFileMode.GroupRead)]
    [InlineData(UnixFileMode.OtherRead)]
    [InlineData(UnixFileMode.OtherWrite)]
    public async Task A_key_file_others_can_access_is_refused_and_left_unchanged(UnixFileMode extra)
    {
        await Create().GenerateAsync("k1", KeyType.EcP256, Ct);
        File.SetUnixFileMode(KeyPath, OwnerOnly | extra);
        var before = await File.ReadAllBytesAsync(KeyPath, Ct);

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Create().GetAsync("k1", Ct));

        OneLine(e);
        Assert.Contains(KeyPath, e.Message, StringComparison.Ordinal);
        Assert.Contains("chmod 600", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllBytesAsync(KeyPath, Ct));
        Assert.Equal(OwnerOnly | extra, File.GetUnixFileMode(KeyPath));
    }

    [Fact]
    public async Task The_file_holds_pkcs8_keys_that_other_tools_can_read()
    {
        var generated = await Create().GenerateAsync("k1", KeyType.EcP256, Ct);
        var json = await File.ReadAllTextAsync(KeyPath, Ct);
        var b64 = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(json)!["k1"];
        using var ec = ECDsa.Create();
        ec.ImportPkcs8PrivateKey(Convert.FromBase64String(b64), out _);
        Assert.Equal(Spki(generated), ec.ExportSubjectPublicKeyInfo());
    }
}
