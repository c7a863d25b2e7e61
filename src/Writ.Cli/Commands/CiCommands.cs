using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Core;
using Writ.Agent.Sync;
using Writ.Cli.CommandLine;
using Writ.Protocol.Ci;
using Writ.Protocol.Errors;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Cli.Commands;

/// <summary>
/// `writ ci login | jwt | logout`: a CI job with no Writ agent exchanges its platform's OIDC token for a per-job
/// X.509-SVID (key made here, only the CSR is sent) and JWT-SVIDs, mints more JWT-SVIDs over mTLS, and revokes them all
/// at logout (docs/ci.md). Nothing is written when a step fails.
/// </summary>
public static class CiCommands
{
    public const string SessionFile = "session.json";

    private static readonly OptionSpec OutputOpt = new("output", "text (default) or json", "FORMAT");

    public static IEnumerable<CommandSpec> All() =>
    [
        new("ci login", "Exchange a CI job's OIDC token for a per-job X.509-SVID and JWT-SVIDs (writes DIR/svid.pem, svid.key, bundle.pem, jwt-N.token, session.json).",
        [
            new("token-file", "file holding the job's OIDC token (e.g. written from ACTIONS_ID_TOKEN_REQUEST_URL)", "FILE"),
            new("token-env", "environment variable holding the job's OIDC token (e.g. a GitLab id_tokens variable)", "NAME"),
            new("server", "HOST:PORT of the Writ server's agent API", "HOST:PORT", Required: true),
            new("trust-bundle", "the trust domain's bundle (PEM from 'writ bundle show --format pem') to authenticate the server", "FILE", Required: true),
            new("write", "directory for the credentials (created 0700; files 0600)", "DIR", Required: true),
            new("audience", "a JWT-SVID audience (one token per --audience)", "AUD", Repeatable: true),
            new("spiffe-id", "which identity, when entries of several SPIFFE IDs match the token", "ID"),
            OutputOpt,
        ], LoginAsync),
        new("ci jwt", "Mint another JWT-SVID for a CI session (mTLS with the session's X.509-SVID); prints the token.",
        [
            new("dir", "the directory 'writ ci login --write' wrote", "DIR", Required: true),
            new("audience", "the token's audience", "AUD", Repeatable: true, Required: true),
            new("ttl", "lifetime (default: the entry's JWT TTL; never beyond the job token)", "DURATION"),
            OutputOpt,
        ], JwtAsync),
        new("ci logout", "Revoke everything issued to a CI session, end it and delete its key material.",
        [
            new("dir", "the directory 'writ ci login --write' wrote", "DIR", Required: true),
            OutputOpt,
        ], LogoutAsync),
    ];

    private static async Task<int> LoginAsync(ParsedArgs a, CommandContext ctx)
    {
        var token = ReadToken(a);
        var server = Server(a.Require("server"));
        var bundlePath = a.Require("trust-bundle");
        var (td, bundle) = LoadBundle(bundlePath);
        var dir = a.Require("write");
        var audiences = a.GetAll("audience");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new LoginRequest { Token = token, Csr = ByteString.CopyFrom(Csr.Create(key)), SpiffeId = a.Get("spiffe-id") ?? "" };
        request.Audiences.AddRange(audiences);
        LoginResponse r;
        using (var channel = ServerChannel.Create(server, td, () => bundle, () => null))
        {
            r = await CallAsync(server, () => new CiService.CiServiceClient(channel).LoginAsync(request, cancellationToken: ctx.Cancellation).ResponseAsync).ConfigureAwait(false);
        }
        var chainPem = new StringBuilder();
        foreach (var der in r.CertChain)
            chainPem.Append(PemEncoding.WriteString("CERTIFICATE", der.Span)).Append('\n');
        var keyPem = PemEncoding.WriteString("PRIVATE KEY", key.ExportPkcs8PrivateKey()) + "\n";
        using var leaf = X509CertificateLoader.LoadCertificate(r.CertChain[0].ToByteArray());
        var files = new List<(string, string, UnixFileMode)>
        {
            ("svid.key", keyPem, Output.SecretFile),
            ("svid.pem", chainPem.ToString(), Output.SecretFile),
            ("bundle.pem", r.BundlePem.ToStringUtf8(), Output.SecretFile),
        };
        var jwtFiles = new JsonArray();
        for (var i = 0; i < r.JwtSvids.Count; i++)
        {
            var name = $"jwt-{i + 1}.token";
            files.Add((name, r.JwtSvids[i].Token + "\n", Output.SecretFile));
            jwtFiles.Add(new JsonObject { ["file"] = name, ["audience"] = r.JwtSvids[i].Audience, ["expires_at"] = Output.Time(r.JwtSvids[i].ExpiresAtUnix) });
        }
        var session = new JsonObject
        {
            ["session_id"] = r.SessionId,
            ["spiffe_id"] = r.SpiffeId,
            ["serial_number"] = leaf.SerialNumber,
            ["expires_at"] = Output.Time(r.ExpiresAtUnix),
            ["server"] = server,
            ["trust_domain"] = td.Name,
            ["jwt_svids"] = jwtFiles,
        };
        files.Add((SessionFile, session.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n", Output.SecretFile));
        var full = PrivateDir(dir);
        WriteOrFail(full, files);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new
            {
                session_id = r.SessionId,
                spiffe_id = r.SpiffeId,
                serial_number = leaf.SerialNumber,
                expires_at = Output.Time(r.ExpiresAtUnix),
                decision_id = r.X509DecisionId,
                written_to = full,
            });
        }
        else
        {
            ctx.Out.WriteLine($"Logged in as {r.SpiffeId} until {Output.Time(r.ExpiresAtUnix)} (session {r.SessionId}; credentials in {full})");
        }
        return 0;
    }

    private static async Task<int> JwtAsync(ParsedArgs a, CommandContext ctx)
    {
        var s = LoadSession(a.Require("dir"));
        var request = new CiMintJwtSvidRequest { TtlSeconds = a.Get("ttl") is null ? 0 : (int)Math.Min(int.MaxValue, a.GetDuration("ttl")!.Value.TotalSeconds) };
        request.Audiences.AddRange(a.GetAll("audience"));
        CiMintJwtSvidResponse r;
        using (var channel = ServerChannel.Create(s.Server, s.TrustDomain, () => s.Bundle, () => s.Certificate))
        {
            r = await CallAsync(s.Server, () => new CiService.CiServiceClient(channel).MintJwtSvidAsync(request, cancellationToken: ctx.Cancellation).ResponseAsync).ConfigureAwait(false);
        }
        s.Certificate.Dispose();
        if (a.JsonOutput)
            Output.Json(ctx.Out, new { token = r.Svid.Token, expires_at = Output.Time(r.Svid.ExpiresAtUnix), decision_id = r.Svid.DecisionId });
        else
            ctx.Out.WriteLine(r.Svid.Token);
        return 0;
    }

    private static async Task<int> LogoutAsync(ParsedArgs a, CommandContext ctx)
    {
        var dir = Path.GetFullPath(a.Require("dir"));
        var s = LoadSession(dir);
        LogoutResponse r;
        using (var channel = ServerChannel.Create(s.Server, s.TrustDomain, () => s.Bundle, () => s.Certificate))
        {
            r = await CallAsync(s.Server, () => new CiService.CiServiceClient(channel).LogoutAsync(new LogoutRequest { SessionId = s.SessionId }, cancellationToken: ctx.Cancellation).ResponseAsync)
                .ConfigureAwait(false);
        }
        s.Certificate.Dispose();
        // The key first: once the session is revoked nothing here is of use to anyone.
        foreach (var f in new[] { "svid.key", "svid.pem", SessionFile }.Concat(Directory.EnumerateFiles(dir, "jwt-*.token").Select(Path.GetFileName).OfType<string>()))
            File.Delete(Path.Combine(dir, f));
        if (a.JsonOutput)
            Output.Json(ctx.Out, new { session_id = r.SessionId, revoked = r.Revoked });
        else
            ctx.Out.WriteLine($"Logged out of session {r.SessionId}: {r.Revoked} credential(s) revoked; key material deleted from {dir}");
        return 0;
    }

    private static string ReadToken(ParsedArgs a)
    {
        var file = a.Get("token-file");
        var env = a.Get("token-env");
        if ((file is null) == (env is null))
            throw new CommandFailedException("pass exactly one of --token-file FILE and --token-env NAME (the CI platform's OIDC token)", code: CliErrors.Usage);
        string token;
        if (file is not null)
        {
            if (!File.Exists(file))
                throw new CommandFailedException($"token file '{file}' does not exist: write the job's OIDC token there first (docs/ci.md)", code: CliErrors.File);
            token = File.ReadAllText(file).Trim();
        }
        else
        {
            token = (Environment.GetEnvironmentVariable(env!) ?? "").Trim();
            if (token.Length == 0)
                throw new CommandFailedException($"environment variable '{env}' is not set or empty: request the job's OIDC token into it (docs/ci.md)", code: CliErrors.Usage);
        }
        if (token.Length == 0)
            throw new CommandFailedException($"token file '{file}' is empty: write the job's OIDC token there first (docs/ci.md)", code: CliErrors.File);
        return token;
    }

    private static string Server(string server) =>
        Uri.TryCreate("https://" + server, UriKind.Absolute, out var u) && u.Port > 0 && u.PathAndQuery == "/"
            ? server
            : throw new CommandFailedException($"--server must be HOST:PORT of the server's agent API, got '{server}'", code: CliErrors.Usage);

    private static (TrustDomain, TrustBundle) LoadBundle(string path)
    {
        if (!File.Exists(path))
            throw new CommandFailedException($"trust bundle file '{path}' does not exist: use the output of 'writ bundle show --format pem' on the server", code: CliErrors.File);
        var certs = new X509Certificate2Collection();
        try
        {
            certs.ImportFromPem(File.ReadAllText(path));
        }
        catch (CryptographicException)
        {
            certs.Clear();
        }
        var td = certs.Select(X509Authorities.TrustDomainOf).FirstOrDefault(t => t is not null);
        foreach (var c in certs)
            c.Dispose();
        if (td is not { } trustDomain || !TrustBundle.TryParsePem(trustDomain, File.ReadAllText(path), out var bundle, out _) || bundle.X509Authorities.Count == 0)
            throw new CommandFailedException($"trust bundle file '{path}' holds no Writ CA certificate: use the output of 'writ bundle show --format pem'", code: CliErrors.File);
        return (trustDomain, bundle);
    }

    private sealed record Session(string SessionId, string Server, TrustDomain TrustDomain, TrustBundle Bundle, X509Certificate2 Certificate);

    private static Session LoadSession(string dir)
    {
        var sessionPath = Path.Combine(dir, SessionFile);
        if (!File.Exists(sessionPath) || !File.Exists(Path.Combine(dir, "svid.key")))
            throw new CommandFailedException($"'{dir}' holds no CI session ({SessionFile}, svid.key): log in first with 'writ ci login --write {dir}'", code: CliErrors.File);
        string id, server;
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(sessionPath));
            id = json?["session_id"]?.GetValue<string>() ?? "";
            server = json?["server"]?.GetValue<string>() ?? "";
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            id = server = "";
        }
        if (id.Length == 0 || server.Length == 0)
            throw new CommandFailedException($"'{sessionPath}' is not a session file of 'writ ci login': log in again", code: CliErrors.File);
        var (td, bundle) = LoadBundle(Path.Combine(dir, "bundle.pem"));
        X509Certificate2 cert;
        try
        {
            cert = X509Certificate2.CreateFromPemFile(Path.Combine(dir, "svid.pem"), Path.Combine(dir, "svid.key"));
        }
        catch (CryptographicException e)
        {
            throw new CommandFailedException($"the SVID in '{dir}' cannot be loaded ({e.Message.Split('\n')[0].Trim()}): log in again", code: CliErrors.File);
        }
        return new Session(id, Server(server), td, bundle, cert);
    }

    /// <summary>The output directory: checked as every --write is, created (or narrowed) to 0700.</summary>
    private static string PrivateDir(string dir)
    {
        var full = OutputDirectory.Prepare(dir);
        try
        {
            File.SetUnixFileMode(full, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw OutputDirectory.Failed(full, e);
        }
        return full;
    }

    private static void WriteOrFail(string dir, IReadOnlyList<(string, string, UnixFileMode)> files)
    {
        try
        {
            Output.WriteFilesAtomically(dir, files);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw OutputDirectory.Failed(dir, e);
        }
    }

    private static async Task<T> CallAsync<T>(string server, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && WritStatus.Read(e).Code is null)
        {
            throw new CommandFailedException($"cannot reach the Writ server at {server} (or it is not the server of this trust bundle): {WritStatus.OneLine(e.Status.Detail)}",
                code: CliErrors.ServerUnreachable);
        }
        catch (RpcException e)
        {
            var (code, message) = WritStatus.Read(e);
            throw new CommandFailedException(message, code: code ?? CliErrors.ServerError);
        }
    }
}
