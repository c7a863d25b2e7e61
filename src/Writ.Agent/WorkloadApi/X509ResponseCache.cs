using Google.Protobuf;
using Writ.Agent.Cache;
using Writ.Agent.Instances;
using Writ.Agent.Sync;
using Writ.Protocol.Agent;

namespace Writ.Agent.WorkloadApi;

/// <summary>
/// The Workload API's X.509 responses, built once per instance and state and shared (the caching half of
/// <see cref="WorkloadApiService"/>, which only translates): the matched entries' SVIDs looked up in (or signed into) the
/// <see cref="SvidCache"/>, with the bundle and the server's CRLs, serialized once and reused until anything in them may
/// change (the fingerprint covers serials, bundle and CRLs, so a CRL-only change reaches open streams).
/// </summary>
internal sealed class X509ResponseCache(AgentState state, SvidCache cache, TimeProvider time)
{
    /// <summary>
    /// What one instance's X.509 streams send for one (state generation, instance generation, epoch): matched, looked
    /// up (signed if missing) and serialized once, shared by every stream of the instance and by its later one-shot
    /// fetches while it is fresh (<see cref="Fresh"/>). Keys differ per instance, so it is never shared across
    /// instances.
    /// </summary>
    internal sealed record X509View(long Epoch, IReadOnlyList<CachedX509> Svids, IReadOnlyList<Entry> Entries, IReadOnlyList<X509Denial> Denials,
        X509SVIDResponse? Response, string Fingerprint, DateTimeOffset ReuseUntil)
    {
        /// <summary>The federated bundles the SVIDs' entries federate with (the response's <c>federated_bundles</c>; SDS serves them too).</summary>
        public IReadOnlyList<Writ.Spiffe.Bundles.TrustBundle> Federated { get; init; } = [];
    }

    private sealed record X509ViewSlot(long Generation, long Own, long Epoch, Task<X509View> View);

    /// <summary>The trust bundle's DER and its hash, once per bundle object (snapshots are immutable).</summary>
    private sealed record BundleDer(ByteString Der, string Hash);

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Writ.Spiffe.Bundles.TrustBundle, BundleDer> BundleDers = [];

    private static BundleDer DerOf(Writ.Spiffe.Bundles.TrustBundle bundle) => BundleDers.GetValue(bundle, b =>
    {
        var der = b.X509AuthoritiesDer();
        return new BundleDer(ByteString.CopyFrom(der), Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(der)));
    });

    /// <summary>
    /// The view still holds at <paramref name="now"/>: same epoch, before the earliest rotation, refusal retry and entry
    /// expiry it was built with, and none of its SVIDs expired or revoked since (a revocation also moves the state
    /// generation; this is the second lock on the same door).
    /// </summary>
    private bool Fresh(X509View view, long epoch, DateTimeOffset now)
    {
        if (view.Epoch != epoch || now >= view.ReuseUntil)
        {
            return false;
        }
        foreach (var s in view.Svids)
        {
            if (s.Epoch != epoch || s.ExpiresAt <= now || state.Revocations.IsSerialRevoked(s.SerialHex))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// The instance's view for this (state generation, instance generation, epoch): shared if another stream is building
    /// or built it and it is still fresh, else built here. <paramref name="match"/> gives the instance's entries in a
    /// snapshot (and throws the reason when it has none).
    /// </summary>
    public async Task<X509View> GetAsync(WorkloadInstance instance, long generation, long own, Func<AgentSnapshot, IReadOnlyList<Entry>> match, CancellationToken ct)
    {
        while (true)
        {
            var epoch = instance.Epoch;
            var slot = Volatile.Read(ref instance.ServiceMemo) as X509ViewSlot;
            if (slot is not null && slot.Generation == generation && slot.Own == own && slot.Epoch == epoch)
            {
                if (!slot.View.IsCompleted)
                {
                    try
                    {
                        var shared = await slot.View.WaitAsync(ct).ConfigureAwait(false);
                        if (Fresh(shared, instance.Epoch, time.GetUtcNow()) || shared.Response is null)
                        {
                            return shared;
                        }
                    }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                    {
                        // The stream that built it left mid-way: build it again here.
                    }
                    continue;
                }
                if (slot.View.IsCompletedSuccessfully && Fresh(slot.View.Result, epoch, time.GetUtcNow()))
                {
                    return slot.View.Result;
                }
            }
            var tcs = new TaskCompletionSource<X509View>(TaskCreationOptions.RunContinuationsAsynchronously);
            var mine = new X509ViewSlot(generation, own, epoch, tcs.Task);
            if (!ReferenceEquals(Interlocked.CompareExchange(ref instance.ServiceMemo, mine, slot), slot))
            {
                continue;
            }
            try
            {
                var view = await BuildAsync(instance, match, ct).ConfigureAwait(false);
                tcs.TrySetResult(view);
                return view;
            }
            catch (OperationCanceledException)
            {
                tcs.TrySetCanceled(ct);
                throw;
            }
            catch (Exception e)
            {
                tcs.TrySetException(e);
                throw;
            }
        }
    }

    private async Task<X509View> BuildAsync(WorkloadInstance instance, Func<AgentSnapshot, IReadOnlyList<Entry>> match, CancellationToken ct)
    {
        var snapshot = state.Current;
        var entries = match(snapshot);
        var result = await cache.GetX509Async(instance, entries, ct).ConfigureAwait(false);
        var svids = result.Svids;
        var epoch = svids.Count > 0 ? svids[0].Epoch : instance.Epoch;
        // Reused only until the earliest moment anything in it may change on its own.
        var until = DateTimeOffset.MaxValue;
        foreach (var s in svids)
        {
            until = s.RotateAt < until ? s.RotateAt : until;
        }
        foreach (var d in result.Denials)
        {
            until = d.RetryAt < until ? d.RetryAt : until;
        }
        foreach (var e in entries)
        {
            if (e.ExpiresAtUnix > 0)
            {
                var expires = DateTimeOffset.FromUnixTimeSeconds(e.ExpiresAtUnix);
                until = expires < until ? expires : until;
            }
        }
        if (svids.Count == 0)
        {
            return new X509View(epoch, svids, entries, result.Denials, null, "", DateTimeOffset.MinValue);
        }
        var bundle = DerOf(snapshot.Bundle);
        var response = new X509SVIDResponse();
        response.Crl.AddRange(snapshot.Crls.Der);
        var fingerprint = new System.Text.StringBuilder();
        foreach (var s in svids)
        {
            response.Svids.Add(new X509SVID
            {
                SpiffeId = s.SpiffeId,
                X509Svid = s.ChainDer,
                X509SvidKey = s.KeyDer,
                Bundle = bundle.Der,
                Hint = s.Entry.Hint,
            });
            fingerprint.Append(s.SerialHex).Append(',');
        }
        fingerprint.Append('|').Append(bundle.Hash).Append('|').Append(snapshot.Crls.Hash);
        // Federation: the bundles of the domains the served SVIDs' entries federate with, keyed by trust domain ID, as
        // DER concatenated (the spec's encoding). A change to one of them changes the fingerprint, so open streams get it.
        var federated = snapshot.FederatedFor(svids.Select(s => s.Entry));
        foreach (var f in federated)
        {
            var der = DerOf(f);
            response.FederatedBundles[f.TrustDomain.IdString] = der.Der;
            fingerprint.Append('|').Append(f.TrustDomain.Name).Append('=').Append(der.Hash);
        }
        return new X509View(epoch, svids, entries, result.Denials, response, fingerprint.ToString(), until) { Federated = federated };
    }
}
