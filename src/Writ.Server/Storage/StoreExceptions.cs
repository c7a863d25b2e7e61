namespace Writ.Server.Storage;

/// <summary>
/// A store operation failed. The message is one line, says what was wrong and what to do, and never contains
/// secrets (no passwords, no key material).
/// </summary>
public class StoreException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The write would create a duplicate (same id, or same SPIFFE ID + parent + selector set); nothing was written.</summary>
public sealed class StoreConflictException(string message) : StoreException(message);

/// <summary>The record to update or delete does not exist.</summary>
public sealed class StoreNotFoundException(string message) : StoreException(message);

/// <summary>The database cannot be used right now (unreachable, locked by another process, corrupt, too new).</summary>
public sealed class StoreUnavailableException(string message, Exception? inner = null) : StoreException(message, inner);
