using Microsoft.Extensions.Logging;
using Writ.Server.Keys;

namespace Writ.Server.Ca;

internal static class CaKeys
{
    /// <summary>Deletes an authority's key; a failure is logged, not thrown (a key left behind is harmless, a failed pass is not).</summary>
    public static async Task DeleteAsync(IKeyManager keys, string keyId, ILogger log, CancellationToken ct)
    {
        try
        {
            await keys.DeleteAsync(keyId, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            ServerLog.CaKeyNotDeleted(log, keyId, e.Message);
        }
    }
}
