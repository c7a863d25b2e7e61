using System.Security.Cryptography;
using Grpc.Core;
using Writ.Cli.CommandLine;
using Writ.Protocol.Errors;
using Writ.Cli.Workload;

namespace Writ.Cli.Commands;

/// <summary>Workload-side commands that talk to an agent's Workload API: svid fetch|watch, jwt fetch|validate, bundle fetch.</summary>
public static class WorkloadCommands
{
    private static readonly OptionSpec Socket = new("socket", $"the agent's Workload API socket (else {WorkloadClient.EndpointEnvVar}=unix:///path)", "PATH");
    private static readonly OptionSpec OutputOpt = new("output", "text (default) or json", "FORMAT");

    public static IEnumerable<CommandSpec> All() =>
    [
        new("svid fetch", "Fetch this process's X.509-SVID(s) from the agent (revoked when this command exits).",
            [new("write", "write svid.pem, svid.key (0600) and bundle.pem to this directory (atomically)", "DIR"), Socket, OutputOpt], SvidFetch),
        new("svid watch", "Print each X.509-SVID update as the agent streams it, optionally keeping files current (Ctrl-C to stop).",
            [new("write", "rewrite svid.pem, svid.key (0600) and bundle.pem in this directory on every update (atomically)", "DIR"), Socket, OutputOpt], SvidWatch),
        new("jwt fetch", "Fetch a JWT-SVID for an audience (revoked when this command exits; see --hold).",
            [new("audience", "audience (repeat for several)", "AUD", Repeatable: true, Required: true),
             new("spiffe-id", "which of this workload's identities", "ID"),
             new("hold", "after printing, keep this workload instance (and so its token) alive until stdin closes or SIGTERM/Ctrl-C", IsFlag: true),
             Socket, OutputOpt], JwtFetch),
        new("jwt validate", "Validate a JWT-SVID through the agent (or offline against a bundle file), optionally its certificate binding.",
            [new("audience", "the audience you expect", "AUD", Required: true), new("token", "the JWT-SVID", "JWT", Required: true),
             .. JwtBindingCli.Options, Socket, OutputOpt], JwtValidate),
        new("bundle fetch", "Fetch the trust bundle through the agent.", [new("format", "pem (default) or jwks", "FORMAT"), Socket], BundleFetch),
    ];

    private static async Task<int> SvidFetch(ParsedArgs a, CommandContext ctx)
    {
        if (a.Get("write") is { } target)
        {
            OutputDirectory.Prepare(target, create: false);   // refused before the agent issues anything
        }
        using var client = WorkloadClient.FromArgs(a);
        var r = await client.FetchX509Async(ctx.Cancellation).ConfigureAwait(false);
        if (a.Get("write") is { } dir)
        {
            WriteSvids(dir, r, previousCount: 0);
        }
        Print(ctx, a, r);
        return 0;
    }

    /// <summary>
    /// Writes each SVID of a response as svid.pem, svid.key and bundle.pem (further identities svid.N.*); files of
    /// identities a previous write had and this response no longer has (indices from its count up to
    /// <paramref name="previousCount"/>) are deleted, so no stale credential is left beside current ones.
    /// </summary>
    private static void WriteSvids(string dir, X509SVIDResponse r, int previousCount)
    {
        for (var i = 0; i < r.Svids.Count; i++)
        {
            var s = r.Svids[i];
            var chain = WorkloadClient.ParseCertificates(s.X509Svid.Span);
            var bundle = WorkloadClient.ParseCertificates(s.Bundle.Span);
            var suffix = Suffix(i);
            OutputDirectory.WriteFiles(dir,
            [
                ($"svid{suffix}.key", PemEncoding.WriteString("PRIVATE KEY", s.X509SvidKey.Span) + "\n", Output.SecretFile),
                ($"svid{suffix}.pem", WorkloadClient.Pem(chain), Output.PublicFile),
                ($"bundle{suffix}.pem", WorkloadClient.Pem(bundle), Output.PublicFile),
            ]);
        }
        for (var i = Math.Max(r.Svids.Count, 1); i < previousCount; i++)
        {
            foreach (var name in new[] { $"svid{Suffix(i)}.key", $"svid{Suffix(i)}.pem", $"bundle{Suffix(i)}.pem" })
            {
                File.Delete(Path.Combine(dir, name));
            }
        }
    }

    private static string Suffix(int index) => index == 0 ? "" : $".{index}";   // the first (default) identity gets the standard names

    private static void Print(CommandContext ctx, ParsedArgs a, X509SVIDResponse r)
    {
        var svids = r.Svids.Select(s =>
        {
            var chain = WorkloadClient.ParseCertificates(s.X509Svid.Span);
            return (s, chain);
        }).ToList();
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new
            {
                svids = svids.Select(x => new
                {
                    spiffe_id = x.s.SpiffeId,
                    hint = x.s.Hint,
                    serial_number = x.chain[0].SerialNumber,
                    expires_at = Output.Time(new DateTimeOffset(x.chain[0].NotAfter.ToUniversalTime())),
                    chain_pem = WorkloadClient.Pem(x.chain),
                }).ToList(),
            });
            return;
        }
        foreach (var (s, chain) in svids)
        {
            ctx.Out.WriteLine($"SPIFFE ID:  {s.SpiffeId}");
            if (s.Hint.Length > 0)
            {
                ctx.Out.WriteLine($"Hint:       {s.Hint}");
            }
            ctx.Out.WriteLine($"Serial:     {chain[0].SerialNumber}");
            ctx.Out.WriteLine($"Expires at: {Output.Time(new DateTimeOffset(chain[0].NotAfter.ToUniversalTime()))}");
            for (var i = 0; i < chain.Count; i++)
            {
                ctx.Out.WriteLine($"Chain [{i}]:  subject '{chain[i].Subject}', issuer '{chain[i].Issuer}'");
            }
            ctx.Out.WriteLine();
        }
    }

    private static async Task<int> SvidWatch(ParsedArgs a, CommandContext ctx)
    {
        var dir = a.Get("write") is { } target ? OutputDirectory.Prepare(target) : null;
        var written = 0;
        using var client = WorkloadClient.FromArgs(a);
        try
        {
            using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: ctx.Cancellation);
            while (await call.ResponseStream.MoveNext(ctx.Cancellation).ConfigureAwait(false))
            {
                var r = call.ResponseStream.Current;
                if (dir is not null)
                {
                    // This process is the workload instance the SVIDs were issued to: they stay valid while it runs.
                    WriteSvids(dir, r, written);
                    written = r.Svids.Count;
                }
                ctx.Out.WriteLine($"--- update at {Output.Time(DateTimeOffset.UtcNow)}: {r.Svids.Count} SVID(s)" + (dir is null ? "" : $", written to {dir}"));
                Print(ctx, a, r);
                ctx.Out.Flush();
            }
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled)
        {
            throw client.Translate(e);
        }
        catch (RpcException) when (ctx.Cancellation.IsCancellationRequested)
        {
        }
        return 0;
    }

    private static async Task<int> JwtFetch(ParsedArgs a, CommandContext ctx)
    {
        using var client = WorkloadClient.FromArgs(a);
        var request = new JWTSVIDRequest { SpiffeId = a.Get("spiffe-id") ?? "" };
        request.Audience.AddRange(a.GetAll("audience"));
        JWTSVIDResponse r;
        try
        {
            r = await client.Client.FetchJWTSVIDAsync(request, WorkloadClient.Headers, cancellationToken: ctx.Cancellation).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw client.Translate(e);
        }
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { svids = r.Svids.Select(s => new { spiffe_id = s.SpiffeId, token = s.Svid, hint = s.Hint }).ToList() });
        }
        else
        {
            foreach (var s in r.Svids)
            {
                ctx.Out.WriteLine(r.Svids.Count == 1 ? s.Svid : $"{s.SpiffeId} {s.Svid}");
            }
        }
        if (a.Flag("hold"))
        {
            ctx.Out.Flush();
            ctx.Error.WriteLine("holding: the token stays valid while this process runs; close stdin (Ctrl-D) or stop it (Ctrl-C, SIGTERM) and it is revoked");
            await HoldAsync(ctx).ConfigureAwait(false);
        }
        return 0;
    }

    /// <summary>
    /// Keeps this process, the workload instance the credentials were issued to, alive until standard input reaches end
    /// of file or the command is cancelled (SIGTERM, Ctrl-C). Input is read and discarded.
    /// </summary>
    private static async Task HoldAsync(CommandContext ctx)
    {
        // A blocking read on its own thread: a console stream's reads do not observe cancellation. On SIGTERM the
        // process ends with the read still pending, which is harmless.
        var eof = Task.Factory.StartNew(() =>
        {
            using var input = ctx.OpenInput();
            var buffer = new byte[512];
            while (input.Read(buffer) > 0)
            {
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var registration = ctx.Cancellation.Register(() => stopped.TrySetResult()).ConfigureAwait(false);
        await Task.WhenAny(eof, stopped.Task).ConfigureAwait(false);
    }

    private static async Task<int> JwtValidate(ParsedArgs a, CommandContext ctx)
    {
        var audience = a.Require("audience");
        var token = a.Require("token");
        var binding = JwtBindingCli.FromArgs(a);
        if (binding.BundleFile is not null)
        {
            return JwtBindingCli.ValidateOffline(a, ctx, token, audience, binding);
        }
        using var client = WorkloadClient.FromArgs(a);
        ValidateJWTSVIDResponse r;
        try
        {
            r = await client.Client.ValidateJWTSVIDAsync(new ValidateJWTSVIDRequest { Audience = audience, Svid = token },
                WorkloadClient.Headers, cancellationToken: ctx.Cancellation).ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            var (code, detail) = WritStatus.Read(e);
            throw new CommandFailedException(detail, code: code ?? CliErrors.JwtInvalid);
        }
        catch (RpcException e)
        {
            throw client.Translate(e);
        }
        // The agent checked signature, audience, expiry, revocation and replay; the binding is checked here.
        var svid = JwtBindingCli.CheckBinding(token, binding);
        if (a.JsonOutput)
        {
            using var claims = System.Text.Json.JsonDocument.Parse(Google.Protobuf.JsonFormatter.Default.Format(r.Claims));
            Output.Json(ctx.Out, new { spiffe_id = r.SpiffeId, claims = claims.RootElement, binding = JwtBindingCli.Describe(svid, binding) });
        }
        else
        {
            ctx.Out.WriteLine($"valid: {r.SpiffeId}");
            ctx.Out.WriteLine($"binding: {JwtBindingCli.Describe(svid, binding)}");
        }
        return 0;
    }

    private static async Task<int> BundleFetch(ParsedArgs a, CommandContext ctx)
    {
        var format = a.Get("format") ?? "pem";
        if (format is not ("pem" or "jwks"))
        {
            throw new UsageException($"--format must be pem or jwks, got '{format}'");
        }
        using var client = WorkloadClient.FromArgs(a);
        try
        {
            if (format == "pem")
            {
                using var call = client.Client.FetchX509Bundles(new X509BundlesRequest(), WorkloadClient.Headers, cancellationToken: ctx.Cancellation);
                if (await call.ResponseStream.MoveNext(ctx.Cancellation).ConfigureAwait(false))
                {
                    foreach (var (_, der) in call.ResponseStream.Current.Bundles)
                    {
                        ctx.Out.Write(WorkloadClient.Pem(WorkloadClient.ParseCertificates(der.Span)));
                    }
                }
            }
            else
            {
                using var call = client.Client.FetchJWTBundles(new JWTBundlesRequest(), WorkloadClient.Headers, cancellationToken: ctx.Cancellation);
                if (await call.ResponseStream.MoveNext(ctx.Cancellation).ConfigureAwait(false))
                {
                    foreach (var (_, jwks) in call.ResponseStream.Current.Bundles)
                    {
                        ctx.Out.WriteLine(jwks.ToStringUtf8());
                    }
                }
            }
        }
        catch (RpcException e)
        {
            throw client.Translate(e);
        }
        return 0;
    }
}
