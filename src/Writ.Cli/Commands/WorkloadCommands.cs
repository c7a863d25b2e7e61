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
            [new("write", "write svid.pem, svid.key (0600), bundle.pem and federated.TD.pem (each federated trust domain's bundle) to this directory (atomically)", "DIR"), Socket, OutputOpt], SvidFetch),
        new("svid watch", "Print each X.509-SVID update as the agent streams it, optionally keeping files current (Ctrl-C to stop).",
            [new("write", "rewrite svid.pem, svid.key (0600), bundle.pem and federated.TD.pem in this directory on every update (atomically)", "DIR"),
             new("crl", "with --write: also keep crl.pem (the trust domain's CRLs, current first) in DIR; a revocation is an update", IsFlag: true),
             new("on-change", "with --write: run this command (/bin/sh -c) after each update's files are in place, one run at a time", "CMD"),
             new("on-change-timeout", "kill an --on-change run that takes longer than this (default 30s)", "D"),
             Socket, OutputOpt], SvidWatch),
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
    private static void WriteSvids(string dir, X509SVIDResponse r, int previousCount, bool crl = false)
    {
        // One batch: every file is in place (each renamed atomically) before the caller goes on, e.g. to --on-change.
        var files = new List<(string Name, string Content, UnixFileMode Mode)>();
        for (var i = 0; i < r.Svids.Count; i++)
        {
            var s = r.Svids[i];
            var chain = WorkloadClient.ParseCertificates(s.X509Svid.Span);
            var bundle = WorkloadClient.ParseCertificates(s.Bundle.Span);
            var suffix = Suffix(i);
            files.Add(($"svid{suffix}.key", PemEncoding.WriteString("PRIVATE KEY", s.X509SvidKey.Span) + "\n", Output.SecretFile));
            files.Add(($"svid{suffix}.pem", WorkloadClient.Pem(chain), Output.PublicFile));
            files.Add(($"bundle{suffix}.pem", WorkloadClient.Pem(bundle), Output.PublicFile));
        }
        if (crl && r.Crl.Count > 0)
        {
            files.Add((CrlFile, string.Concat(r.Crl.Select(c => PemEncoding.WriteString("X509 CRL", c.Span) + "\n")), Output.PublicFile));
        }
        // Federation: the bundle of each foreign trust domain this workload's entries federate with, as federated.TD.pem.
        var federated = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (td, der) in Federated(r))
        {
            var name = $"{FederatedPrefix}{td}.pem";
            federated.Add(name);
            files.Add((name, WorkloadClient.Pem(WorkloadClient.ParseCertificates(der)), Output.PublicFile));
        }
        OutputDirectory.WriteFiles(dir, files);
        foreach (var stale in Directory.EnumerateFiles(dir, FederatedPrefix + "*.pem").Where(f => !federated.Contains(Path.GetFileName(f))))
        {
            File.Delete(stale);   // a domain no longer federated with: its trust must not linger beside the current files
        }
        for (var i = Math.Max(r.Svids.Count, 1); i < previousCount; i++)
        {
            foreach (var name in new[] { $"svid{Suffix(i)}.key", $"svid{Suffix(i)}.pem", $"bundle{Suffix(i)}.pem" })
            {
                File.Delete(Path.Combine(dir, name));
            }
        }
    }

    private const string FederatedPrefix = "federated.";

    /// <summary>
    /// The response's federated bundles by trust domain name (ordered); a key that is not a trust domain ID is skipped,
    /// so it can never name a file outside the directory.
    /// </summary>
    private static IEnumerable<(string TrustDomain, byte[] Der)> Federated(X509SVIDResponse r) =>
        r.FederatedBundles
            .Select(kv => (Ok: Writ.Spiffe.TrustDomain.TryParse(kv.Key, out var td, out _), td.Name, kv.Value))
            .Where(x => x.Ok && x.Name.Length > 0)
            .OrderBy(x => x.Name, StringComparer.Ordinal)
            .Select(x => (x.Name, x.Value.ToByteArray()));

    /// <summary>The CRLs of `svid watch --write DIR --crl`, PEM, the current authority's first (nginx's <c>ssl_crl</c>).</summary>
    public const string CrlFile = "crl.pem";

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
                federated_bundles = Federated(r).ToDictionary(f => "spiffe://" + f.TrustDomain, f => WorkloadClient.Pem(WorkloadClient.ParseCertificates(f.Der))),
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
        foreach (var (td, der) in Federated(r))
        {
            ctx.Out.WriteLine($"Federated:  spiffe://{td} ({WorkloadClient.ParseCertificates(der).Count} X.509 authorities)");
        }
    }

    private static async Task<int> SvidWatch(ParsedArgs a, CommandContext ctx)
    {
        var crl = a.Flag("crl");
        var onChange = a.Get("on-change");
        var timeout = a.GetDuration("on-change-timeout");
        if (a.Get("write") is null && (crl || onChange is not null))
        {
            throw new UsageException($"--{(crl ? "crl" : "on-change")} needs --write DIR: it keeps files in a directory current");
        }
        if (onChange is not null && string.IsNullOrWhiteSpace(onChange))
        {
            throw new UsageException("--on-change needs a command, e.g. --on-change \"nginx -s reload\"");
        }
        if (timeout is not null && onChange is null)
        {
            throw new UsageException("--on-change-timeout applies to --on-change: give both or neither");
        }
        if (timeout is { } t && t <= TimeSpan.Zero)
        {
            throw new UsageException($"--on-change-timeout must be positive, got '{a.Get("on-change-timeout")}'");
        }
        var dir = a.Get("write") is { } target ? WatchDirectory(target, () => OutputDirectory.Prepare(target)) : null;
        var command = onChange is null ? null : new OnChangeCommand(onChange, timeout ?? TimeSpan.FromSeconds(30), ctx.Error);
        var environment = new Dictionary<string, string>(StringComparer.Ordinal) { ["WRIT_WATCH_DIR"] = dir ?? "" };
        var written = 0;
        long updates = 0;
        var warnedNoCrl = false;
        using var client = WorkloadClient.FromArgs(a);
        // The stream is read on its own so a slow --on-change never holds it up: only the newest update waits to be
        // written (one a newer one replaced before it was written is skipped, it would be overwritten at once).
        var pending = System.Threading.Channels.Channel.CreateBounded<X509SVIDResponse>(new System.Threading.Channels.BoundedChannelOptions(1)
        {
            FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest, SingleReader = true, SingleWriter = true,
        });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ctx.Cancellation);
        var reader = ReadUpdatesAsync(client, pending.Writer, stop.Token);
        try
        {
            await foreach (var r in pending.Reader.ReadAllAsync(ctx.Cancellation).ConfigureAwait(false))
            {
                updates++;
                if (dir is not null)
                {
                    // This process is the workload instance the SVIDs were issued to: they stay valid while it runs.
                    WatchDirectory(dir, () => WriteSvids(dir, r, written, crl));
                    written = r.Svids.Count;
                    if (crl && r.Crl.Count == 0 && !warnedNoCrl)
                    {
                        ctx.Error.WriteLine($"warning: {NoCrlCode}: the agent sent no CRL, so {CrlFile} was not written; it is written with the first update that has one (an agent older than --crl never sends one)");
                        warnedNoCrl = true;
                    }
                }
                ctx.Out.WriteLine($"--- update at {Output.Time(DateTimeOffset.UtcNow)}: {r.Svids.Count} SVID(s)"
                    + (dir is null ? "" : $", written to {dir}") + (crl && r.Crl.Count > 0 ? $" with {r.Crl.Count} CRL(s)" : ""));
                Print(ctx, a, r);
                ctx.Out.Flush();
                if (command is not null)
                {
                    await command.RunAsync(updates, environment, ctx.Cancellation).ConfigureAwait(false);
                }
            }
            await reader.ConfigureAwait(false);   // the stream's end or failure
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled)
        {
            throw client.Translate(e);
        }
        catch (RpcException) when (ctx.Cancellation.IsCancellationRequested)
        {
        }
        catch (OperationCanceledException) when (ctx.Cancellation.IsCancellationRequested)
        {
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await reader.ConfigureAwait(false);
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException)
            {
                // already reported above, or the watch is stopping
            }
        }
        return 0;
    }

    public const string DirCode = "WRIT-WATCH-DIR";
    public const string NoCrlCode = "WRIT-WATCH-NO-CRL";

    /// <summary>Reads the X.509-SVID stream into <paramref name="updates"/> until it ends (then completes it) or fails.</summary>
    private static async Task ReadUpdatesAsync(WorkloadClient client, System.Threading.Channels.ChannelWriter<X509SVIDResponse> updates, CancellationToken ct)
    {
        try
        {
            using var call = client.Client.FetchX509SVID(new X509SVIDRequest(), WorkloadClient.Headers, cancellationToken: ct);
            while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
            {
                updates.TryWrite(call.ResponseStream.Current);
            }
        }
        finally
        {
            updates.TryComplete();
        }
    }

    /// <summary>A refusal of the watch directory (at start or on a later rewrite) under the watch's own code, same message.</summary>
    private static T WatchDirectory<T>(string dir, Func<T> body)
    {
        try
        {
            return body();
        }
        catch (CommandFailedException e) when (e.Code is CliErrors.File or CliErrors.OutputUnsafe)
        {
            throw new CommandFailedException(e.Message, e.ExitCode, DirCode);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException(OutputDirectory.Failed(dir, e).Message, code: DirCode);
        }
    }

    private static void WatchDirectory(string dir, Action body) => WatchDirectory(dir, () =>
    {
        body();
        return true;
    });

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
