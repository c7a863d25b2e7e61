using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Cli.CommandLine;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Cli.Commands;

/// <summary>
/// The binding options of <c>writ jwt validate</c>: <c>--bound-cert FILE</c> checks the token's cnf x5t#S256 against the
/// peer's leaf certificate with <see cref="JwtSvidVerifier"/>'s check; <c>--allow-bearer</c> accepts unbound tokens then;
/// <c>--bundle FILE --trust-domain TD</c> validates offline, without an agent.
/// </summary>
internal static class JwtBindingCli
{
    public static readonly OptionSpec[] Options =
    [
        new("bound-cert", "PEM certificate the token must be bound to (the peer's leaf, first in the file): checks cnf x5t#S256", "FILE"),
        new("allow-bearer", "with --bound-cert: accept an unbound (bearer) token too", IsFlag: true),
        new("bundle", "validate offline against this SPIFFE bundle or JWK Set file instead of asking the agent", "FILE"),
        new("trust-domain", "with --bundle: the trust domain the bundle belongs to", "TD"),
    ];

    public sealed record Binding(X509Certificate2? Certificate, string? CertificateFile, bool AllowBearer, string? BundleFile);

    public static Binding FromArgs(ParsedArgs a)
    {
        var certFile = a.Get("bound-cert");
        if (a.Flag("allow-bearer") && certFile is null)
        {
            throw new UsageException("--allow-bearer needs --bound-cert FILE: without a certificate no binding is checked");
        }
        var bundle = a.Get("bundle");
        if (a.Get("trust-domain") is not null && bundle is null)
        {
            throw new UsageException("--trust-domain goes with --bundle FILE (offline validation)");
        }
        return new Binding(certFile is null ? null : LoadLeaf(certFile), certFile, a.Flag("allow-bearer"), bundle);
    }

    private static X509Certificate2 LoadLeaf(string file)
    {
        string pem;
        try
        {
            pem = File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read --bound-cert file '{file}': {e.Message}", code: CliErrors.File);
        }
        var certs = new X509Certificate2Collection();
        try
        {
            certs.ImportFromPem(pem);
        }
        catch (CryptographicException)
        {
            certs.Clear();
        }
        if (certs.Count == 0)
        {
            throw new CommandFailedException($"--bound-cert file '{file}' holds no PEM certificate: give the peer's X.509-SVID (leaf first), e.g. svid.pem");
        }
        return certs[0];
    }

    /// <summary>After the agent validated the token: its binding against --bound-cert. Returns the parsed token.</summary>
    public static JwtSvid CheckBinding(string token, Binding binding)
    {
        if (!JwtSvidValidator.TryReadUnverified(token, out var svid, out var error))
        {
            throw new CommandFailedException($"the JWT-SVID is not valid: {error}", code: CliErrors.JwtInvalid);
        }
        if (binding.Certificate is { } cert && JwtSvidVerifier.CheckBinding(svid, JwtPeer.FromCertificate(cert), binding.AllowBearer) is { } refused)
        {
            throw new CommandFailedException(refused.Error!);
        }
        return svid;
    }

    public static string Describe(JwtSvid svid, Binding binding) => svid.IsBound
        ? binding.Certificate is null
            ? $"bound to x5t#S256 {svid.CnfX5tS256} (not checked: pass --bound-cert FILE)"
            : $"bound to the certificate in {binding.CertificateFile} (x5t#S256 {svid.CnfX5tS256})"
        : binding.Certificate is null ? "bearer token (no cnf)" : "bearer token (no cnf), accepted by --allow-bearer";

    public static int ValidateOffline(ParsedArgs a, CommandContext ctx, string token, string audience, Binding binding)
    {
        var tdText = a.Get("trust-domain") ?? throw new UsageException("--bundle needs --trust-domain TD: the trust domain whose bundle the file is");
        if (!TrustDomain.TryParse(tdText, out var td, out var tdError))
        {
            throw new UsageException($"--trust-domain: {tdError}");
        }
        string text;
        try
        {
            text = File.ReadAllText(binding.BundleFile!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read --bundle file '{binding.BundleFile}': {e.Message}", code: CliErrors.File);
        }
        // A SPIFFE bundle marks JWT authorities with use "jwt-svid"; a plain JWK Set (writ bundle fetch --format jwks) has no use.
        TrustBundle? bundle = null;
        if (TrustBundle.TryParseSpiffeJson(td, text, out var spiffe, out var spiffeError) && spiffe.JwtAuthorities.Count > 0)
        {
            bundle = spiffe;
        }
        else if (TrustBundle.TryParseJwks(td, text, out var jwks, out _) && jwks.JwtAuthorities.Count > 0)
        {
            bundle = jwks;
        }
        if (bundle is null)
        {
            throw new CommandFailedException($"--bundle file '{binding.BundleFile}' holds no JWT authority ({spiffeError ?? "no jwt-svid keys"}): use 'writ bundle show' or 'writ bundle fetch --format jwks' output");
        }
        JwtSvid svid;
        if (binding.Certificate is { } cert)
        {
            var verifier = new JwtSvidVerifier(bundle, new JwtSvidVerifierOptions
            {
                Audiences = [audience],
                AllowBearer = binding.AllowBearer,
                RequireJti = false,     // one look at one token: no replay cache to key, no deny list here
                DetectReplay = false,
            });
            var r = verifier.Verify(token, cert);
            if (!r.IsValid)
            {
                throw new CommandFailedException(r.Failure == JwtSvidVerificationFailure.Invalid ? $"the JWT-SVID is not valid: {r.Error}" : r.Error!);
            }
            svid = r.Svid!;
        }
        else
        {
            var r = JwtSvidValidator.Validate(token, bundle, [audience], DateTimeOffset.UtcNow);
            if (!r.IsValid)
            {
                throw new CommandFailedException($"the JWT-SVID is not valid: {r.Error}", code: CliErrors.JwtInvalid);
            }
            svid = r.Svid!;
        }
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { spiffe_id = svid.Id.ToString(), jti = svid.Jti, cnf_x5t_s256 = svid.CnfX5tS256, binding = Describe(svid, binding) });
        }
        else
        {
            ctx.Out.WriteLine($"valid: {svid.Id}");
            ctx.Out.WriteLine($"binding: {Describe(svid, binding)}");
        }
        return 0;
    }
}
