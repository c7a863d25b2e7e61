using Microsoft.Extensions.Logging;
using Writ.Server.Ca;
using Writ.Server.Configuration;
using Writ.Server.Issuance;
using Writ.Server.Registration;
using Writ.Server.Revocation;
using Writ.Server.Storage;
using Writ.Protocol;

namespace Writ.Server.Hosting;

/// <summary>The server's parts, built once at start-up and shared by the agent and admin APIs.</summary>
public sealed class ServerContext(ServerOptions options, IWritStore store, WritCa ca, TimeProvider time, ILoggerFactory logs)
{
    public ServerOptions Options { get; } = options;
    public IWritStore Store { get; } = store;
    public WritCa Ca { get; } = ca;
    public TimeProvider Time { get; } = time;
    public ILoggerFactory Logs { get; } = logs;
    public Issuer Issuer { get; } = new(ca, options.DefaultX509Ttl, options.DefaultJwtTtl, options.MaxTtl);
    public EntryValidator Validator { get; } = new(options.TrustDomain, options.MaxTtl, time);

    /// <summary>Raised on changes the entry store does not version: bundle rotation, agent ban or eviction.</summary>
    public ChangeSignal Changes { get; } = new();

    /// <summary>Raised after this server stored a new policy version, so the issuance policy reloads at once.</summary>
    public ChangeSignal PolicyChanged { get; } = new();

    /// <summary>Revocation: what to revoke, the deny list, the CRL (issue #6).</summary>
    public RevocationService Revocations { get; } = new(store, ca, time, logs.CreateLogger<RevocationService>());
}
