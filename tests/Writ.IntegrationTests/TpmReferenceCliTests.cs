using System.Text.Json;
using Writ.IntegrationTests.Harness;
using Writ.Tpm.EventLog;

namespace Writ.IntegrationTests;

/// <summary>`writ tpm reference create|list|delete` through the real CLI against a real server process (issue #14).</summary>
public sealed class TpmReferenceCliTests(SharedServer fixture) : IClassFixture<SharedServer>
{
    private ServerProcess Server => fixture.Server;

    private static readonly string Pcr7 = new('7', 64);
    private static readonly string Pcr7Other = new('e', 64);
    private static readonly string Pcr4 = "AB" + new string('4', 62);

    private async Task<List<JsonElement>> LedgerAsync(string name)
    {
        var r = await Server.WritAsync("audit", "list", "--subject", "tpm_reference:" + name, "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return [.. doc.RootElement.GetProperty("events").EnumerateArray().Select(e => e.Clone())];
    }

    private async Task<List<string>> NamesAsync()
    {
        var r = await Server.WritAsync("tpm", "reference", "list", "--output", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return [.. doc.RootElement.GetProperty("sets").EnumerateArray().Select(s => s.GetProperty("name").GetString()!)];
    }

    [Fact]
    public async Task Reference_sets_are_created_listed_and_deleted_with_ledger_records()
    {
        var created = await Server.WritAsync("tpm", "reference", "create", "--name", "prod-2026q4",
            "--pcr", $"sha256:7:{Pcr7}", "--pcr", $"sha256:7:{Pcr7Other}", "--pcr", $"sha256:4:{Pcr4}", "--output", "json");
        Assert.True(created.ExitCode == 0, created.ToString());
        using (var doc = JsonDocument.Parse(created.Stdout))
        {
            Assert.Equal("prod-2026q4", doc.RootElement.GetProperty("name").GetString());
            var pcrs = doc.RootElement.GetProperty("pcrs").EnumerateArray()
                .Select(p => $"{p.GetProperty("bank").GetString()}:{p.GetProperty("index").GetInt32()}:{p.GetProperty("digest").GetString()}").ToList();
            Assert.Equal([$"sha256:4:{Pcr4.ToLowerInvariant()}", $"sha256:7:{Pcr7}", $"sha256:7:{Pcr7Other}"], pcrs);
        }

        var table = await Server.WritAsync("tpm", "reference", "list");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("prod-2026q4  sha256:7", table.Stdout, StringComparison.Ordinal);
        Assert.Contains(Pcr7Other, table.Stdout, StringComparison.Ordinal);
        Assert.Contains("prod-2026q4", await NamesAsync());

        var dup = await Server.WritAsync("tpm", "reference", "create", "--name", "prod-2026q4", "--pcr", $"sha256:0:{Pcr7}");
        Expect.OneLineError(dup, "WRIT-STORE-CONFLICT");
        Assert.Contains("already exists", dup.Stderr, StringComparison.Ordinal);

        var deleted = await Server.WritAsync("tpm", "reference", "delete", "--name", "prod-2026q4");
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.DoesNotContain("prod-2026q4", await NamesAsync());
        var again = await Server.WritAsync("tpm", "reference", "delete", "--name", "prod-2026q4");
        Expect.OneLineError(again, "WRIT-STORE-NOT-FOUND");

        var ledger = await LedgerAsync("prod-2026q4");
        Assert.Equal(["tpm_reference.created", "tpm_reference.deleted"], ledger.Select(e => e.GetProperty("kind").GetString()));
        Assert.All(ledger, e => Assert.StartsWith("uid:", e.GetProperty("actor").GetString(), StringComparison.Ordinal));
        Assert.Equal(3, ledger[0].GetProperty("data").GetProperty("pcrs").GetArrayLength());
    }

    public static TheoryData<string, string[], string, int> BadSets => new()
    {
        { "Upper", ["--name", "Upper", "--pcr", $"sha256:7:{Pcr7}"], "WRIT-TPM-REFERENCE-NAME", 1 },
        { "x", ["--name", "_x", "--pcr", $"sha256:7:{Pcr7}"], "WRIT-TPM-REFERENCE-NAME", 1 },
        { "long", ["--name", new string('a', 65), "--pcr", $"sha256:7:{Pcr7}"], "WRIT-TPM-REFERENCE-NAME", 1 },
        { "bank", ["--name", "bad-bank", "--pcr", $"md5:7:{new string('0', 32)}"], "WRIT-TPM-REFERENCE-PCR", 1 },
        { "index", ["--name", "bad-index", "--pcr", $"sha256:24:{Pcr7}"], "WRIT-TPM-REFERENCE-PCR", 1 },
        { "length", ["--name", "bad-length", "--pcr", $"sha256:7:{new string('0', 40)}"], "WRIT-TPM-REFERENCE-PCR", 1 },
        { "hex", ["--name", "bad-hex", "--pcr", $"sha256:7:{new string('z', 64)}"], "WRIT-TPM-REFERENCE-PCR", 1 },
        { "one-bad-of-two", ["--name", "one-bad-of-two", "--pcr", $"sha256:7:{Pcr7}", "--pcr", "sha1:0:00"], "WRIT-TPM-REFERENCE-PCR", 1 },
        { "shape", ["--name", "bad-shape", "--pcr", $"sha256-7-{Pcr7}"], "WRIT-CLI-USAGE", 2 },
        { "no-pcr", ["--name", "no-pcr"], "WRIT-CLI-MISSING-OPTION", 2 },
    };

    [Theory]
    [MemberData(nameof(BadSets))]
    public async Task Invalid_reference_sets_get_a_one_line_error_with_a_stable_code_and_write_nothing(string why, string[] args, string code, int exit)
    {
        var r = await Server.WritAsync(["tpm", "reference", "create", .. args]);
        Expect.OneLineError(r, code);
        Assert.True(r.ExitCode == exit, $"{why}: {r}");
        var name = args[1];
        Assert.DoesNotContain(name, await NamesAsync());
        Assert.Empty(await LedgerAsync(name));

        var json = await Server.WritAsync(["tpm", "reference", "create", .. args, "--output", "json"]);
        Expect.OneJsonError(json, code, "");
    }

    [Fact]
    public async Task Eventlog_show_replays_a_log_to_its_pcrs_and_reads_secure_boot()
    {
        using var dir = new TempDir();
        var w = new TcgEventLogWriter().AddStartupLocality(3).Add(0, TcgEventType.SCrtmVersion, "1.0"u8).AddSecureBoot(true).AddSeparator(7)
            .Add(4, TcgEventType.EfiAction, "Calling EFI Application from Boot Option"u8);
        var file = dir["log.bin"];
        await File.WriteAllBytesAsync(file, w.ToArray());
        var replay = TcgEventLog.Parse(w.ToArray()).Replay("sha256");

        var table = await Proc.WritAsync("tpm", "eventlog", "show", file);
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("Secure Boot: on", table.Stdout, StringComparison.Ordinal);
        Assert.Contains($"sha256:7  {Convert.ToHexStringLower(replay[7])}", table.Stdout, StringComparison.Ordinal);

        var json = await Proc.WritAsync("tpm", "eventlog", "show", file, "--output", "json");
        Assert.True(json.ExitCode == 0, json.ToString());
        using var doc = JsonDocument.Parse(json.Stdout);
        Assert.Equal("crypto-agile", doc.RootElement.GetProperty("format").GetString());
        Assert.Equal("on", doc.RootElement.GetProperty("secure_boot").GetString());
        var pcrs = doc.RootElement.GetProperty("pcrs");
        Assert.Equal(["0", "4", "7"], pcrs.EnumerateObject().Select(p => p.Name));
        foreach (var (pcr, value) in replay)
            Assert.Equal(Convert.ToHexStringLower(value), pcrs.GetProperty(pcr.ToString(System.Globalization.CultureInfo.InvariantCulture)).GetString());
    }

    [Fact]
    public async Task Eventlog_show_refuses_a_bad_log_a_missing_bank_and_a_missing_file_with_one_line()
    {
        using var dir = new TempDir();
        var good = dir["good.bin"];
        var bytes = new TcgEventLogWriter().AddSeparator(7).ToArray();
        await File.WriteAllBytesAsync(good, bytes);
        var truncated = dir["truncated.bin"];
        await File.WriteAllBytesAsync(truncated, bytes[..^3]);

        Expect.OneLineError(await Proc.WritAsync("tpm", "eventlog", "show", truncated), "WRIT-CLI-EVENTLOG-INVALID");
        Expect.OneLineError(await Proc.WritAsync("tpm", "eventlog", "show", good, "--bank", "sha384"), "has no sha384 bank");
        Expect.OneLineError(await Proc.WritAsync("tpm", "eventlog", "show", dir["missing.bin"]), "WRIT-CLI-FILE");
        var usage = await Proc.WritAsync("tpm", "eventlog", "show", good, "--bank", "md5");
        Expect.OneLineError(usage, "WRIT-CLI-USAGE");
        Assert.Equal(2, usage.ExitCode);
        Expect.OneJsonError(await Proc.WritAsync("tpm", "eventlog", "show", truncated, "--output", "json"), "WRIT-CLI-EVENTLOG-INVALID", "truncated");
    }
}
