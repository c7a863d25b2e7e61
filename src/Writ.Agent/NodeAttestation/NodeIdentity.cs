using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.Sync;
using Writ.Protocol.Agent;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Agent.NodeAttestation;

/// <summary>Why the agent must stop: the server banned it, or it cannot prove itself any more.</summary>
public sealed class AgentFatalException(string message) : Exception(message)
{
    /// <summary>
    /// A stop the running agent makes too (its <c>Completion</c> reason: banned, evicted, a loop failing), met during
    /// start-up; false for a start-up problem such as a missing trust bundle. `writ agent run` exits 3 for these.
    /// </summary>
    public bool Stopped { get; init; }
}

/// <summary>
/// The agent's own identity: attests once through its node attestor (<see cref="INodeAttestorClient"/>; a join token today), keeps its SVID and key in the data dir (key 0600) so a
/// restart needs no new token, renews before half-life, and owns the gRPC channel to the server (a new channel after every
/// renewal, since a TLS connection keeps the certificate it was made with). With a continuous attestor (tpm) the key
/// lives only in memory: the agent attests on every start and renews by attesting again (its evidence is reusable), and
/// only the SVID certificate is written (for 'writ agent' tooling), so a copied data dir cannot act as the node.
/// </summary>
public sealed class NodeIdentity : IDisposable
{
    private const string SvidFile = "agent-svid.pem";
    private const string KeyFile = "agent-svid.key";
    private const string BundleFile = "bundle.json";
    private const string StateFile = "agent.json";

    private readonly AgentOptions _options;
    private readonly AgentState _state;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Lock _lock = new();
    private X509Certificate2? _svid;
    private AgentService.AgentServiceClient? _client;

    /// <param name="random">where the first server is picked from (the host passes its one source; tests pin it)</param>
    public NodeIdentity(AgentOptions options, AgentState state, TimeProvider time, ILogger log, Random? random = null)
    {
        _options = options;
        _state = state;
        _time = time;
        _log = log;
        if (!ServerAddress.TryParseList(options.ServerAddress, out var servers, out var error))
        {
            throw new AgentFatalException(error!);
        }
        Pool = new ServerPool(servers, endpoint => ServerChannel.Create(endpoint, _options.TrustDomain, () => _state.Current.Bundle, () => _svid, _time),
            log, random);
    }

    /// <summary>The servers this agent talks to (<c>server</c>): every call to a server goes through it.</summary>
    public ServerPool Pool { get; }

    public SpiffeId? AgentId { get; private set; }

    /// <summary>
    /// The node attestor this agent attests with (<c>--node-attestor</c>); null: a join token from the options. A
    /// continuous one (<see cref="IContinuousNodeAttestorClient"/>) also answers the server's rechecks.
    /// </summary>
    public INodeAttestorClient? Attestor { get; init; }

    /// <summary>Whether the session key stays in memory only (a continuous attestor: attest on start and on renewal).</summary>
    private bool KeyInMemoryOnly => Attestor is IContinuousNodeAttestorClient;

    public DateTimeOffset SvidExpiresAt => _svid is null ? DateTimeOffset.MinValue : new DateTimeOffset(_svid.NotAfter.ToUniversalTime());

    /// <summary>The client for authenticated calls, through <see cref="Pool"/> (its channels are made anew after each renewal).</summary>
    public AgentService.AgentServiceClient Client
    {
        get
        {
            lock (_lock)
            {
                return _client ?? throw new InvalidOperationException("the agent is not attested yet");
            }
        }
    }

    /// <summary>The bundle the agent trusts before its first sync: the stored one, else the operator's --trust-bundle.</summary>
    public static TrustBundle LoadBootstrapBundle(AgentOptions options)
    {
        var stored = Path.Combine(options.DataDir, BundleFile);
        if (File.Exists(stored) && TrustBundle.TryParseSpiffeJson(options.TrustDomain, File.ReadAllText(stored), out var b, out _))
        {
            return b;
        }
        if (options.TrustBundlePath is null)
        {
            throw new AgentFatalException("no trust bundle: pass --trust-bundle FILE (from 'writ bundle show' on the server) so the agent can authenticate the server");
        }
        if (!File.Exists(options.TrustBundlePath))
        {
            throw new AgentFatalException($"trust bundle file '{options.TrustBundlePath}' does not exist");
        }
        var text = File.ReadAllText(options.TrustBundlePath);
        if (text.TrimStart().StartsWith('{'))
        {
            return TrustBundle.TryParseSpiffeJson(options.TrustDomain, text, out var j, out var err)
                ? j : throw new AgentFatalException($"trust bundle file '{options.TrustBundlePath}' is not a valid SPIFFE bundle: {err}");
        }
        return TrustBundle.TryParsePem(options.TrustDomain, text, out var p, out var perr) && p.X509Authorities.Count > 0
            ? p : throw new AgentFatalException($"trust bundle file '{options.TrustBundlePath}' holds no CA certificate ({perr ?? "empty"}): use 'writ bundle show --format pem' output");
    }

    /// <summary>Resumes with the stored SVID when it is still valid, else attests with the join token.</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(_options.DataDir);
        // Only the agent may list or read its data dir; but when the Workload API socket lives in it (the default),
        // every local user must be able to reach the socket by name, so others get search (x) permission only.
        // Everything secret in it is a 0600 file.
        var mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        var dataDir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(_options.DataDir)) + Path.DirectorySeparatorChar;
        if (Path.GetFullPath(_options.SocketPath).StartsWith(dataDir, StringComparison.Ordinal))
        {
            mode |= UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        }
        File.SetUnixFileMode(_options.DataDir, mode);
        if (KeyInMemoryOnly)
        {
            // Never resume from disk: the key is not there (and a key file left by an earlier join-token life goes).
            File.Delete(Path.Combine(_options.DataDir, KeyFile));
            await AttestAsync(ct).ConfigureAwait(false);
            return;
        }
        // Any stored SVID that is still valid for a few seconds is enough to resume: the renewal loop renews it at once
        // when it is past its renewal time. (A fixed 30 s margin made every restart fail at the shortest agent TTL.)
        if (TryLoadStored(out var stored) && stored.NotAfter.ToUniversalTime() > _time.GetUtcNow().UtcDateTime.AddSeconds(5))
        {
            Adopt(stored);
            AgentLog.Resumed(_log, AgentId!.ToString(), SvidExpiresAt);
            return;
        }
        await AttestAsync(ct).ConfigureAwait(false);
    }

    private Task AttestAsync(CancellationToken ct)
    {
        if (Attestor is not null)
        {
            return AttestAsync(Attestor, ct);
        }
        var token = _options.JoinToken;
        if (string.IsNullOrWhiteSpace(token))
        {
            throw new AgentFatalException("the agent has no valid stored SVID and no join token: pass --join-token (from 'writ token generate')");
        }
        return AttestAsync(new JoinTokenAttestorClient(token), ct);
    }

    /// <summary>Node attestation over the AttestAgent stream: evidence and CSR, then the server's challenges, then the SVID.</summary>
    private async Task AttestAsync(INodeAttestorClient attestor, CancellationToken ct)
    {
        var fingerprint = attestor.SingleUseFingerprint;
        if (fingerprint is not null && ReadState()?.UsedJoinToken == fingerprint)
        {
            throw new AgentFatalException($"the configured {attestor.Description} was already used by this agent and is single-use: generate a new one with 'writ token generate'");
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = Csr.Create(key);
        attestor.UseCsr(csr);
        var evidence = await attestor.EvidenceAsync(ct).ConfigureAwait(false);
        var client = new AgentService.AgentServiceClient(Pool.Invoker);
        AttestResponse? r = null;
        // Each listed server is tried once: one that fails (unreachable, or not able to prove it is the server) hands
        // over to the next, which the pool has made current.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                r = await AttestOnceAsync(client, attestor, evidence, csr, ct).ConfigureAwait(false);
                break;
            }
            catch (RpcException e) when (ServerPool.IsServerFailure(e) && attempt < Pool.Endpoints.Count && !ct.IsCancellationRequested)
            {
                // the pool logged the switch
            }
        }
        if (r is null)
        {
            throw new AgentFatalException($"the server ended the {attestor.Description} attestation without an SVID: check that --server names a Writ server of this version");
        }
        WriteState(new StoredState(r.SpiffeId, fingerprint ?? ""));
        AdoptResponse(r, key);
        AgentLog.Attested(_log, r.SpiffeId);
    }

    /// <summary>One AttestAgent stream on the current server; null when it ended without a result.</summary>
    private static async Task<AttestResponse?> AttestOnceAsync(AgentService.AgentServiceClient client, INodeAttestorClient attestor,
        ReadOnlyMemory<byte> evidence, byte[] csr, CancellationToken ct)
    {
        AttestResponse? r = null;
        try
        {
            using var call = client.AttestAgent(cancellationToken: ct);
            await call.RequestStream.WriteAsync(new AttestAgentRequest
            {
                Params = new AttestAgentParams { AttestationType = attestor.Type, Payload = ByteString.CopyFrom(evidence.Span), Csr = ByteString.CopyFrom(csr) },
            }, ct).ConfigureAwait(false);
            while (r is null && await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
            {
                var step = call.ResponseStream.Current;
                if (step.StepCase == AttestAgentResponse.StepOneofCase.Result)
                {
                    r = step.Result;
                    break;
                }
                var answer = await attestor.AnswerAsync(step.Challenge.Memory, ct).ConfigureAwait(false);
                await call.RequestStream.WriteAsync(new AttestAgentRequest { ChallengeResponse = ByteString.CopyFrom(answer.Span) }, ct).ConfigureAwait(false);
            }
            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.PermissionDenied or StatusCode.InvalidArgument)
        {
            throw new AgentFatalException($"the server refused the {attestor.Description}: {e.Status.Detail}");
        }
        return r;
    }

    /// <summary>Renews the agent SVID for a fresh key. Fatal when the server says the agent is banned or gone.</summary>
    public async Task RenewAsync(CancellationToken ct)
    {
        if (KeyInMemoryOnly)
        {
            await AttestAsync(Attestor!, ct).ConfigureAwait(false);   // reusable evidence: a fresh attestation is the renewal
            return;
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        try
        {
            var r = await Client.RenewAgentAsync(new RenewAgentRequest { Csr = ByteString.CopyFrom(Csr.Create(key)) }, cancellationToken: ct).ConfigureAwait(false);
            AdoptResponse(r, key);
            AgentLog.Renewed(_log, _svid!.SerialNumber, SvidExpiresAt);
        }
        catch (RpcException e)
        {
            if (Classify(e) is { } fatal)
            {
                throw fatal;
            }
            throw;
        }
    }

    /// <summary>Background renewal shortly before half of the SVID's lifetime (retried with backoff on transient failures).</summary>
    public async Task RenewLoopAsync(CancellationToken ct)
    {
        var backoff = TimeSpan.FromSeconds(1);
        while (!ct.IsCancellationRequested)
        {
            var svid = _svid!;
            var nb = new DateTimeOffset(svid.NotBefore.ToUniversalTime());
            var renewAt = Writ.Agent.Cache.SvidCache.RotationTime(nb, SvidExpiresAt, _time.GetUtcNow(), Jitter.NextDouble());
            if (nb + ((SvidExpiresAt - nb) / 2) <= _time.GetUtcNow())
            {
                renewAt = _time.GetUtcNow();   // resumed past half-life: renew now
            }
            var wait = renewAt - _time.GetUtcNow();
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, _time, ct).ConfigureAwait(false);
            }
            try
            {
                await RenewAsync(ct).ConfigureAwait(false);
                backoff = TimeSpan.FromSeconds(1);
            }
            catch (RpcException e)
            {
                AgentLog.SyncLost(_log, $"renewal failed: {e.Status.Detail}", backoff);
                await Task.Delay(backoff, _time, ct).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxBackoff.Ticks));
            }
        }
    }

    /// <summary>Where the renewal time's jitter comes from (the host passes its one source; tests pin it).</summary>
    public Random Jitter { get; init; } = Random.Shared;

    /// <summary>
    /// The fatal meaning of a server refusal: banned → stop; evicted/unknown → the SVID is useless (removed from disk)
    /// and the agent must attest again, which a used join token cannot do. Null for transient errors.
    /// </summary>
    public AgentFatalException? Classify(RpcException e)
    {
        var code = Writ.Protocol.Errors.WritStatus.Read(e).Code;
        if (e.StatusCode == StatusCode.PermissionDenied && code == "WRIT-AGENT-BANNED")
        {
            return new AgentFatalException($"the server banned this agent ({AgentId}): stopped serving. An admin must evict it ('writ agent evict'), then attest with a new join token");
        }
        if (e.StatusCode == StatusCode.Unauthenticated && code == "WRIT-AGENT-NOT-ATTESTED")
        {
            ForgetStored();
            return new AgentFatalException(KeyInMemoryOnly
                ? $"the server no longer knows this agent ({AgentId}; evicted): start the agent again to attest with its {Attestor!.Description}"
                : $"the server no longer knows this agent ({AgentId}; evicted): attest again with a new join token (--join-token)");
        }
        return null;
    }

    private void AdoptResponse(AttestResponse r, ECDsa key)
    {
        var chain = r.SvidChain.Select(c => X509CertificateLoader.LoadCertificate(c.ToByteArray())).ToList();
        using var withKey = chain[0].CopyWithPrivateKey(key);
        var cert = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        if (r.Bundle is { SpiffeBundleJson.Length: > 0 } b && TrustBundle.TryParseSpiffeJson(_options.TrustDomain, b.SpiffeBundleJson.ToStringUtf8(), out var bundle, out _))
        {
            _state.SetBundle(bundle);
            PersistBundle(bundle);
        }
        Persist(chain, key);
        Adopt(cert);
    }

    private void Adopt(X509Certificate2 cert)
    {
        var v = X509SvidValidator.ValidateLeaf(cert);
        if (!v.IsValid || v.Id is null)
        {
            throw new AgentFatalException($"the agent SVID is invalid: {v.Error}");
        }
        lock (_lock)
        {
            _svid = cert;
            AgentId = v.Id;
            _client ??= new AgentService.AgentServiceClient(Pool.Invoker);
        }
        Pool.Reset();   // a TLS connection keeps the certificate it was made with
    }

    public void PersistBundle(TrustBundle bundle) =>
        WriteAtomically(BundleFile, Encoding.UTF8.GetBytes(bundle.ToSpiffeJson()), UnixFileMode.UserRead | UnixFileMode.UserWrite);

    private void Persist(IReadOnlyList<X509Certificate2> chain, ECDsa key)
    {
        var pem = string.Concat(chain.Select(c => PemEncoding.WriteString("CERTIFICATE", c.RawData) + "\n"));
        if (KeyInMemoryOnly)
        {
            WriteAtomically(SvidFile, Encoding.UTF8.GetBytes(pem), UnixFileMode.UserRead | UnixFileMode.UserWrite);
            return;
        }
        WriteAtomically(KeyFile, Encoding.UTF8.GetBytes(PemEncoding.WriteString("PRIVATE KEY", key.ExportPkcs8PrivateKey()) + "\n"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        WriteAtomically(SvidFile, Encoding.UTF8.GetBytes(pem), UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private bool TryLoadStored(out X509Certificate2 cert)
    {
        cert = null!;
        var certPath = Path.Combine(_options.DataDir, SvidFile);
        var keyPath = Path.Combine(_options.DataDir, KeyFile);
        if (!File.Exists(certPath) || !File.Exists(keyPath))
        {
            return false;
        }
        try
        {
            using var loaded = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            cert = X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null);
            return true;
        }
        catch (CryptographicException)
        {
            return false;   // unreadable: attest again if a token allows it
        }
    }

    private void ForgetStored()
    {
        File.Delete(Path.Combine(_options.DataDir, SvidFile));
        File.Delete(Path.Combine(_options.DataDir, KeyFile));
    }

    private sealed record StoredState(string SpiffeId, string UsedJoinToken);

    private StoredState? ReadState()
    {
        var path = Path.Combine(_options.DataDir, StateFile);
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<StoredState>(File.ReadAllText(path)) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private void WriteState(StoredState s) =>
        WriteAtomically(StateFile, JsonSerializer.SerializeToUtf8Bytes(s), UnixFileMode.UserRead | UnixFileMode.UserWrite);

    private void WriteAtomically(string name, byte[] content, UnixFileMode mode)
    {
        var final = Path.Combine(_options.DataDir, name);
        var tmp = final + ".tmp";
        using (var s = new FileStream(tmp, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = mode }))
        {
            s.Write(content);
            s.Flush(flushToDisk: true);
        }
        File.Move(tmp, final, overwrite: true);
    }

    public void Dispose()
    {
        Pool.Dispose();
        lock (_lock)
        {
            _svid?.Dispose();
        }
    }
}
