using System.Diagnostics;

namespace Writ.Agent.Telemetry;

/// <summary>
/// Puts the current activity's W3C trace context (<c>traceparent</c>, <c>tracestate</c>) on every agent → server call,
/// whoever listens or not, so the server continues the agent's trace. Nothing is added when no activity is current.
/// </summary>
public sealed class TraceContextHandler(HttpMessageHandler inner) : DelegatingHandler(inner)
{
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (Activity.Current is { IdFormat: ActivityIdFormat.W3C, Id: { } id } current && !request.Headers.Contains("traceparent"))
        {
            request.Headers.TryAddWithoutValidation("traceparent", id);
            if (current.TraceStateString is { Length: > 0 } state)
            {
                request.Headers.TryAddWithoutValidation("tracestate", state);
            }
        }
        return base.SendAsync(request, cancellationToken);
    }
}
