// Quotes: an ASP.NET Core service that serves its own X.509-SVID over mTLS (rotated without a restart) and answers only
// spiffe://<its trust domain>/sample/greeter. Every request is checked again — trust bundle, SPIFFE ID, revocations the
// agent pushes — so a caller revoked while its connection is open is refused on its next request.
//
//   SPIFFE_ENDPOINT_SOCKET=unix:///run/writ/agent.sock ./Writ.Samples.Quotes [--port 8443]
using System.Net;
using System.Security.Claims;
using Writ.Spiffe;
using Writ.Workload;
using Writ.Workload.AspNetCore;
using Writ.Workload.Kestrel;

X509Source source;
try
{
    source = await X509Source.CreateAsync();
}
catch (WorkloadApiException e)
{
    Console.Error.WriteLine($"quotes has no identity: {e.Message}");
    return 1;
}
await using var _ = source;
var self = source.GetX509Svid().Id;
var greeter = SpiffeId.Parse(self.TrustDomain.IdString + "/sample/greeter");
await using var revocations = await Revocations.ConnectAsync(source);

var builder = WebApplication.CreateSlimBuilder(args);
var port = int.Parse(builder.Configuration["port"] ?? "0", System.Globalization.CultureInfo.InvariantCulture);
builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen =>
    // TLS lets in any SVID of our trust domain; the authentication scheme below says who may call (and why not, in a 401).
    listen.UseWritServerCertificate(source, source, Authorize.MemberOf(self.TrustDomain))));
builder.Services.AddAuthentication(WritAuthenticationDefaults.X509SvidScheme).AddWritX509Svid(options =>
{
    options.Bundles = source;
    options.Revocations = revocations.Source;
    options.Authorizer = Authorize.Id(greeter);
});
builder.Services.AddAuthorization();

var app = builder.Build();
app.UseAuthentication();
app.UseAuthorization();
string[] quotes = ["Simple things should be simple, complex things should be possible.", "Make it work, make it right, make it fast."];
app.MapGet("/quote", (ClaimsPrincipal caller) =>
    $"{quotes[Random.Shared.Next(quotes.Length)]} (for {caller.FindFirstValue(WritClaimTypes.SpiffeId)}, from {self})")
    .RequireAuthorization();

await app.StartAsync();
Console.WriteLine($"quotes listening on {app.Urls.First()} as {self} (revocations: {revocations.Kind})");
await app.WaitForShutdownAsync();
return 0;

/// <summary>
/// The revocations to honour: the agent's pushed revocation set (relying-party API, WatchRevocations) when the agent
/// serves it, else the CRLs of the Workload API's X.509 responses (an agent or SPIFFE implementation without Writ's API).
/// </summary>
internal sealed class Revocations : IAsyncDisposable
{
    private readonly RevocationSource? _pushed;

    private Revocations(RevocationSource? pushed, IRevocationSource source, string kind)
    {
        _pushed = pushed;
        Source = source;
        Kind = kind;
    }

    public IRevocationSource Source { get; }

    public string Kind { get; }

    public static async Task<Revocations> ConnectAsync(X509Source x509)
    {
        try
        {
            var pushed = await RevocationSource.CreateAsync(new WorkloadApiOptions { InitialTimeout = TimeSpan.FromSeconds(10) });
            return new Revocations(pushed, pushed, "pushed by the agent");
        }
        catch (WorkloadApiException e) when (e.Code == WorkloadErrors.Unsupported)
        {
            return new Revocations(null, x509, "CRL of the Workload API");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_pushed is not null)
        {
            await _pushed.DisposeAsync();
        }
    }
}
