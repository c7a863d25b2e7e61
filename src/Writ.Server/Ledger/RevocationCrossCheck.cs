using System.Globalization;
using System.Text.Json;
using Writ.Server.Storage;

namespace Writ.Server.Ledger;

/// <summary>
/// Cross-checks the revocations table against the ledger's <c>svid.revoked</c> / <c>jwt.revoked</c> records: a
/// revocation and its record are written in one transaction, so each row must have its record and each record of a
/// credential not yet expired must still have its row (rows are pruned only after the credential expired, see
/// <c>RevocationService.PruneMargin</c>). A row deleted by hand un-revokes a certificate; a row inserted by hand
/// revokes one without a trace: both are reported, naming the serial (or jti) and the side that is missing.
/// Feed the ledger records with <see cref="Add"/> (any order), then call <see cref="Check"/>.
/// </summary>
public sealed class RevocationCrossCheck
{
    public const string X509Revoked = "svid.revoked";
    public const string JwtRevoked = "jwt.revoked";

    private readonly Dictionary<(string Kind, string Id), (long Seq, DateTimeOffset? ExpiresAt)> _recorded = [];

    /// <summary>The revocation records seen so far.</summary>
    public int Records => _recorded.Count;

    /// <summary>Takes note of a ledger record if it records a revocation; other records are ignored.</summary>
    public void Add(LedgerEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var (kind, member) = e.Kind switch
        {
            X509Revoked => ("x509", "serial"),
            JwtRevoked => ("jwt", "jti"),
            _ => (null, null),
        };
        if (kind is null)
            return;
        string? id = null;
        DateTimeOffset? expires = null;
        try
        {
            using var doc = JsonDocument.Parse(e.DataJson);
            if (doc.RootElement.ValueKind == JsonValueKind.Object)
            {
                if (doc.RootElement.TryGetProperty(member!, out var v) && v.ValueKind == JsonValueKind.String)
                    id = v.GetString();
                if (doc.RootElement.TryGetProperty("expires_at", out var x) && x.ValueKind == JsonValueKind.String
                    && DateTimeOffset.TryParse(x.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
                    expires = at;
            }
        }
        catch (JsonException)
        {
            // A record whose data is not JSON names no credential: the hash chain vouches for it as it is.
        }
        if (string.IsNullOrEmpty(id))
            return;
        // Serials are kept upper case in the table; a credential is revoked once, so its first record is the one.
        _recorded.TryAdd((kind, kind == "x509" ? id.ToUpperInvariant() : id), (e.Seq, expires));
    }

    /// <summary>
    /// The mismatches, one line each: rows without a record, then records (up to <paramref name="recordsUpTo"/>, of
    /// credentials that expire after <paramref name="now"/>) without a row. Records appended after the rows were read
    /// (seq above <paramref name="recordsUpTo"/>) are not held against the table.
    /// </summary>
    public IReadOnlyList<string> Check(IEnumerable<RevocationRecord> rows, DateTimeOffset now, long recordsUpTo)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var problems = new List<string>();
        var inTable = new HashSet<(string, string)>();
        foreach (var r in rows)
        {
            var key = r.SerialHex is { Length: > 0 } serial ? ("x509", serial.ToUpperInvariant()) : ("jwt", r.Jti ?? "");
            inTable.Add(key);
            if (!_recorded.TryGetValue(key, out var recorded))
            {
                problems.Add($"{Describe(key)} is in the revocations table but the ledger has no {(key.Item1 == "x509" ? X509Revoked : JwtRevoked)} record of it: the row was added outside Writ; find out who wrote to the database, then restore it from a backup");
                continue;
            }
            // A row that is there but edited un-revokes as surely as a deleted one: every reader drops a row whose expiry
            // has passed, and the server's deny list keys on the serial as stored.
            if (key.Item1 == "x509" && !string.Equals(r.SerialHex, key.Item2, StringComparison.Ordinal))
                problems.Add($"{Describe(key)} is stored as '{r.SerialHex}', not in the upper-case form Writ writes: the row was edited outside Writ; revoke it again (writ revoke --serial {key.Item2}) and find out who wrote to the database");
            if (recorded.ExpiresAt is { } expires && (r.ExpiresAt - expires).Duration() > TimeSpan.FromSeconds(1))
                problems.Add($"{Describe(key)} expires at {r.ExpiresAt.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss'Z'} in the revocations table but at {expires.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss'Z'} in its ledger record {recorded.Seq}: the row was edited outside Writ (an earlier expiry drops the revocation early); revoke it again and find out who wrote to the database");
        }
        foreach (var (key, (seq, expires)) in _recorded.OrderBy(p => p.Value.Seq))
        {
            if (seq > recordsUpTo || inTable.Contains(key) || expires is null || expires <= now)
                continue;
            problems.Add($"{Describe(key)} is revoked in the ledger (record {seq}) but missing from the revocations table, though it is valid until {expires.Value.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss'Z'}: it was un-revoked by editing the database; revoke it again (writ revoke {(key.Item1 == "x509" ? "--serial" : "--jti")} {key.Item2}) and find out who wrote to the database");
        }
        return problems;
    }

    private static string Describe((string Kind, string Id) key) => key.Kind == "x509" ? $"X.509 serial {key.Id}" : $"JWT jti {key.Id}";
}
