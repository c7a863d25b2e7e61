using Google.Protobuf;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Cli.Commands;

/// <summary>
/// `writ federation create|list|show|update|delete|refresh` (issue #16): relationships with foreign trust domains,
/// each with its SPIFFE bundle endpoint (profile https_web or https_spiffe) and the bundle the server holds for it.
/// </summary>
public static class FederationCommands
{
    private static readonly OptionSpec Socket = new("admin-socket", "the server's admin socket", "PATH", EnvVar: AdminConnection.SocketEnvVar);
    private static readonly OptionSpec OutputOpt = new("output", "table (default) or json", "FORMAT");
    private static readonly OptionSpec TrustDomainOpt = new("trust-domain", "the foreign trust domain, e.g. partner.example", "TD", Required: true);
    private static readonly OptionSpec Url = new("bundle-endpoint-url", "https URL of its SPIFFE bundle endpoint, e.g. https://partner.example:8443/", "URL");
    private static readonly OptionSpec Profile = new("profile", "how the endpoint is authenticated: https_web (Web PKI) or https_spiffe (its SPIFFE ID)", "PROFILE");
    private static readonly OptionSpec EndpointId = new("endpoint-spiffe-id", "https_spiffe: the SPIFFE ID the endpoint's certificate carries, e.g. spiffe://partner.example/writ/server", "ID");
    private static readonly OptionSpec BundleFile = new("trust-bundle-file", "the foreign domain's bundle to start from (SPIFFE bundle JSON or PEM CA certificates); required for https_spiffe", "FILE");

    /// <summary>The trust bundle file cannot be read or is neither a SPIFFE bundle nor PEM certificates.</summary>
    public const string BundleFileCode = "WRIT-CLI-FEDERATION-BUNDLE-FILE";

    public static IEnumerable<CommandSpec> All() =>
    [
        new("federation create", "Federate with another trust domain: its bundle is fetched from its bundle endpoint, kept fresh, and sent to agents.",
            [TrustDomainOpt, Url with { Required = true }, Profile with { Required = true }, EndpointId, BundleFile, Socket, OutputOpt], Create),
        new("federation list", "List the federation relationships with their bundle state.", [Socket, OutputOpt], List),
        new("federation show", "Show one federation relationship and the bundle held for it.", [TrustDomainOpt, Socket, OutputOpt], Show),
        new("federation update", "Change a relationship; options not given keep their value (--trust-bundle-file replaces the stored bundle).",
            [TrustDomainOpt, Url, Profile, EndpointId, BundleFile, Socket, OutputOpt], Update),
        new("federation delete", "End a federation: the relationship and the foreign bundle are removed (agents drop it).", [TrustDomainOpt, Socket, OutputOpt], Delete),
        new("federation refresh", "Fetch the foreign bundle now instead of at its refresh hint.", [TrustDomainOpt, Socket, OutputOpt], Refresh),
    ];

    private static async Task<int> Create(ParsedArgs a, CommandContext ctx)
    {
        var request = new FederationRelationship
        {
            TrustDomain = a.Get("trust-domain")!,
            BundleEndpointUrl = a.Get("bundle-endpoint-url")!,
            Profile = a.Get("profile")!,
            EndpointSpiffeId = a.Get("endpoint-spiffe-id") ?? "",
            TrustBundleJson = ReadBundle(a),
        };
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.CreateFederationAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        Print(a, ctx, r, $"Created federation with {r.TrustDomain}");
        return 0;
    }

    private static async Task<int> List(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.ListFederationsAsync(new ListFederationsRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { relationships = r.Relationships.Select(Json).ToList() });
            return 0;
        }
        Output.Table(ctx.Out, ["TRUST DOMAIN", "PROFILE", "BUNDLE ENDPOINT", "SEQUENCE", "LAST REFRESH", "LAST ERROR"],
            r.Relationships.Select(f => (IReadOnlyList<string>)[f.TrustDomain, f.Profile, f.BundleEndpointUrl,
                f.TrustBundleJson.IsEmpty ? "-" : f.BundleSequence.ToString(System.Globalization.CultureInfo.InvariantCulture),
                f.LastRefreshUnix == 0 ? "never" : Output.Time(f.LastRefreshUnix), f.LastError.Length == 0 ? "-" : f.LastError]));
        ctx.Out.WriteLine($"{r.Relationships.Count} federation relationship(s)");
        return 0;
    }

    private static async Task<int> Show(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.GetFederationAsync(new FederationRequest { TrustDomain = a.Get("trust-domain")! }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        Print(a, ctx, r, null);
        return 0;
    }

    private static async Task<int> Update(ParsedArgs a, CommandContext ctx)
    {
        var td = a.Get("trust-domain")!;
        using var c = AdminConnection.FromArgs(a);
        var current = await c.CallAsync(s => s.GetFederationAsync(new FederationRequest { TrustDomain = td }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        var request = new FederationRelationship
        {
            TrustDomain = td,
            BundleEndpointUrl = a.Get("bundle-endpoint-url") ?? current.BundleEndpointUrl,
            Profile = a.Get("profile") ?? current.Profile,
            EndpointSpiffeId = a.Get("endpoint-spiffe-id") ?? (a.Get("profile") == "https_web" ? "" : current.EndpointSpiffeId),
            TrustBundleJson = ReadBundle(a),
        };
        var r = await c.CallAsync(s => s.UpdateFederationAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        Print(a, ctx, r, $"Updated federation with {r.TrustDomain}");
        return 0;
    }

    private static async Task<int> Delete(ParsedArgs a, CommandContext ctx)
    {
        var td = a.Get("trust-domain")!;
        using var c = AdminConnection.FromArgs(a);
        await c.CallAsync(s => s.DeleteFederationAsync(new FederationRequest { TrustDomain = td }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { deleted = td });
            return 0;
        }
        ctx.Out.WriteLine($"Deleted federation with {td}");
        return 0;
    }

    private static async Task<int> Refresh(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.RefreshFederationAsync(new FederationRequest { TrustDomain = a.Get("trust-domain")! }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        Print(a, ctx, r, r.LastError.Length == 0 ? $"Refreshed the bundle of {r.TrustDomain}" : $"Refreshing the bundle of {r.TrustDomain} failed; the stored bundle is kept");
        return r.LastError.Length == 0 ? 0 : CommandRunner.ExitFailure;
    }

    /// <summary>--trust-bundle-file as SPIFFE bundle JSON: a JSON file is sent as it is (the server checks it), PEM is converted.</summary>
    private static ByteString ReadBundle(ParsedArgs a)
    {
        if (a.Get("trust-bundle-file") is not { } file)
        {
            return ByteString.Empty;
        }
        string text;
        try
        {
            text = File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read --trust-bundle-file {file}: {e.Message.Split('\n')[0].Trim()}", code: CliErrors.File);
        }
        if (text.TrimStart().StartsWith('{'))
        {
            return ByteString.CopyFromUtf8(text);
        }
        if (!TrustDomain.TryParse(a.Get("trust-domain"), out var td, out var tdError))
        {
            throw new UsageException($"--trust-domain '{a.Get("trust-domain")}' is not a trust domain: {tdError}");
        }
        if (!TrustBundle.TryParsePem(td, text, out var bundle, out var error) || bundle.IsEmpty)
        {
            throw new CommandFailedException($"--trust-bundle-file {file} is neither a SPIFFE bundle (JSON) nor PEM CA certificates: {error ?? "no certificate in it"}", code: BundleFileCode);
        }
        return ByteString.CopyFromUtf8(bundle.ToSpiffeJson());
    }

    private static void Print(ParsedArgs a, CommandContext ctx, FederationRelationship r, string? headline)
    {
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, Json(r));
            return;
        }
        ctx.Out.WriteLine($"Trust domain:       {r.TrustDomain}");
        ctx.Out.WriteLine($"Bundle endpoint:    {r.BundleEndpointUrl}");
        ctx.Out.WriteLine($"Profile:            {r.Profile}");
        if (r.EndpointSpiffeId.Length > 0)
        {
            ctx.Out.WriteLine($"Endpoint SPIFFE ID: {r.EndpointSpiffeId}");
        }
        ctx.Out.WriteLine($"Bundle sequence:    {(r.TrustBundleJson.IsEmpty ? "none held yet" : r.BundleSequence)}");
        ctx.Out.WriteLine($"Last refresh:       {(r.LastRefreshUnix == 0 ? "never" : Output.Time(r.LastRefreshUnix))}");
        ctx.Out.WriteLine($"Next refresh:       {Output.Time(r.NextRefreshUnix)}");
        if (r.LastError.Length > 0)
        {
            ctx.Out.WriteLine($"Last error:         {r.LastError}");
        }
        if (headline is not null)
        {
            ctx.Out.WriteLine(headline);
        }
    }

    private static object Json(FederationRelationship r) => new
    {
        trust_domain = r.TrustDomain,
        bundle_endpoint_url = r.BundleEndpointUrl,
        profile = r.Profile,
        endpoint_spiffe_id = r.EndpointSpiffeId,
        bundle_sequence = r.TrustBundleJson.IsEmpty ? (long?)null : r.BundleSequence,
        bundle = r.TrustBundleJson.IsEmpty ? (System.Text.Json.JsonElement?)null : System.Text.Json.JsonDocument.Parse(r.TrustBundleJson.ToStringUtf8()).RootElement.Clone(),
        last_refresh = r.LastRefreshUnix == 0 ? null : Output.Time(r.LastRefreshUnix),
        next_refresh = Output.Time(r.NextRefreshUnix),
        last_error = r.LastError.Length == 0 ? null : r.LastError,
        created_at = Output.Time(r.CreatedAtUnix),
    };
}
