using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Writ.Protocol.RelyingParty;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;
using Writ.Spiffe.X509;

namespace Writ.Workload.Tests.Fakes;

/// <summary>
/// A fake Workload API peer for SDK tests: a real in-process Kestrel gRPC server on a real Unix socket serving the
/// SPIFFE Workload API (<c>SpiffeWorkloadAPI</c>) and Writ's relying-party API (<c>RelyingParty</c>, WatchRevocations),
/// from state the test sets. Every change is pushed on the open streams, as the agent does. Like the agent it refuses a
/// call without the <c>workload.spiffe.io: true</c> header (InvalidArgument) and answers PermissionDenied when told the
/// caller has no identity. It can be stopped and started again on the same socket (to test reconnects).
/// </summary>
public sealed class FakeWorkloadApi : IAsyncDisposable
{
    private readonly Lock _lock = new();
    private readonly string _dir;
    private WebApplication? _app;
    private CancellationTokenSource _stopping = new();
    private TaskCompletionSource _changed = NewSignal();

    // State (under _lock).
    private IReadOnlyList<X509Svid> _svids = [];
    private IReadOnlyList<string> _announcedIds = [];
    private IReadOnlyList<TrustBundle> _federated = [];
    private IReadOnlyList<byte[]> _crls = [];
    private IReadOnlyList<TrustBundle> _bundles = [];
    private string? _denied;
    private bool _relyingPartyUnimplemented;
    private IReadOnlyList<string> _revokedSerials = [];
    private IReadOnlyList<string> _revokedJtis = [];
    private long _revision;
    private int _jwtFetches;
    private int _x509Streams;
    private int _missingHeader;
    private int _calls;

    private FakeWorkloadApi(TestCa ca)
    {
        Ca = ca;
        _dir = Directory.CreateTempSubdirectory("writ-sdk-").FullName;
        SocketPath = Path.Combine(_dir, "api.sock");
        _bundles = [ca.Bundle];
    }

    /// <summary>Starts a fake serving nothing yet (streams wait for <see cref="SetX509Svids"/>); bundles: <paramref name="ca"/>'s.</summary>
    public static async Task<FakeWorkloadApi> StartAsync(TestCa ca)
    {
        var fake = new FakeWorkloadApi(ca);
        await fake.StartAgainAsync();
        return fake;
    }

    public TestCa Ca { get; }

    public string SocketPath { get; }

    /// <summary>The address in the SPIFFE form (<c>unix:///…</c>).</summary>
    public string Address => "unix://" + SocketPath;

    /// <summary>FetchJWTSVID calls answered so far.</summary>
    public int JwtFetches => Volatile.Read(ref _jwtFetches);

    /// <summary>FetchX509SVID streams opened so far.</summary>
    public int X509Streams => Volatile.Read(ref _x509Streams);

    /// <summary>Calls received so far, and how many of them lacked the security header.</summary>
    public int Calls => Volatile.Read(ref _calls);

    public int CallsWithoutHeader => Volatile.Read(ref _missingHeader);

    /// <summary>The SVIDs pushed on FetchX509SVID, with federated bundles and CRLs; <paramref name="announcedIds"/> overrides the spiffe_id fields (to send a lie).</summary>
    public void SetX509Svids(IReadOnlyList<X509Svid> svids, IReadOnlyList<TrustBundle>? federated = null, IReadOnlyList<byte[]>? crls = null,
        IReadOnlyList<string>? announcedIds = null)
    {
        lock (_lock)
        {
            _svids = svids;
            _federated = federated ?? [];
            _crls = crls ?? [];
            _announcedIds = announcedIds ?? svids.Select(s => s.Id.ToString()).ToList();
        }
        Notify();
    }

    /// <summary>The bundles served on FetchX509Bundles / FetchJWTBundles (and used by ValidateJWTSVID).</summary>
    public void SetBundles(params TrustBundle[] bundles)
    {
        lock (_lock)
        {
            _bundles = bundles;
        }
        Notify();
    }

    /// <summary>Non-null: every call is refused with PermissionDenied and this detail (the agent's "no identity issued").</summary>
    public void SetDenied(string? detail)
    {
        lock (_lock)
        {
            _denied = detail;
        }
        Notify();
    }

    /// <summary>True: the relying-party API answers Unimplemented (an agent without it).</summary>
    public void SetRelyingPartyUnimplemented(bool value) => _relyingPartyUnimplemented = value;

    /// <summary>The revocation set pushed on WatchRevocations (revision grows at each call).</summary>
    public void SetRevocations(IReadOnlyList<string> serials, IReadOnlyList<string> jtis)
    {
        lock (_lock)
        {
            _revokedSerials = serials;
            _revokedJtis = jtis;
            _revision++;
        }
        Notify();
    }

    /// <summary>Stops serving: open streams fail (Unavailable), the socket goes away.</summary>
    public async Task StopAsync()
    {
        var app = _app;
        _app = null;
        if (app is null)
        {
            return;
        }
        await _stopping.CancelAsync();
        await app.StopAsync();
        await app.DisposeAsync();
        File.Delete(SocketPath);
    }

    /// <summary>Serves (again) on the same socket path with the current state.</summary>
    public async Task StartAgainAsync()
    {
        if (_app is not null)
        {
            return;
        }
        _stopping = new CancellationTokenSource();
        File.Delete(SocketPath);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(SocketPath, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(this);
        var app = builder.Build();
        app.MapGrpcService<WorkloadService>();
        app.MapGrpcService<RelyingPartyService>();
        await app.StartAsync();
        _app = app;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stopping.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void Notify()
    {
        TaskCompletionSource old;
        lock (_lock)
        {
            old = _changed;
            _changed = NewSignal();
        }
        old.TrySetResult();
    }

    private void Check(ServerCallContext context)
    {
        Interlocked.Increment(ref _calls);
        if (context.RequestHeaders.GetValue(WorkloadApiClient.SecurityHeader) != "true")
        {
            Interlocked.Increment(ref _missingHeader);
            throw new RpcException(new Status(StatusCode.InvalidArgument, "security header missing from request"));
        }
        string? denied;
        lock (_lock)
        {
            denied = _denied;
        }
        if (denied is not null)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, denied));
        }
    }

    /// <summary>Sends the current state, then again at every change, until the caller leaves or the fake stops.</summary>
    private async Task PushAsync<T>(ServerCallContext context, IServerStreamWriter<T> writer, Func<T?> snapshot)
    {
        using var both = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, _stopping.Token);
        while (true)
        {
            Task signal;
            T? message;
            lock (_lock)
            {
                signal = _changed.Task;
                message = snapshot();
            }
            if (message is not null)
            {
                await writer.WriteAsync(message, both.Token);
            }
            try
            {
                await signal.WaitAsync(both.Token);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                throw new RpcException(new Status(StatusCode.Unavailable, "fake Workload API stopping"));
            }
            Check(context);
        }
    }

    private X509SVIDResponse? X509Snapshot()
    {
        if (_svids.Count == 0)
        {
            return null;
        }
        var r = new X509SVIDResponse();
        for (var i = 0; i < _svids.Count; i++)
        {
            var s = _svids[i];
            r.Svids.Add(new X509SVID
            {
                SpiffeId = _announcedIds[i],
                X509Svid = ByteString.CopyFrom(s.ChainDer()),
                X509SvidKey = ByteString.CopyFrom(s.PrivateKeyPkcs8()),
                Bundle = ByteString.CopyFrom(_bundles.FirstOrDefault(b => b.TrustDomain == s.Id.TrustDomain)?.X509AuthoritiesDer() ?? Ca.Certificate.RawData),
                Hint = s.Hint,
            });
        }
        foreach (var b in _federated)
        {
            r.FederatedBundles[b.TrustDomain.IdString] = ByteString.CopyFrom(b.X509AuthoritiesDer());
        }
        foreach (var crl in _crls)
        {
            r.Crl.Add(ByteString.CopyFrom(crl));
        }
        return r;
    }

    internal sealed class WorkloadService(FakeWorkloadApi fake) : SpiffeWorkloadAPI.SpiffeWorkloadAPIBase
    {
        public override Task FetchX509SVID(X509SVIDRequest request, IServerStreamWriter<X509SVIDResponse> responseStream, ServerCallContext context)
        {
            fake.Check(context);
            Interlocked.Increment(ref fake._x509Streams);
            return fake.PushAsync(context, responseStream, fake.X509Snapshot);
        }

        public override Task FetchX509Bundles(X509BundlesRequest request, IServerStreamWriter<X509BundlesResponse> responseStream, ServerCallContext context)
        {
            fake.Check(context);
            return fake.PushAsync(context, responseStream, () =>
            {
                var r = new X509BundlesResponse();
                foreach (var b in fake._bundles.Where(b => b.X509Authorities.Count > 0))
                {
                    r.Bundles[b.TrustDomain.IdString] = ByteString.CopyFrom(b.X509AuthoritiesDer());
                }
                return r;
            });
        }

        public override Task FetchJWTBundles(JWTBundlesRequest request, IServerStreamWriter<JWTBundlesResponse> responseStream, ServerCallContext context)
        {
            fake.Check(context);
            return fake.PushAsync(context, responseStream, () =>
            {
                var r = new JWTBundlesResponse();
                foreach (var b in fake._bundles)
                {
                    r.Bundles[b.TrustDomain.IdString] = ByteString.CopyFrom(Encoding.UTF8.GetBytes(b.JwksJson()));
                }
                return r;
            });
        }

        public override Task<JWTSVIDResponse> FetchJWTSVID(JWTSVIDRequest request, ServerCallContext context)
        {
            fake.Check(context);
            Interlocked.Increment(ref fake._jwtFetches);
            if (request.Audience.Count == 0)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, "audience must be specified"));
            }
            IReadOnlyList<X509Svid> svids;
            lock (fake._lock)
            {
                svids = fake._svids;
            }
            var r = new JWTSVIDResponse();
            foreach (var s in svids.Where(s => request.SpiffeId.Length == 0 || s.Id.ToString() == request.SpiffeId))
            {
                r.Svids.Add(new JWTSVID { SpiffeId = s.Id.ToString(), Svid = fake.Ca.MintJwt(s.Id, [.. request.Audience], TimeSpan.FromMinutes(10)) });
            }
            if (r.Svids.Count == 0)
            {
                throw new RpcException(new Status(StatusCode.PermissionDenied, "no identity issued"));
            }
            return Task.FromResult(r);
        }

        public override Task<ValidateJWTSVIDResponse> ValidateJWTSVID(ValidateJWTSVIDRequest request, ServerCallContext context)
        {
            fake.Check(context);
            var v = JwtSvidValidator.Validate(request.Svid, new BundleSet(fake._bundles), [request.Audience], fake.Ca.Time.GetUtcNow());
            if (!v.IsValid)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, v.Error!));
            }
            return Task.FromResult(new ValidateJWTSVIDResponse { SpiffeId = v.Svid!.Id.ToString() });
        }
    }

    internal sealed class RelyingPartyService(FakeWorkloadApi fake) : RelyingParty.RelyingPartyBase
    {
        public override Task WatchRevocations(WatchRevocationsRequest request, IServerStreamWriter<RevocationSet> responseStream, ServerCallContext context)
        {
            fake.Check(context);
            if (fake._relyingPartyUnimplemented)
            {
                throw new RpcException(new Status(StatusCode.Unimplemented, "unknown service"));
            }
            return fake.PushAsync(context, responseStream, () =>
            {
                var r = new RevocationSet { Revision = fake._revision };
                r.SerialHex.Add(fake._revokedSerials);
                r.Jti.Add(fake._revokedJtis);
                return r;
            });
        }
    }
}
