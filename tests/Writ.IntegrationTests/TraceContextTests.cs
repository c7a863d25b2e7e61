using System.Diagnostics;
using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Core;
using Writ.Agent.Sync;
using Writ.Agent.Telemetry;
using Writ.Bench;
using Writ.Cli.Commands;
using Writ.IntegrationTests.Harness;
using Writ.Protocol.Agent;
using Writ.Server.Telemetry;

namespace Writ.IntegrationTests;

/// <summary>
/// Trace context from agent to server: a call made through the agent's server channel inside an agent activity arrives
/// with <c>traceparent</c>, and the server's activity for it (and the issuance activity under it) continues that trace.
/// Real server and agent in this process; the activities are seen with an <see cref="ActivityListener"/>.
/// </summary>
public sealed class TraceContextTests
{
    [Fact]
    public async Task The_server_continues_the_trace_of_an_agent_call()
    {
        var ct = TestContext.Current.CancellationToken;
        var seen = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is WritServerMetrics.MeterName or WritAgentMetrics.MeterName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = seen.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        using var dir = new TempDir();
        await using var writ = await InProcessWrit.StartAsync(dir.Path, BenchCommands.Host, ct);
        var ca = writ.Server.Server.Ca;
        using var channel = ServerChannel.Create(writ.Server.AgentApiAddress, writ.TrustDomain, () => ca.Bundle, () => null);
        var client = new AgentService.AgentServiceClient(channel);

        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        ActivityTraceId traceId;
        using (var agentCall = WritAgentMetrics.Activities.StartActivity("test agent call"))
        {
            Assert.NotNull(agentCall);
            traceId = agentCall.TraceId;
            // An unknown join token: refused, but the call (and its trace) reaches the server.
            var e = await Assert.ThrowsAsync<RpcException>(() => client.AttestJoinTokenAsync(
                new AttestJoinTokenRequest { Token = "not-a-token", Csr = ByteString.CopyFrom(Writ.Spiffe.X509.Csr.Create(key)) },
                cancellationToken: ct).ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        }

        // The agent's own start-up attestation (AttestAgent) is a server activity too; it is recorded when its stream ends.
        List<Activity> ServerCalls() => [.. seen.Where(a => a.Source.Name == WritServerMetrics.MeterName
            && (a.OperationName.EndsWith("/AttestJoinToken", StringComparison.Ordinal) || a.OperationName.EndsWith("/AttestAgent", StringComparison.Ordinal)))];
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!ServerCalls().Any(a => a.TraceId != traceId) && DateTime.UtcNow < until)
        {
            await Task.Delay(50, ct);
        }
        var server = ServerCalls();
        var call = Assert.Single(server, a => a.TraceId == traceId);
        // Its parent is the agent's span, or the HTTP client span .NET opens under it when HTTP diagnostics are on.
        Assert.NotEqual(default, call.ParentSpanId);
        Assert.Equal(ActivityKind.Server, call.Kind);
        // Calls without a trace context start their own trace: the agent's start-up attestation is not in this one.
        Assert.Contains(server, a => a.TraceId != traceId);
    }

    [Fact]
    public async Task The_agent_channel_puts_the_current_trace_context_on_its_requests()
    {
        using var inner = new Capture();
        using var handler = new TraceContextHandler(inner);
        using var http = new HttpMessageInvoker(handler);
        using (var none = new HttpRequestMessage(HttpMethod.Post, "https://127.0.0.1/x"))
        {
            (await http.SendAsync(none, TestContext.Current.CancellationToken)).Dispose();
        }
        Assert.False(inner.Last!.Contains("traceparent"), "a traceparent without a current activity");
        using var activity = new Activity("agent call").SetIdFormat(ActivityIdFormat.W3C).Start();
        activity.TraceStateString = "writ=1";
        using (var traced = new HttpRequestMessage(HttpMethod.Post, "https://127.0.0.1/x"))
        {
            (await http.SendAsync(traced, TestContext.Current.CancellationToken)).Dispose();
        }
        Assert.Equal(activity.Id, Assert.Single(inner.Last!.GetValues("traceparent")));
        Assert.Equal("writ=1", Assert.Single(inner.Last!.GetValues("tracestate")));
    }

    private sealed class Capture : HttpMessageHandler
    {
        public System.Net.Http.Headers.HttpRequestHeaders? Last { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Last = request.Headers;
            return Task.FromResult(new HttpResponseMessage(System.Net.HttpStatusCode.OK));
        }
    }
}
