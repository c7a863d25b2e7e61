namespace Writ.Server.Storage;

/// <summary>One allowed value of one PCR: bank (sha1, sha256, sha384), index 0–23, digest as lowercase hex.</summary>
public sealed record TpmPcrReference(string Bank, int Index, string DigestHex)
{
    /// <summary>"bank:index:hex", as <c>writ tpm reference create --pcr</c> takes it and the selectors spell it.</summary>
    public override string ToString() => $"{Bank}:{Index}:{DigestHex}";
}

/// <summary>
/// A named set of PCR values the identity team registers (<c>writ tpm reference create</c>): a node satisfies it when
/// every (bank, index) the set names has one of the set's values for it (several values for one PCR are alternatives).
/// </summary>
public sealed record TpmReferenceSet(string Name, IReadOnlyList<TpmPcrReference> Pcrs, DateTimeOffset CreatedAt);

public interface ITpmReferenceSetStore
{
    /// <summary>
    /// Stores the set (PCRs normalised: distinct, ordered by bank, index, digest; CreatedAt set now) and appends
    /// <paramref name="audit"/> in the same transaction. Same name as an existing set -> <see cref="StoreConflictException"/>;
    /// an invalid set (<see cref="TpmReferenceRules.Problem"/>) -> <see cref="ArgumentException"/>. Returns the set as stored.
    /// </summary>
    Task<TpmReferenceSet> CreateAsync(TpmReferenceSet set, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);

    Task<TpmReferenceSet?> GetAsync(string name, CancellationToken ct);

    /// <summary>All sets, ordered by name.</summary>
    Task<IReadOnlyList<TpmReferenceSet>> ListAsync(CancellationToken ct);

    /// <summary>Absent -> <see cref="StoreNotFoundException"/>; <paramref name="audit"/> is appended in the same transaction.</summary>
    Task DeleteAsync(string name, CancellationToken ct, IReadOnlyList<LedgerEvent>? audit = null);
}
