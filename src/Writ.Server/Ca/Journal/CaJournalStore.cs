using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.X509;

namespace Writ.Server.Ca.Journal;

/// <summary>
/// The CA journal: the persisted state of every authority (certificates, public keys, statuses, lifetimes) as one
/// document in the store. Private keys are not in it: they stay in the key manager under each authority's key id.
/// With several servers on one store (issue #16) each server has its own journal, <c>ca/&lt;server id&gt;</c>; a server
/// without an id (one server, embedded) uses the single journal <c>ca</c> of stores made before that.
/// </summary>
internal sealed class CaJournalStore(IWritStore store, TimeProvider time, string? serverId = null)
{
    /// <summary>The journal of a store made by one server before issue #16 (and of a CA without a server id).</summary>
    public const string Name = "ca";

    /// <summary>Journals of servers with an id: <c>ca/&lt;server id&gt;</c>.</summary>
    public const string ServerPrefix = "ca/";

    /// <summary>The name of this CA's own journal.</summary>
    public string OwnName { get; } = serverId is null ? Name : ServerPrefix + serverId;

    /// <summary>The server id a journal name belongs to (null for the legacy journal <c>ca</c>), or false when it is no CA journal.</summary>
    public static bool IsJournalName(string name) => name == Name || (name.StartsWith(ServerPrefix, StringComparison.Ordinal) && name.Length > ServerPrefix.Length);

    /// <summary>The stored journal, or the empty one. Throws <see cref="CaException"/> (<see cref="CaException.JournalCorrupt"/>) when it cannot be read.</summary>
    public async Task<CaJournalDocument> LoadAsync(CancellationToken ct)
    {
        var stored = await store.CaJournal.GetAsync(OwnName, ct).ConfigureAwait(false);
        return stored is null ? CaJournalDocument.Empty : Parse(stored.Data);
    }

    public async Task SaveAsync(CaJournalDocument journal, CancellationToken ct)
    {
        var data = JsonSerializer.SerializeToUtf8Bytes(journal, CaJournalJsonContext.Default.CaJournalDocument);
        await store.CaJournal.PutAsync(new CaJournal(OwnName, data, time.GetUtcNow()), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Every other server's journal that can be read (name → document); one that cannot is left out and logged: it is that
    /// server's to repair, and every server leaves it out alike, so they publish the same bundle.
    /// </summary>
    public async Task<IReadOnlyList<(string Name, CaJournalDocument Journal)>> OthersAsync(ILogger log, CancellationToken ct)
    {
        var others = new List<(string, CaJournalDocument)>();
        foreach (var j in await store.CaJournal.ListAsync(ct).ConfigureAwait(false))
        {
            if (j.Name == OwnName || !IsJournalName(j.Name))
            {
                continue;
            }
            try
            {
                others.Add((j.Name, Parse(j.Data)));
            }
            catch (CaException)
            {
                ServerLog.CaJournalUnreadable(log, j.Name);
            }
        }
        return others;
    }

    /// <summary>
    /// Adopts the journal of a store made by one server before issue #16 (<c>ca</c>): renamed to this server's own name in
    /// one transaction, but only by the server whose key manager holds an authority's key with the recorded public key — a
    /// second server with other keys leaves it alone (its authorities stay in the bundle until they expire, never signing).
    /// True when adopted now.
    /// </summary>
    public async Task<bool> AdoptLegacyAsync(IKeyManager keys, ILogger log, CancellationToken ct)
    {
        if (OwnName == Name || await store.CaJournal.GetAsync(OwnName, ct).ConfigureAwait(false) is not null)
        {
            return false;
        }
        var legacy = await store.CaJournal.GetAsync(Name, ct).ConfigureAwait(false);
        if (legacy is null)
        {
            return false;
        }
        var doc = Parse(legacy.Data);
        var holds = false;
        foreach (var (keyId, spki) in doc.X509.Select(a => (a.KeyId, CaCertificates.SpkiOf(a.ChainDerBase64[0])))
            .Concat(doc.Jwt.Select(a => (a.KeyId, Convert.FromBase64String(a.PublicKeySpkiBase64)))))
        {
            holds |= await DropReasonAsync(keys, keyId, spki, ct).ConfigureAwait(false) is null;
        }
        if (!holds)
        {
            ServerLog.CaLegacyJournalNotOurs(log, OwnName);
            return false;
        }
        var adopted = await store.CaJournal.RenameAsync(Name, OwnName, ct).ConfigureAwait(false);
        if (adopted)
        {
            ServerLog.CaLegacyJournalAdopted(log, OwnName);
        }
        return adopted;
    }

    /// <summary>The trust domain the stored journals were made for (the URI SAN of their X.509 authorities), or null without one.</summary>
    public static async Task<TrustDomain?> TrustDomainAsync(IWritStore store, CancellationToken ct)
    {
        foreach (var stored in await store.CaJournal.ListAsync(ct).ConfigureAwait(false))
        {
            if (!IsJournalName(stored.Name))
            {
                continue;
            }
            foreach (var a in Parse(stored.Data).X509)
            {
                using var cert = CaCertificates.Load(a.ChainDerBase64[0]);
                if (X509Authorities.TrustDomainOf(cert) is { } td)
                {
                    return td;
                }
            }
        }
        return null;
    }

    private static CaJournalDocument Parse(byte[] data)
    {
        var corrupt = new CaException(CaException.JournalCorrupt, WritErrorKind.FailedPrecondition,
            "the CA journal in the store is corrupt: restore the database from backup; nothing was changed");
        CaJournalDocument? doc;
        try
        {
            doc = JsonSerializer.Deserialize(data, CaJournalJsonContext.Default.CaJournalDocument);
        }
        catch (JsonException)
        {
            throw corrupt;
        }
        if (doc?.X509 is null || doc.Jwt is null)
        {
            throw corrupt;
        }
        try
        {
            foreach (var a in doc.X509)
            {
                if (a is null || string.IsNullOrEmpty(a.KeyId) || a.ChainDerBase64 is not { Count: > 0 })
                {
                    throw corrupt;
                }
                foreach (var b in a.ChainDerBase64)
                {
                    using var c = CaCertificates.Load(b);
                }
            }
            foreach (var a in doc.Jwt)
            {
                if (a is null || string.IsNullOrEmpty(a.KeyId) || string.IsNullOrEmpty(a.Kid))
                {
                    throw corrupt;
                }
                using var k = CaCertificates.ImportPublic(a.PublicKeySpkiBase64);
            }
        }
        catch (Exception e) when (e is FormatException or CryptographicException or ArgumentNullException)
        {
            throw corrupt;
        }
        return doc;
    }

    /// <summary>
    /// The journal without the authorities nothing could use: whose keys are gone (memory key manager after a restart, a
    /// lost key file), whose public key is not the held key's (whoever can write the store must not be able to add a trust
    /// anchor), whose chain does not link up, and X.509 authorities of the other mode (self-signed vs. signed by the
    /// configured upstream). Returns the key ids of the latter: their keys can be deleted once the journal is stored.
    /// The certificate, not the record, says when an X.509 authority lives.
    /// </summary>
    public static async Task<(CaJournalDocument Journal, IReadOnlyList<string> Orphans)> ReconcileAsync(CaJournalDocument journal, IKeyManager keys,
        bool upstream, ILogger log, CancellationToken ct)
    {
        var x509 = new List<X509AuthorityRecord>();
        var orphans = new List<string>();
        foreach (var a in journal.X509)
        {
            if (await DropReasonAsync(keys, a.KeyId, CaCertificates.SpkiOf(a.ChainDerBase64[0]), ct).ConfigureAwait(false) is { } reason)
            {
                ServerLog.CaAuthorityDropped(log, "X.509", a.KeyId, reason);
                continue;
            }
            var chain = CaCertificates.LoadAll(a.ChainDerBase64);
            if (chain.Count > 1 && !CaCertificates.LinkUp(chain))
            {
                ServerLog.CaAuthorityDropped(log, "X.509", a.KeyId, "its recorded certificate chain does not link up by signatures (the store was altered)");
            }
            else if (upstream == CaCertificates.IsSelfSigned(chain[0]))
            {
                // With an upstream CA every authority must be an intermediate; without one, self-signed. (An authority signed
                // by an earlier upstream certificate is kept: after an upstream renewal it signs until its successor takes over.)
                ServerLog.CaAuthorityDropped(log, "X.509", a.KeyId, upstream
                    ? "it is self-signed but an upstream CA is now configured"
                    : "it was signed by an upstream CA that is no longer configured");
                orphans.Add(a.KeyId);
            }
            else
            {
                x509.Add(a with { NotBefore = new DateTimeOffset(chain[0].NotBefore.ToUniversalTime()), NotAfter = CaCertificates.NotAfterOf(chain[0]) });
            }
        }
        var jwt = new List<JwtAuthorityRecord>();
        foreach (var a in journal.Jwt)
        {
            if (await DropReasonAsync(keys, a.KeyId, Convert.FromBase64String(a.PublicKeySpkiBase64), ct).ConfigureAwait(false) is { } reason)
            {
                ServerLog.CaAuthorityDropped(log, "JWT", a.KeyId, reason);
            }
            else
            {
                jwt.Add(a);
            }
        }
        return (new CaJournalDocument(x509, jwt), orphans);
    }

    private static async Task<string?> DropReasonAsync(IKeyManager keys, string keyId, byte[] spki, CancellationToken ct)
    {
        var key = await keys.GetAsync(keyId, ct).ConfigureAwait(false);
        if (key is null)
        {
            return $"its private key is not in the {keys.Name} key manager";
        }
        return CaCertificates.SameSpki(key, spki)
            ? null
            : "its public key does not match the private key held under its id (the store was altered, or the key file belongs to another server)";
    }
}
