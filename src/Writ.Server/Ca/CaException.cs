using Writ.Protocol.Errors;

namespace Writ.Server.Ca;

/// <summary>
/// A CA failure an operator sees (at start-up, in the rotation log, or as the reason an issuance failed), with a stable
/// <c>WRIT-CA-…</c> code listed in docs/errors.md. Messages name the file or setting and say what to do; never key material.
/// </summary>
public sealed class CaException(string code, WritErrorKind kind, string message) : WritException(code, kind, message)
{
    /// <summary>An upstream CA file named in the configuration does not exist.</summary>
    public const string UpstreamMissing = "WRIT-CA-UPSTREAM-MISSING";

    /// <summary>An upstream CA file exists but cannot be read or parsed (not PEM, encrypted key, no permission).</summary>
    public const string UpstreamUnreadable = "WRIT-CA-UPSTREAM-UNREADABLE";

    /// <summary>The upstream files parse but cannot serve: no root at the end, a broken chain, not a CA, key of another certificate.</summary>
    public const string UpstreamInvalid = "WRIT-CA-UPSTREAM-INVALID";

    /// <summary>The upstream CA certificate has expired.</summary>
    public const string UpstreamExpired = "WRIT-CA-UPSTREAM-EXPIRED";

    /// <summary>The CA journal in the store cannot be parsed.</summary>
    public const string JournalCorrupt = "WRIT-CA-JOURNAL-CORRUPT";

    /// <summary>The key manager no longer holds the key of an authority the journal names.</summary>
    public const string KeyLost = "WRIT-CA-KEY-LOST";

    /// <summary>The active authority expired without being replaced: rotation has been failing.</summary>
    public const string AuthorityExpired = "WRIT-CA-AUTHORITY-EXPIRED";

    /// <summary>
    /// Two live processes have this server's id (a copied data dir: the same CA key on two machines): both stop issuing
    /// (issue #16).
    /// </summary>
    public const string DuplicateServerId = "WRIT-CA-DUPLICATE-SERVER-ID";

    internal static CaException Upstream(string code, string message) => new(code, WritErrorKind.FailedPrecondition, message);
}
