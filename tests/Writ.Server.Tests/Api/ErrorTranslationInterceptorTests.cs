using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Admin;
using Writ.Protocol.Errors;
using Writ.Server.Api;
using Writ.Server.Registration;
using Writ.Server.Storage;

namespace Writ.Server.Tests.Api;

/// <summary>
/// The server's error interceptor, registered for one service as the server does, on a real Unix socket with a real
/// gRPC client: what a caller sees of a typed failure and of an unexpected one.
/// </summary>
public sealed class ErrorTranslationInterceptorTests : IAsyncLifetime
{
    private const string Secret = "connection string Password=hunter2 in /srv/secret";

    private readonly string _dir = Directory.CreateTempSubdirectory("writ-errors-").FullName;
    private readonly CapturingLogs _logs = new();
    private WebApplication? _app;
    private GrpcChannel? _channel;

    private AdminService.AdminServiceClient Client => new(_channel!);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        var socket = Path.Combine(_dir, "api.sock");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(_logs);
        builder.Services.AddGrpc(o => o.EnableDetailedErrors = false)
            .AddServiceOptions<ThrowingAdmin>(o => o.Interceptors.Add<ErrorTranslationInterceptor>());
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(socket, lo => lo.Protocols = HttpProtocols.Http2));
        _app = builder.Build();
        _app.MapGrpcService<ThrowingAdmin>();
        await _app.StartAsync(Ct);
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                ConnectCallback = async (_, ct) =>
                {
                    var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                },
            },
        });
    }

    public async ValueTask DisposeAsync()
    {
        _channel?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_writ_exception_reaches_the_client_with_its_status_code_trailer_and_message()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.GetEntryAsync(new GetEntryRequest { Id = "typed" }, cancellationToken: Ct));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Equal("WRIT-TEST-TYPED", e.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.Equal("WRIT-TEST-TYPED: the thing is in the wrong state: do the other thing first", e.Status.Detail);
        Assert.Equal(("WRIT-TEST-TYPED", "the thing is in the wrong state: do the other thing first"), WritStatus.Read(e));
    }

    [Theory]
    [InlineData("missing", StatusCode.NotFound, StoreNotFoundException.Code)]
    [InlineData("duplicate", StatusCode.AlreadyExists, StoreConflictException.Code)]
    [InlineData("down", StatusCode.Unavailable, StoreUnavailableException.Code)]
    [InlineData("invalid", StatusCode.InvalidArgument, WritStatus.InvalidArgumentCode)]
    public async Task Store_and_validation_errors_carry_their_codes(string id, StatusCode status, string code)
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.GetEntryAsync(new GetEntryRequest { Id = id }, cancellationToken: Ct));
        Assert.Equal(status, e.StatusCode);
        Assert.Equal(code, e.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.StartsWith(code + ": ", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_multi_line_message_reaches_the_client_on_one_line()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.GetEntryAsync(new GetEntryRequest { Id = "lines" }, cancellationToken: Ct));
        Assert.Equal("WRIT-INVALID-ARGUMENT: first line second line", e.Status.Detail);
    }

    [Fact]
    public async Task An_unexpected_exception_is_internal_with_an_error_id_and_neither_its_message_nor_its_stack()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.GetEntryAsync(new GetEntryRequest { Id = "bug" }, cancellationToken: Ct));
        Assert.Equal(StatusCode.Internal, e.StatusCode);
        Assert.Equal(WritStatus.InternalCode, e.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.Matches("^WRIT-INTERNAL: internal error [0-9a-f]{12}: the server log has the details$", e.Status.Detail);
        var all = e.Status.Detail + string.Join("\n", e.Trailers.Select(t => t.Key + "=" + t.Value));
        Assert.DoesNotContain("hunter2", all, StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", all, StringComparison.Ordinal);
        // The stack trace is in the server's log, under the id the client got.
        var errorId = e.Status.Detail.Split(' ')[3].TrimEnd(':');
        Assert.Contains(_logs.Entries, l => l.Message.Contains(errorId, StringComparison.Ordinal) && l.Exception is InvalidOperationException);
    }

    [Fact]
    public async Task A_stream_that_fails_with_a_writ_exception_ends_with_its_code_in_the_trailer()
    {
        using var call = Client.ExportAudit(new ListAuditRequest(), cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Equal(StoreNotFoundException.Code, e.Trailers.GetValue(WritStatus.TrailerKey));
        Assert.Equal("WRIT-STORE-NOT-FOUND: record 7 is gone", e.Status.Detail);
    }

    private sealed class ThrowingAdmin : AdminService.AdminServiceBase
    {
        public override Task<Protocol.Agent.Entry> GetEntry(GetEntryRequest request, ServerCallContext context) => request.Id switch
        {
            "typed" => throw new WritException("WRIT-TEST-TYPED", WritErrorKind.FailedPrecondition, "the thing is in the wrong state: do the other thing first"),
            "missing" => throw new StoreNotFoundException("entry 'missing' does not exist"),
            "duplicate" => throw new StoreConflictException("entry exists"),
            "down" => throw new StoreUnavailableException("the database is locked", new IOException(Secret)),
            "invalid" => throw new ValidationException("bad selector"),
            "lines" => throw new ValidationException("first line\nsecond line"),
            _ => throw new InvalidOperationException(Secret),
        };

        public override async Task ExportAudit(ListAuditRequest request, IServerStreamWriter<AuditEvent> responseStream, ServerCallContext context)
        {
            await Task.Yield();
            throw new StoreNotFoundException("record 7 is gone");
        }
    }

    private sealed record LogEntry(string Message, Exception? Exception);

    private sealed class CapturingLogs : ILoggerProvider, ILogger
    {
        private readonly List<LogEntry> _entries = [];

        public IReadOnlyList<LogEntry> Entries
        {
            get
            {
                lock (_entries)
                {
                    return [.. _entries];
                }
            }
        }

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_entries)
            {
                _entries.Add(new LogEntry(formatter(state, exception), exception));
            }
        }

        public void Dispose()
        {
        }
    }
}
