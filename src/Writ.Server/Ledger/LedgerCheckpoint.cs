using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;

namespace Writ.Server.Ledger;

/// <summary>
/// A signed statement "the ledger had record <see cref="Seq"/> with hash <see cref="Hash"/> at <see cref="AtUnix"/>".
/// The server signs one periodically with a key kept in its data dir (never in the database) and keeps them in a file
/// beside it, so someone who can rewrite the database cannot make a shorter or different ledger verify.
/// </summary>
public sealed record LedgerCheckpoint(long Seq, byte[] Hash, long AtUnix, string KeyId, byte[] Signature)
{
    private static readonly byte[] Domain = "writ-ledger-checkpoint-v1\n"u8.ToArray();

    /// <summary>The signed bytes: a domain tag, seq (8 bytes big-endian), the 32-byte head hash, the time (8 bytes big-endian Unix seconds).</summary>
    public static byte[] Message(long seq, ReadOnlySpan<byte> hash, long atUnix)
    {
        if (hash.Length != LedgerHash.Size)
            throw new ArgumentException($"a ledger hash is {LedgerHash.Size} bytes, got {hash.Length}", nameof(hash));
        var m = new byte[Domain.Length + 8 + LedgerHash.Size + 8];
        Domain.CopyTo(m, 0);
        BinaryPrimitives.WriteInt64BigEndian(m.AsSpan(Domain.Length), seq);
        hash.CopyTo(m.AsSpan(Domain.Length + 8));
        BinaryPrimitives.WriteInt64BigEndian(m.AsSpan(Domain.Length + 8 + LedgerHash.Size), atUnix);
        return m;
    }

    /// <summary>Signs (ECDSA P-256, SHA-256, r||s) the head as a checkpoint.</summary>
    public static LedgerCheckpoint Sign(ECDsa key, long seq, byte[] hash, long atUnix) =>
        new(seq, hash, atUnix, KeyIdOf(key), key.SignData(Message(seq, hash, atUnix), HashAlgorithmName.SHA256));

    /// <summary>True when the signature is good under <paramref name="publicKey"/> (and names that key).</summary>
    public bool Verify(ECDsa publicKey) =>
        KeyId == KeyIdOf(publicKey) && Hash.Length == LedgerHash.Size
        && publicKey.VerifyData(Message(Seq, Hash, AtUnix), Signature, HashAlgorithmName.SHA256);

    /// <summary>The first 16 hex digits of the SHA-256 of the key's SubjectPublicKeyInfo.</summary>
    public static string KeyIdOf(ECDsa key) => Convert.ToHexStringLower(SHA256.HashData(key.ExportSubjectPublicKeyInfo()))[..16];

    public string At => LedgerJson.Rfc3339(DateTimeOffset.FromUnixTimeSeconds(AtUnix));

    /// <summary>One line of the checkpoints file: a JSON object with ordinal-ordered keys.</summary>
    public string ToLine() => new LedgerJson()
        .Add("at", At)
        .Add("at_unix", AtUnix)
        .Add("hash", Convert.ToHexStringLower(Hash))
        .Add("key_id", KeyId)
        .Add("seq", Seq)
        .Add("signature", Convert.ToBase64String(Signature))
        .ToString();

    /// <summary>Reads one line of a checkpoints file (the signature is not checked here).</summary>
    public static bool TryParse(string line, out LedgerCheckpoint? checkpoint)
    {
        checkpoint = null;
        try
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object
                || !r.TryGetProperty("seq", out var seq) || !seq.TryGetInt64(out var s) || s < 1
                || !r.TryGetProperty("at_unix", out var at) || !at.TryGetInt64(out var a)
                || !r.TryGetProperty("hash", out var hash) || hash.ValueKind != JsonValueKind.String
                || !r.TryGetProperty("key_id", out var kid) || kid.ValueKind != JsonValueKind.String
                || !r.TryGetProperty("signature", out var sig) || sig.ValueKind != JsonValueKind.String)
                return false;
            var h = Convert.FromHexString(hash.GetString()!);
            if (h.Length != LedgerHash.Size)
                return false;
            checkpoint = new LedgerCheckpoint(s, h, a, kid.GetString()!, Convert.FromBase64String(sig.GetString()!));
            return true;
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// The newest (highest seq) checkpoint of a checkpoints file, every line's signature checked with
    /// <paramref name="publicKey"/>. Null when the file has none. A line that does not parse or verify is an error:
    /// the file was edited, or it belongs to another server.
    /// </summary>
    public static LedgerCheckpoint? ReadNewest(string path, ECDsa publicKey, out string? error)
    {
        error = null;
        LedgerCheckpoint? newest = null;
        var lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (line.Length == 0)
                continue;
            if (!TryParse(line, out var c) || !c!.Verify(publicKey))
            {
                error = $"{path}:{lineNo}: this checkpoint's signature does not verify with the checkpoint key: the file was edited or is from another server";
                return null;
            }
            if (newest is null || c.Seq >= newest.Seq)
                newest = c;
        }
        return newest;
    }

    /// <summary>Reads a PEM public key (SubjectPublicKeyInfo, e.g. checkpoint.pub) or a PEM private key (its public half).</summary>
    public static ECDsa ReadPublicKey(string pemPath)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(File.ReadAllText(pemPath));
        }
        catch (ArgumentException)
        {
            key.Dispose();
            throw new CryptographicException($"{pemPath} is not a PEM EC key: point --checkpoint-key at the server's checkpoint.pub");
        }
        return key;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"checkpoint seq {Seq} hash {Convert.ToHexStringLower(Hash)} at {At}");
}
