using Writ.Protocol.Errors;

namespace Writ.Server.Storage;

/// <summary>
/// A store operation failed. The message is one line, says what was wrong and what to do, and never contains
/// secrets (no passwords, no key material). Each kind has its stable code (docs/errors.md).
/// </summary>
public class StoreException : WritException
{
    /// <summary>The store refused the operation as given (e.g. a malformed id or page token).</summary>
    public const string RefusedCode = "WRIT-STORE-REFUSED";

    public StoreException(string message, Exception? inner = null) : this(RefusedCode, WritErrorKind.FailedPrecondition, message, inner)
    {
    }

    protected StoreException(string code, WritErrorKind kind, string message, Exception? inner) : base(code, kind, message, inner)
    {
    }
}

/// <summary>The write would create a duplicate (same id, or same SPIFFE ID + parent + selector set); nothing was written.</summary>
public sealed class StoreConflictException(string message) : StoreException(Code, WritErrorKind.AlreadyExists, message, null)
{
    public new const string Code = "WRIT-STORE-CONFLICT";
}

/// <summary>The record to update or delete does not exist.</summary>
public sealed class StoreNotFoundException(string message) : StoreException(Code, WritErrorKind.NotFound, message, null)
{
    public new const string Code = "WRIT-STORE-NOT-FOUND";
}

/// <summary>The database cannot be used right now (unreachable, locked by another process, corrupt, too new).</summary>
public sealed class StoreUnavailableException(string message, Exception? inner = null) : StoreException(Code, WritErrorKind.Unavailable, message, inner)
{
    public new const string Code = "WRIT-STORE-UNAVAILABLE";
}
