using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Server.NodeAttestation;

namespace Writ.Server.Configuration;

/// <summary>
/// The <c>tpm</c> node attestor's configuration (issue #14): which endorsement keys the server trusts (manufacturer CAs in
/// <c>tpm.ek_ca_dir</c> and/or an allow-list of EK public key hashes in <c>tpm.ek_hashes</c>), the PCRs it quotes and how
/// often it re-quotes. The attestor is enabled when either trust source is set; any other <c>tpm.*</c> key without one is
/// refused at start-up (<see cref="NoEkTrustCode"/>), as is a CA directory without a readable certificate.
/// </summary>
public sealed record TpmOptions
{
    /// <summary>A tpm.* key is set but neither tpm.ek_ca_dir nor tpm.ek_hashes: no EK could ever be trusted.</summary>
    public const string NoEkTrustCode = "WRIT-CONFIG-TPM-NO-EK-TRUST";

    /// <summary>tpm.ek_ca_dir is missing, unreadable, or holds no certificate.</summary>
    public const string EkCaDirCode = "WRIT-CONFIG-TPM-EK-CA-DIR";

    /// <summary>The attestor is off (no tpm.* key set).</summary>
    public static TpmOptions Disabled { get; } = new();

    /// <summary>The manufacturer CA directory as configured (for messages), or null.</summary>
    public string? EkCaDir { get; init; }

    /// <summary>Every certificate of <see cref="EkCaDir"/>: self-signed ones are trust anchors, the rest intermediates.</summary>
    public IReadOnlyList<X509Certificate2> EkCaCertificates { get; init; } = [];

    /// <summary>Lower-case hex SHA-256 hashes of trusted EK public keys (SubjectPublicKeyInfo DER).</summary>
    public IReadOnlySet<string> EkHashes { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    public TimeSpan RequoteInterval { get; init; } = TimeSpan.FromSeconds(60);

    public TimeSpan RequoteGrace { get; init; } = TimeSpan.FromSeconds(10);

    public DriftAction DriftAction { get; init; } = DriftAction.Quarantine;

    /// <summary>The PCR bank quoted (sha1, sha256 or sha384).</summary>
    public string PcrBank { get; init; } = "sha256";

    /// <summary>The PCR indices quoted, ascending.</summary>
    public IReadOnlyList<int> PcrIndices { get; init; } = DefaultPcrIndices;

    public static readonly IReadOnlyList<int> DefaultPcrIndices = [0, 1, 2, 3, 4, 5, 6, 7, 14];

    /// <summary>Whether the tpm attestor is registered.</summary>
    public bool Enabled => EkCaCertificates.Count > 0 || EkHashes.Count > 0;

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("tpm.ek_ca_dir", "", "Directory of TPM manufacturer CA certificates (PEM or DER): an EK certificate chaining to one is trusted; enables the tpm node attestor."),
        new("tpm.ek_hashes", "", "Comma-separated lower-case hex SHA-256 hashes of trusted EK public keys; enables the tpm node attestor."),
        new("tpm.requote_interval", "60s", "How often every tpm node is asked for a fresh PCR quote."),
        new("tpm.requote_grace", "10s", "How long a missing re-quote answer is tolerated before the node counts as drifted."),
        new("tpm.drift_action", "quarantine", "What drift does to a tpm node: quarantine (no new SVIDs) or revoke (its SVIDs are revoked at once)."),
        new("tpm.pcrs", "sha256:0,1,2,3,4,5,6,7,14", "The PCRs quoted at attestation and every re-quote: BANK:N,N,... (bank sha1, sha256 or sha384; N 0-23)."),
    ];

    public static TpmOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var caDir = c.Get("tpm.ek_ca_dir") is { Length: > 0 } d ? d : null;
        var hashesText = c.Get("tpm.ek_hashes") is { Length: > 0 } h ? h : null;
        if (caDir is null && hashesText is null)
        {
            var set = Keys.Skip(2).Where(k => c.SourceOf(k.Name) != "default").Select(k => c.Describe(k.Name)).ToList();
            if (set.Count > 0)
            {
                c.Errors.Add($"{NoEkTrustCode}: {string.Join(", ", set)} configure the tpm node attestor, but neither 'tpm.ek_ca_dir' nor 'tpm.ek_hashes' is set, so no TPM could ever be trusted: set one (or both), or remove the tpm keys");
            }
            return Disabled;
        }
        var certificates = caDir is null ? [] : LoadCaDirectory(c, caDir);
        var hashes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in (hashesText ?? "").Split([',', ' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var hex = item.ToLowerInvariant();
            if (hex.Length != 64 || !hex.All(char.IsAsciiHexDigitLower))
            {
                c.Errors.Add($"{c.Describe("tpm.ek_hashes")} must be comma-separated SHA-256 hashes of EK public keys (64 hex digits each; docs/node-attestation.md shows how to get one), got '{Printable(item)}'");
                continue;
            }
            hashes.Add(hex);
        }
        var interval = c.Duration("tpm.requote_interval", TimeSpan.FromSeconds(1), TimeSpan.FromDays(1));
        var grace = c.Duration("tpm.requote_grace", TimeSpan.Zero, TimeSpan.FromHours(1));
        var action = c.OneOf("tpm.drift_action", "quarantine", "revoke") == "revoke" ? DriftAction.Revoke : DriftAction.Quarantine;
        var (bank, indices) = ParsePcrs(c);
        return new TpmOptions
        {
            EkCaDir = caDir,
            EkCaCertificates = certificates,
            EkHashes = hashes,
            RequoteInterval = interval,
            RequoteGrace = grace,
            DriftAction = action,
            PcrBank = bank,
            PcrIndices = indices,
        };
    }

    /// <summary>Parses <c>BANK:N,N,…</c>; the banks a TPM quote can carry here are sha1, sha256 and sha384.</summary>
    public static bool TryParsePcrs(string text, out string bank, out IReadOnlyList<int> indices, out string error)
    {
        bank = "sha256";
        indices = DefaultPcrIndices;
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            error = "must be BANK:N,N,... e.g. sha256:0,1,2,3,4,5,6,7,14";
            return false;
        }
        var b = text[..colon].Trim().ToLowerInvariant();
        if (b is not ("sha1" or "sha256" or "sha384"))
        {
            error = $"names bank '{Printable(b)}': use sha1, sha256 or sha384";
            return false;
        }
        var list = new SortedSet<int>();
        foreach (var part in text[(colon + 1)..].Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > 23 || !list.Add(n))
            {
                error = $"has '{Printable(part)}', which is not a PCR index 0-23 named once";
                return false;
            }
        }
        bank = b;
        indices = [.. list];
        error = "";
        return true;
    }

    private static (string Bank, IReadOnlyList<int> Indices) ParsePcrs(ConfigSources c)
    {
        if (TryParsePcrs(c.Get("tpm.pcrs") ?? "", out var bank, out var indices, out var error))
            return (bank, indices);
        c.Errors.Add($"{c.Describe("tpm.pcrs")} {error}");
        return ("sha256", DefaultPcrIndices);
    }

    /// <summary>Every PEM (possibly several per file) or DER certificate in <paramref name="dir"/>; files that hold none are errors.</summary>
    private static List<X509Certificate2> LoadCaDirectory(ConfigSources c, string dir)
    {
        var found = new List<X509Certificate2>();
        string[] files;
        try
        {
            files = [.. Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            c.Errors.Add($"{EkCaDirCode}: {c.Describe("tpm.ek_ca_dir")}: cannot read directory '{dir}' ({e.GetType().Name}): give a readable directory of manufacturer CA certificates");
            return found;
        }
        foreach (var file in files)
        {
            try
            {
                var bytes = File.ReadAllBytes(file);
                var text = System.Text.Encoding.ASCII.GetString(bytes);
                if (text.Contains("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal))
                {
                    var collection = new X509Certificate2Collection();
                    collection.ImportFromPem(text);
                    found.AddRange(collection);
                }
                else
                {
                    found.Add(X509CertificateLoader.LoadCertificate(bytes));
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
            {
                c.Errors.Add($"{EkCaDirCode}: {c.Describe("tpm.ek_ca_dir")}: '{Path.GetFileName(file)}' is not a readable PEM or DER certificate: remove it or fix it");
            }
        }
        if (found.Count == 0 && files.Length == 0)
        {
            c.Errors.Add($"{EkCaDirCode}: {c.Describe("tpm.ek_ca_dir")}: directory '{dir}' holds no certificate: copy the TPM manufacturers' CA certificates (PEM or DER) into it");
        }
        return found;
    }

    private static string Printable(string s) => new([.. s.Take(64).Select(ch => ch is >= ' ' and <= '~' ? ch : '?')]);
}
