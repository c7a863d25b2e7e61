using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using Writ.Protocol.Evidence;
using Writ.Server.Ca;
using Writ.Server.Ci;
using Writ.Server.Configuration;
using Writ.Server.Hosting;
using Writ.Server.Issuance;
using Writ.Server.Keys;
using Writ.Server.Oidc;
using Writ.Server.Storage;
using Writ.Server.Tests.Ca;
using Writ.Spiffe.X509;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.Ci;

/// <summary>
/// CI logins in process: a real SQLite store and CA, the policy engine, the real OIDC validator against a real OIDC
/// issuer on loopback HTTPS (GitHub-shaped claims), and <see cref="CiLogins"/> as the CI API calls it.
/// </summary>
internal sealed class CiHarness : IAsyncDisposable
{
    public const string Audience = "https://writ.example.org";
    public const string ServerId = "spiffe://example.org/writ/server";

    private CiHarness(CaHarness ca, OidcTestIssuer issuer, ServerContext server, CiLogins logins, OidcTokenValidator validator)
    {
        _validator = validator;
        Ca = ca;
        Issuer = issuer;
        Server = server;
        Logins = logins;
    }

    private readonly OidcTokenValidator _validator;

    public CaHarness Ca { get; }
    public OidcTestIssuer Issuer { get; }
    public ServerContext Server { get; }
    public CiLogins Logins { get; }
    public IWritStore Store => Server.Store;

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<CiHarness> CreateAsync(TimeSpan? x509Ttl = null)
    {
        var now = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        var ca = await CaHarness.CreateAsync(now);
        var issuer = await OidcTestIssuer.StartAsync(ca.Dir);
        var options = new ServerOptions
        {
            TrustDomain = CaHarness.Td,
            DataDir = ca.Dir,
            Bind = new IPEndPoint(IPAddress.Loopback, 0),
            AdminSocket = Path.Combine(ca.Dir, "admin.sock"),
            StoreKind = "sqlite",
            StoreConnection = ca.DbPath,
            KeyManager = "memory",
            Ca = new CaOptions(),
            DefaultX509Ttl = x509Ttl ?? TimeSpan.FromHours(1),
            Oidc = new OidcOptions
            {
                Issuers =
                [
                    new OidcIssuerConfig { Issuer = issuer.Issuer, Audiences = [Audience], Claims = ["repository", "ref", "environment"], CaFile = issuer.CaPemPath },
                ],
            },
        };
        var writCa = await ca.StartCaAsync(options.Ca, new MemoryKeyManager());
        var server = new ServerContext(options, ca.Store, writCa, ca.Time, NullLoggerFactory.Instance);
        await server.Policy.RefreshAsync(Ct);
        await server.Revocations.EnsureCurrentAsync(-1, Ct);
        var validator = new OidcTokenValidator(ca.Time, NullLogger<OidcTokenValidator>.Instance);
        var logins = new CiLogins(server, validator, new IssuancePipeline(server, NullLogger.Instance), NullLogger.Instance);
        return new CiHarness(ca, issuer, server, logins, validator);
    }

    /// <summary>An entry parented to the server (as `writ entry create --parent-id spiffe://example.org/writ/server` makes).</summary>
    public async Task<RegistrationEntry> EntryAsync(string spiffeId, params string[] selectors)
    {
        var created = await Store.Entries.CreateAsync([new RegistrationEntry
        {
            SpiffeId = spiffeId,
            ParentId = ServerId,
            Selectors = [.. selectors.Select(s => Selector.TryParse(s, out var sel, out var e) ? sel : throw new ArgumentException(e))],
        }], Ct);
        return created[0];
    }

    public Task<RegistrationEntry> MainEntryAsync() =>
        EntryAsync("spiffe://example.org/ci/deployer", "oidc:iss:" + Issuer.Issuer, "oidc:claim:repository:org/app", "oidc:claim:ref:refs/heads/main");

    /// <summary>Claims of a GitHub Actions job token (repository, ref, environment, job_workflow_ref…).</summary>
    public JsonObject GitHubClaims(string repository = "org/app", string @ref = "refs/heads/main", TimeSpan? lifetime = null) =>
        Issuer.Claims($"repo:{repository}:ref:{@ref}", Audience, lifetime, new Dictionary<string, object?>
        {
            ["repository"] = repository,
            ["ref"] = @ref,
            ["environment"] = "prod",
            ["job_workflow_ref"] = $"{repository}/.github/workflows/deploy.yml@{@ref}",
            ["runner_environment"] = "github-hosted",
        });

    public string Token(JsonObject? claims = null) => Issuer.Mint(claims ?? GitHubClaims());

    public async Task<CiLoginResult> LoginAsync(string token, params string[] audiences)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return await Logins.LoginAsync(token, Csr.Create(key), audiences, null, "ipv4:127.0.0.1:50000", Ct);
    }

    public async Task<IReadOnlyList<LedgerEvent>> LedgerAsync(string kindPrefix) =>
        await Store.Ledger.ListAsync(0, 1000, kindPrefix, null, Ct);

    public async ValueTask DisposeAsync()
    {
        _validator.Dispose();
        await Issuer.DisposeAsync();
        await Server.Policy.DisposeAsync();
        await Ca.DisposeAsync();
    }
}
