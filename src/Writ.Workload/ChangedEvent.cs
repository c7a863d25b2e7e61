using Microsoft.Extensions.Logging;

namespace Writ.Workload;

/// <summary>Raises a source's Changed event so that one failing handler neither stops the others nor the stream.</summary>
internal static class ChangedEvent
{
    public static void Raise(EventHandler? handlers, object sender, ILogger logger, string source)
    {
        if (handlers is null)
        {
            return;
        }
        foreach (var h in handlers.GetInvocationList().Cast<EventHandler>())
        {
            try
            {
                h(sender, EventArgs.Empty);
            }
#pragma warning disable CA1031 // a subscriber's bug must not stop the Workload API stream
            catch (Exception e)
#pragma warning restore CA1031
            {
                SdkLog.ChangedHandlerFailed(logger, source, e);
            }
        }
    }
}
