using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Writ.Tests.Shared;
using Writ.Tpm.EventLog;
using Writ.Tpm.Marshalling;
using Xunit;

namespace Writ.Tpm.Tests;

public class TcgEventLogTests
{
    private static TcgEventLogWriter SampleWriter(bool secureBoot = true) => new TcgEventLogWriter()
        .Add(0, TcgEventType.SCrtmVersion, Encoding.Unicode.GetBytes("1.0\0"))
        .AddWithDigests(0, TcgEventType.EfiPlatformFirmwareBlob, new Dictionary<string, byte[]> { ["sha256"] = SHA256.HashData("firmware volume"u8) }, new byte[16])
        .AddSecureBoot(secureBoot)
        .Add(7, TcgEventType.EfiVariableDriverConfig, TcgEventLogWriter.UefiVariable(TcgEventLog.EfiGlobalVariable, "PK", "pk-cert"u8))
        .AddSeparator(0)
        .AddSeparator(4)
        .AddSeparator(7)
        .Add(4, TcgEventType.EfiBootServicesApplication, "shimx64.efi image"u8);

    private static byte[] Extend(byte[] pcr, byte[] digest) => SHA256.HashData([.. pcr, .. digest]);

    [Fact]
    public void A_written_crypto_agile_log_parses_back_and_replays_by_hand()
    {
        var w = SampleWriter();
        var log = TcgEventLog.Parse(w.ToArray());
        Assert.Equal(TcgEventLogFormat.CryptoAgile, log.Format);
        Assert.Equal(["sha256"], log.Banks);
        Assert.Equal(9, log.Events.Count);                         // the Spec ID header + 8
        Assert.Equal(TcgEventType.NoAction, log.Events[0].Type);
        for (var i = 0; i < w.Events.Count; i++)
        {
            var (written, parsed) = (w.Events[i], log.Events[i + 1]);
            Assert.Equal(written.Sequence, parsed.Sequence);
            Assert.Equal(written.PcrIndex, parsed.PcrIndex);
            Assert.Equal(written.Type, parsed.Type);
            Assert.Equal(written.Data, parsed.Data);
            Assert.Equal(written.Digests["sha256"], parsed.Digests["sha256"]);
        }

        var expected = new Dictionary<int, byte[]>();
        foreach (var e in w.Events)
            expected[e.PcrIndex] = Extend(expected.GetValueOrDefault(e.PcrIndex, new byte[32]), e.Digests["sha256"]);
        var replay = log.Replay("sha256");
        Assert.Equal([0, 4, 7], replay.Keys);
        foreach (var (pcr, value) in expected)
            Assert.Equal(value, replay[pcr]);
        Assert.True(log.SecureBoot);
        log.VerifyEventData();
    }

    [Fact]
    public void Pcr0_starts_at_the_startup_locality_and_no_action_events_are_not_extended()
    {
        var w = new TcgEventLogWriter().AddStartupLocality(3).Add(0, TcgEventType.SCrtmVersion, "v1"u8)
            .Add(0, TcgEventType.NoAction, "some vendor note"u8);
        var log = TcgEventLog.Parse(w.ToArray());
        Assert.Equal((byte)3, log.StartupLocality);
        var initial = new byte[32];
        initial[31] = 3;
        Assert.Equal(Extend(initial, SHA256.HashData("v1"u8)), log.Replay("sha256")[0]);

        var onlyLocality = TcgEventLog.Parse(new TcgEventLogWriter().AddStartupLocality(3).ToArray());
        Assert.Equal(initial, onlyLocality.Replay("sha256")[0]);
    }

    [Fact]
    public void Several_banks_replay_each_with_its_own_hash()
    {
        var w = new TcgEventLogWriter("sha1", "sha256", "sha384").Add(2, TcgEventType.EfiBootServicesDriver, "option rom"u8);
        var log = TcgEventLog.Parse(w.ToArray());
        Assert.Equal(["sha1", "sha256", "sha384"], log.Banks);
#pragma warning disable CA5350
        Assert.Equal(SHA1.HashData([.. new byte[20], .. SHA1.HashData("option rom"u8)]), log.Replay("sha1")[2]);
#pragma warning restore CA5350
        Assert.Equal(SHA384.HashData([.. new byte[48], .. SHA384.HashData("option rom"u8)]), log.Replay("sha384")[2]);
        Assert.Throws<TpmFormatException>(() => log.Replay("sha512"));
    }

    [Fact]
    public void A_legacy_sha1_log_parses_and_replays()
    {
        var digest = SHA256.HashData("x"u8)[..20];
        var bytes = Sha1Event(0, TcgEventType.SCrtmVersion, digest, "v"u8).Concat(Sha1Event(5, TcgEventType.Separator, new byte[20], new byte[4])).ToArray();
        var log = TcgEventLog.Parse(bytes);
        Assert.Equal(TcgEventLogFormat.Sha1, log.Format);
        Assert.Equal(["sha1"], log.Banks);
        Assert.Equal(2, log.Events.Count);
#pragma warning disable CA5350
        Assert.Equal(SHA1.HashData([.. new byte[20], .. digest]), log.Replay("sha1")[0]);
#pragma warning restore CA5350
        Assert.Null(log.SecureBoot);
        Assert.Throws<TpmFormatException>(() => log.Replay("sha256"));
    }

    [Fact]
    public void Secure_boot_is_read_from_the_pcr7_variable_before_the_separator()
    {
        Assert.True(TcgEventLog.Parse(SampleWriter(secureBoot: true).ToArray()).SecureBoot);
        Assert.False(TcgEventLog.Parse(SampleWriter(secureBoot: false).ToArray()).SecureBoot);
        Assert.Null(TcgEventLog.Parse(new TcgEventLogWriter().AddSeparator(7).ToArray()).SecureBoot);
        // An absent variable is measured empty: off.
        var empty = new TcgEventLogWriter().Add(7, TcgEventType.EfiVariableDriverConfig, TcgEventLogWriter.UefiVariable(TcgEventLog.EfiGlobalVariable, "SecureBoot", []));
        Assert.False(TcgEventLog.Parse(empty.ToArray()).SecureBoot);
        // Software after boot extending a "SecureBoot = 1" into PCR 7 after the separator does not turn it on.
        var late = new TcgEventLogWriter().AddSeparator(7).AddSecureBoot(true);
        Assert.Null(TcgEventLog.Parse(late.ToArray()).SecureBoot);
        // The same name under another vendor GUID is not the global variable.
        var other = new TcgEventLogWriter().Add(7, TcgEventType.EfiVariableDriverConfig,
            TcgEventLogWriter.UefiVariable(Guid.Parse("605dab50-e046-4300-abb6-3dd810dd8b23"), "SecureBoot", [1]));
        Assert.Null(TcgEventLog.Parse(other.ToArray()).SecureBoot);
    }

    [Fact]
    public void A_forged_log_is_detectable_by_data_check_or_by_replay()
    {
        var honest = SampleWriter(secureBoot: false);
        var honestLog = TcgEventLog.Parse(honest.ToArray());
        var secureBootEvent = honest.Events.Single(e => e.Type == TcgEventType.EfiVariableDriverConfig && e.Data.Length == 32 + 20 + 1);

        // Attacker 1: flips SecureBoot to 1 in the data but keeps the digest, so the log still replays to the quoted PCRs.
        var keptDigest = Rewrite(honest, secureBootEvent.Sequence, forgeData: true, forgeDigest: false);
        var forged = TcgEventLog.Parse(keptDigest);
        Assert.Equal(honestLog.Replay("sha256")[7], forged.Replay("sha256")[7]);
        var e = Assert.Throws<TpmFormatException>(() => forged.SecureBoot);
        Assert.Contains("does not hash to its digest", e.Message, StringComparison.Ordinal);
        Assert.Throws<TpmFormatException>(forged.VerifyEventData);

        // Attacker 2: changes the digest to match the forged data: the data check passes, the replay no longer matches.
        var newDigest = TcgEventLog.Parse(Rewrite(honest, secureBootEvent.Sequence, forgeData: true, forgeDigest: true));
        newDigest.VerifyEventData();
        Assert.True(newDigest.SecureBoot);
        Assert.NotEqual(honestLog.Replay("sha256")[7], newDigest.Replay("sha256")[7]);
        Assert.Equal(honestLog.Replay("sha256")[0], newDigest.Replay("sha256")[0]);
    }

    [Fact]
    public async Task A_written_log_extended_into_a_real_tpm_replays_to_what_tpm2_pcrread_shows()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var tpm = await Swtpm.StartAsync(null, ct);
        var w = SampleWriter();
        foreach (var e in w.Events)
            await tpm.Tpm2Async("tpm2_pcrextend", [$"{e.PcrIndex}:sha256={Convert.ToHexStringLower(e.Digests["sha256"])}"], ct);
        var replay = TcgEventLog.Parse(w.ToArray()).Replay("sha256");
        var read = ParsePcrRead(await tpm.Tpm2Async("tpm2_pcrread", ["sha256:0,4,7,9"], ct));
        Assert.Equal(4, read.Count);
        foreach (var pcr in (int[])[0, 4, 7])
            Assert.Equal(Convert.ToHexStringLower(replay[pcr]), read[pcr]);
        Assert.Equal(new string('0', 64), read[9]);                 // untouched by the log
        Assert.False(replay.ContainsKey(9));

        // One more measurement the log does not show: the TPM and the replay part.
        await tpm.ExtendPcrAsync(7, "unlogged", ct);
        var after = ParsePcrRead(await tpm.Tpm2Async("tpm2_pcrread", ["sha256:7"], ct));
        Assert.NotEqual(Convert.ToHexStringLower(replay[7]), after[7]);
    }

    [Fact]
    public async Task Tpm2_eventlog_reads_a_written_log_and_replays_it_to_the_same_pcrs()
    {
        // tpm2-tools' own parser (strict about event data, so only types whose data is free-form or a UEFI variable).
        Assert.SkipUnless(Swtpm.Installed, "tpm2-tools is not installed");
        var w = new TcgEventLogWriter("sha1", "sha256")
            .Add(0, TcgEventType.SCrtmVersion, Encoding.Unicode.GetBytes("1.0\0"))
            .AddSecureBoot(true)
            .Add(7, TcgEventType.EfiVariableDriverConfig, TcgEventLogWriter.UefiVariable(TcgEventLog.EfiGlobalVariable, "PK", "pk-cert"u8))
            .AddSeparator(0)
            .AddSeparator(7)
            .Add(4, TcgEventType.EfiAction, "Calling EFI Application from Boot Option"u8)
            .Add(8, TcgEventType.Ipl, "grub_cmd: linux /vmlinuz"u8);
        var dir = Directory.CreateTempSubdirectory("writ-evlog-").FullName;
        string stdout;
        try
        {
            var file = Path.Combine(dir, "log.bin");
            await File.WriteAllBytesAsync(file, w.ToArray(), TestContext.Current.CancellationToken);
            var psi = new System.Diagnostics.ProcessStartInfo("tpm2_eventlog", [file]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = System.Diagnostics.Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            var stderr = await p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
            await p.WaitForExitAsync(TestContext.Current.CancellationToken);
            stdout = await output;
            Assert.True(p.ExitCode == 0, stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        Assert.Contains("UnicodeName: SecureBoot", stdout, StringComparison.Ordinal);

        var log = TcgEventLog.Parse(w.ToArray());
        var pcrs = stdout[stdout.IndexOf("\npcrs:", StringComparison.Ordinal)..];
        foreach (var bank in (string[])["sha1", "sha256"])
        {
            var section = pcrs[(pcrs.IndexOf($"  {bank}:", StringComparison.Ordinal) + bank.Length + 3)..];
            var next = section.IndexOf("  sha", StringComparison.Ordinal);
            var theirs = ParsePcrRead(next < 0 ? section : section[..next]);
            var ours = log.Replay(bank);
            Assert.Equal(ours.Keys.Order(), theirs.Keys.Order());
            foreach (var (pcr, value) in ours)
                Assert.Equal(Convert.ToHexStringLower(value), theirs[pcr]);
        }
    }

    [Fact]
    public void Truncations_of_a_log_are_a_format_error_or_a_shorter_valid_log()
    {
        var bytes = SampleWriter().ToArray();
        var boundaries = 0;
        for (var n = 0; n < bytes.Length; n++)
        {
            try
            {
                var log = TcgEventLog.Parse(bytes.AsSpan(0, n));
                boundaries++;
                Assert.True(log.Events.Count < 9);
            }
            catch (TpmFormatException)
            {
            }
        }
        Assert.Equal(8, boundaries);                                 // after the header and after each of the first 7 events
    }

    [Fact]
    public void Garbage_and_bit_flips_give_a_format_error_only()
    {
        var rng = new Random(14);
        var valid = SampleWriter().ToArray();
        for (var i = 0; i < 3000; i++)
        {
            byte[] input;
            if (i % 3 == 0)
            {
                input = new byte[rng.Next(0, 600)];
                rng.NextBytes(input);
            }
            else
            {
                input = [.. valid];
                for (var f = rng.Next(1, 4); f > 0; f--)
                    input[rng.Next(input.Length)] ^= (byte)(1 << rng.Next(8));
            }
            try
            {
                var log = TcgEventLog.Parse(input);
                foreach (var b in log.Banks)
                    _ = log.Replay(b);
                _ = log.SecureBoot;
            }
            catch (TpmFormatException)
            {
            }
        }
    }

    [Theory]
    [InlineData("undeclared algorithm")]
    [InlineData("digest count")]
    [InlineData("pcr 24")]
    [InlineData("huge event")]
    [InlineData("trailing byte")]
    [InlineData("wrong sha256 size")]
    [InlineData("second startup locality")]
    public void Malformed_logs_are_refused(string breakage)
    {
        var ok = new TcgEventLogWriter().Add(4, TcgEventType.Ipl, "grub"u8).ToArray();
        var eventStart = ok.Length - (4 + 4 + 4 + 2 + 32 + 4 + 4);
        var bytes = breakage switch
        {
            "undeclared algorithm" => Patch16(ok, eventStart + 12, TpmAlg.Sha384),
            "digest count" => Patch32(ok, eventStart + 8, 2),
            "pcr 24" => Patch32(ok, eventStart, 24),
            "huge event" => Patch32(ok, eventStart + 46, 0x7FFFFFFF),
            "trailing byte" => [.. ok, 0],
            "wrong sha256 size" => Patch16(ok, 32 + 28 + 2, 20),
            "second startup locality" => new TcgEventLogWriter().AddStartupLocality(0).AddStartupLocality(3).ToArray(),
            _ => throw new ArgumentOutOfRangeException(nameof(breakage)),
        };
        Assert.Throws<TpmFormatException>(() => TcgEventLog.Parse(bytes));
    }

    [Fact]
    public void The_event_count_is_bounded()
    {
        var w = new TcgEventLogWriter();
        for (var i = 0; i < TcgEventLog.MaxEvents; i++)
            w.Add(1, TcgEventType.NoAction, []);
        var e = Assert.Throws<TpmFormatException>(() => TcgEventLog.Parse(w.ToArray()));
        Assert.Contains("more than", e.Message, StringComparison.Ordinal);
    }

    private static byte[] Rewrite(TcgEventLogWriter honest, int sequence, bool forgeData, bool forgeDigest)
    {
        var w = new TcgEventLogWriter();
        foreach (var e in honest.Events)
        {
            if (e.Sequence != sequence)
            {
                w.AddWithDigests(e.PcrIndex, e.Type, e.Digests, e.Data);
                continue;
            }
            var data = forgeData ? TcgEventLogWriter.UefiVariable(TcgEventLog.EfiGlobalVariable, "SecureBoot", [1]) : e.Data;
            var digests = forgeDigest ? new Dictionary<string, byte[]> { ["sha256"] = SHA256.HashData(data) } : e.Digests;
            w.AddWithDigests(e.PcrIndex, e.Type, digests, data);
        }
        return w.ToArray();
    }

    private static byte[] Sha1Event(uint pcr, uint type, byte[] digest, ReadOnlySpan<byte> data)
    {
        var b = new byte[4 + 4 + 20 + 4 + data.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, pcr);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), type);
        digest.CopyTo(b, 8);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(28), (uint)data.Length);
        data.CopyTo(b.AsSpan(32));
        return b;
    }

    private static byte[] Patch32(byte[] source, int offset, uint value)
    {
        var b = source.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(offset), value);
        return b;
    }

    private static byte[] Patch16(byte[] source, int offset, ushort value)
    {
        var b = source.ToArray();
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(offset), value);
        return b;
    }

    /// <summary>tpm2_pcrread's YAML-ish output ("  sha256:\n    7 : 0xABC…") → PCR → lowercase hex.</summary>
    private static Dictionary<int, string> ParsePcrRead(string output) =>
        Regex.Matches(output, @"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$", RegexOptions.Multiline)
            .ToDictionary(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m => m.Groups[2].Value.ToLowerInvariant());
}
