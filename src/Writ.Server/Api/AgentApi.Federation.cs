using Google.Protobuf;
using Writ.Protocol.Agent;

namespace Writ.Server.Api;

/// <summary>Federated bundles on the agent sync stream (issue #16).</summary>
public sealed partial class AgentApi
{
    /// <summary>
    /// The foreign trust domains' bundles for a sync page when the set changed since the version this stream last sent
    /// (<paramref name="sentVersion"/>; -1 before the first update, so the first update always carries the whole set),
    /// else null. The caller attaches it with <see cref="AttachFederatedBundles"/> and remembers the version.
    /// </summary>
    private FederatedBundlesUpdate? FederatedBundlesForSync(long sentVersion)
    {
        var snapshot = server.FederatedBundles.Current;
        return snapshot.Version == sentVersion ? null : new FederatedBundlesUpdate(snapshot.Version, [.. snapshot.Bundles.Select(b => new Bundle
        {
            TrustDomain = b.TrustDomain,
            SpiffeBundleJson = ByteString.CopyFromUtf8(b.SpiffeBundleJson),
            Sequence = b.Sequence,
        })]);
    }

    /// <summary>Sets the whole federated set on the page (<c>federated_bundles_set</c>: an empty set means none any more).</summary>
    private static void AttachFederatedBundles(SyncUpdate page, FederatedBundlesUpdate? federated)
    {
        if (federated is null)
        {
            return;
        }
        page.FederatedBundlesSet = true;
        page.FederatedBundles.AddRange(federated.Bundles);
    }

    private sealed record FederatedBundlesUpdate(long Version, IReadOnlyList<Bundle> Bundles);
}
