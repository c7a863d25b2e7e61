using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Agent.Sync;
using Writ.Agent.Tests.Instances;
using Writ.Protocol.Agent;

namespace Writ.Agent.Tests.Sync;

/// <summary>The agent's server list: parsing the <c>server</c> key, and the pool's choice of server.</summary>
public sealed class ServerPoolTests
{
    [Theory]
    [InlineData("a:8081", "a:8081")]
    [InlineData("a:8081,b:8081,c:8081", "a:8081|b:8081|c:8081")]
    [InlineData(" a:8081 , B.example.org:9 ", "a:8081|b.example.org:9")]
    [InlineData("127.0.0.1:1,127.0.0.2:1", "127.0.0.1:1|127.0.0.2:1")]
    [InlineData("[::1]:8081,a:8081", "[::1]:8081|a:8081")]
    public void A_valid_list_parses_in_order(string value, string expected)
    {
        Assert.True(ServerAddress.TryParseList(value, out var servers, out var error), error);
        Assert.Equal(expected, string.Join('|', servers));
    }

    [Theory]
    [InlineData("", ServerAddress.EmptyCode)]
    [InlineData("a:8081,,b:8081", ServerAddress.EmptyCode)]
    [InlineData("a:8081,", ServerAddress.EmptyCode)]
    [InlineData("a", ServerAddress.InvalidCode)]
    [InlineData("a:0", ServerAddress.InvalidCode)]
    [InlineData("a:65536", ServerAddress.InvalidCode)]
    [InlineData("a:-1", ServerAddress.InvalidCode)]
    [InlineData("a:80x", ServerAddress.InvalidCode)]
    [InlineData("https://a:8081", ServerAddress.InvalidCode)]
    [InlineData("a:8081/path", ServerAddress.InvalidCode)]
    [InlineData("user@a:8081", ServerAddress.InvalidCode)]
    [InlineData("::1:8081", ServerAddress.InvalidCode)]
    [InlineData("[::1]", ServerAddress.InvalidCode)]
    [InlineData("a:8081,b:8081,A:8081", ServerAddress.DuplicateCode)]
    [InlineData("127.0.0.1:1, 127.0.0.1:1", ServerAddress.DuplicateCode)]
    public void A_bad_list_is_refused_with_its_code_on_one_line(string value, string code)
    {
        Assert.False(ServerAddress.TryParseList(value, out _, out var error));
        Assert.StartsWith(code + ": ", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error!);
    }

    [Fact]
    public void Agents_start_at_a_random_server_so_a_fleet_spreads()
    {
        var servers = List("10.0.0.1:1,10.0.0.2:1,10.0.0.3:1");
        var firsts = Enumerable.Range(0, 60).Select(seed =>
        {
            using var pool = new ServerPool(servers, Refused, NullLogger.Instance, new Random(seed));
            return pool.Current;
        }).ToHashSet();
        Assert.Equal(3, firsts.Count);
    }

    [Fact]
    public void A_failure_moves_to_the_next_server_once_and_a_whole_failed_round_asks_for_backoff()
    {
        using var pool = new ServerPool(List("10.0.0.1:1,10.0.0.2:1,10.0.0.3:1"), Refused, NullLogger.Instance, new FirstRandom());
        Assert.Equal("10.0.0.1:1", pool.Current);
        pool.Failed("10.0.0.1:1", "refused");
        Assert.Equal("10.0.0.2:1", pool.Current);
        pool.Failed("10.0.0.1:1", "refused");   // a second call that failed on the same server moves nothing again
        Assert.Equal("10.0.0.2:1", pool.Current);
        Assert.False(pool.RoundFailed);
        pool.Failed("10.0.0.2:1", "refused");
        Assert.False(pool.RoundFailed);
        pool.Failed("10.0.0.3:1", "refused");
        Assert.True(pool.RoundFailed);
        Assert.Equal("10.0.0.1:1", pool.Current);
        Assert.Equal(3, pool.Failovers);

        pool.Succeeded("10.0.0.2:1");   // not the current one: says nothing about it
        Assert.True(pool.RoundFailed);
        pool.Succeeded("10.0.0.1:1");
        Assert.False(pool.RoundFailed);
        Assert.Equal("10.0.0.1:1", pool.Current);
    }

    [Fact]
    public void One_server_never_switches_but_backs_off_after_each_failure()
    {
        using var pool = new ServerPool(List("10.0.0.1:1"), Refused, NullLogger.Instance);
        pool.Failed("10.0.0.1:1", "refused");
        Assert.Equal("10.0.0.1:1", pool.Current);
        Assert.True(pool.RoundFailed);
        Assert.Equal(0, pool.Failovers);
    }

    [Fact]
    public async Task A_name_with_several_addresses_counts_as_several_servers_and_is_resolved_again_after_a_failed_round()
    {
        var answers = new Queue<IPAddress[]>([[IPAddress.Parse("10.0.0.1"), IPAddress.Parse("10.0.0.2"), IPAddress.Parse("10.0.0.1")],
            [IPAddress.Parse("10.0.0.2"), IPAddress.Parse("10.0.0.3")]]);
        var asked = 0;
        using var pool = new ServerPool(List("writ.example.internal:8081,10.0.0.9:8081"), Refused, NullLogger.Instance, new FirstRandom(), host =>
        {
            Assert.Equal("writ.example.internal", host);
            Interlocked.Increment(ref asked);
            return answers.Count > 0 ? answers.Dequeue() : throw new SocketException((int)SocketError.HostNotFound);
        });
        Assert.Equal(["10.0.0.1:8081", "10.0.0.2:8081", "10.0.0.9:8081"], pool.Endpoints);
        pool.Failed("10.0.0.1:8081", "refused");
        Assert.Equal(1, asked);   // not yet: the round is not over
        pool.Failed("10.0.0.2:8081", "refused");
        pool.Failed("10.0.0.9:8081", "refused");
        await Deadline.UntilAsync(() => pool.Endpoints.Count == 3 && pool.Endpoints[0] == "10.0.0.2:8081", "the name resolved again");
        Assert.Equal(["10.0.0.2:8081", "10.0.0.3:8081", "10.0.0.9:8081"], pool.Endpoints);
        Assert.Equal(2, asked);
    }

    [Fact]
    public void A_name_that_does_not_resolve_is_kept_as_a_name()
    {
        using var pool = new ServerPool(List("nowhere.invalid:8081"), Refused, NullLogger.Instance, null,
            _ => throw new SocketException((int)SocketError.HostNotFound));
        Assert.Equal(["nowhere.invalid:8081"], pool.Endpoints);
    }

    [Fact]
    public async Task A_failed_unary_call_is_retried_once_on_the_next_server_and_no_more()
    {
        var called = new List<string>();
        using var pool = new ServerPool(List("127.0.0.1:1,127.0.0.2:1,127.0.0.3:1"), e =>
        {
            lock (called)
            {
                called.Add(e);
            }
            return Refused(e);
        }, NullLogger.Instance, new FirstRandom());
        var client = new AgentService.AgentServiceClient(pool.Invoker);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.RenewAgentAsync(new RenewAgentRequest(),
            cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Equal(["127.0.0.1:1", "127.0.0.2:1"], called);   // one retry, on the next server
        Assert.Equal("127.0.0.3:1", pool.Current);
        Assert.Equal(2, pool.Failovers);
        Assert.False(pool.RoundFailed);
    }

    [Fact]
    public void A_refusal_of_the_agent_is_not_a_server_failure()
    {
        Assert.False(ServerPool.IsServerFailure(new RpcException(new Status(StatusCode.PermissionDenied, "banned"))));
        Assert.False(ServerPool.IsServerFailure(new RpcException(new Status(StatusCode.Unauthenticated, "not attested"))));
        Assert.False(ServerPool.IsServerFailure(new RpcException(new Status(StatusCode.Cancelled, "cancelled"))));
        // SocketsHttpHandler's ConnectTimeout surfaces as Cancelled: a black-holed server is still a failed server.
        Assert.True(ServerPool.IsServerFailure(new RpcException(new Status(StatusCode.Cancelled, "cancelled",
            new TaskCanceledException("canceled", new TimeoutException("A connection could not be established within the configured ConnectTimeout."))))));
        Assert.True(ServerPool.IsServerFailure(new RpcException(new Status(StatusCode.Unavailable, "the server is stopping: reconnect"))));
        Assert.True(ServerPool.IsServerFailure(new RpcException(new Status(StatusCode.Internal, "reset", new IOException("reset")))));
        Assert.True(ServerPool.IsServerFailure(new HttpRequestException("refused", new SocketException((int)SocketError.ConnectionRefused))));
    }

    private static IReadOnlyList<ServerAddress> List(string value) =>
        ServerAddress.TryParseList(value, out var servers, out var error) ? servers : throw new ArgumentException(error);

    /// <summary>A channel to an endpoint where nothing listens (port 1 on loopback refuses at once).</summary>
    private static GrpcChannel Refused(string endpoint) => GrpcChannel.ForAddress("http://" + endpoint);

    /// <summary>Always picks the first server.</summary>
    private sealed class FirstRandom : Random
    {
        public override int Next(int maxValue) => 0;
    }
}
