using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Writ.Spiffe.X509;
using Entry = Writ.Protocol.Agent.Entry;
using ProtoSelector = Writ.Protocol.Agent.Selector;
using AdminAgent = Writ.Protocol.Admin.Agent;

namespace Writ.Cli.Commands;

/// <summary>Admin commands over the server's admin socket: tokens, entries, agents, bundle, minting, health.</summary>
public static class AdminCommands
{
    private static readonly OptionSpec Socket = new("admin-socket", "the server's admin socket", "PATH", EnvVar: AdminConnection.SocketEnvVar);
    private static readonly OptionSpec OutputOpt = new("output", "table (default) or json", "FORMAT");

    private static readonly OptionSpec[] EntryFields =
    [
        new("spiffe-id", "the workload's SPIFFE ID, e.g. spiffe://example.org/web", "ID"),
        new("parent-id", "the agent ID (writ agent list) or node alias that serves it", "ID"),
        new("selector", "type:value the workload must show, e.g. unix:uid:1000", "SELECTOR", Repeatable: true),
        new("x509-ttl", "X.509-SVID lifetime, e.g. 1h (default: the server's)", "DURATION"),
        new("jwt-ttl", "JWT-SVID lifetime, e.g. 5m (default: the server's)", "DURATION"),
        new("dns", "DNS SAN for the X.509-SVID", "NAME", Repeatable: true),
        new("hint", "hint passed to workloads to pick among identities", "TEXT"),
        new("admin", "the workload may use the admin API", IsFlag: true),
        new("expires-at", "the entry expires at this RFC 3339 time", "TIME"),
        new("federates-with", "a federated trust domain whose bundle the workload gets with its SVIDs (writ federation list); repeat it; on update replaces the list", "TD", Repeatable: true),
        new("outage-pool", "keep N pre-signed X.509-SVIDs at the agent for new instances starting while no server is reachable (0 = off, the default; at most 16; needs a permit for IssuePooledX509Svid)", "N"),
    ];

    private static readonly OptionSpec AllowUnknownSelectorType = new("allow-unknown-selector-type",
        "accept selector types no built-in attestor emits (for an attestor plugin the server does not load)", IsFlag: true);

    public static IEnumerable<CommandSpec> All() =>
    [
        new("token generate", "Create a single-use join token for an agent.",
            [new("ttl", "how long the token is valid (default: the server's join_token_ttl)", "DURATION"),
             new("alias", "node alias: the agent also serves entries parented to this ID", "ID"), Socket, OutputOpt], TokenGenerate),
        new("entry create", "Create a registration entry (or many, all or nothing, from --file).",
            [.. EntryFields, new("file", "JSON file with a list of entries", "FILE"), AllowUnknownSelectorType, Socket, OutputOpt], EntryCreate),
        new("entry show", "Show one entry.", [new("id", "entry id", "ID"), Socket, OutputOpt], EntryShow, "[ID]"),
        new("entry list", "List entries, optionally filtered.",
            [new("parent-id", "only entries with this parent", "ID"), new("spiffe-id", "only entries with this SPIFFE ID", "ID"),
             new("selector", "only entries with this selector", "SELECTOR"), Socket, OutputOpt], EntryList),
        new("entry update", "Change an entry; options not given keep their value (--selector replaces all selectors).",
            [new("id", "entry id (required unless the --file entry has its id)", "ID"), .. EntryFields, new("no-admin", "clear the admin flag", IsFlag: true),
             new("file", "JSON file with the whole entry as 'entry show --output json' prints it (replaces every field)", "FILE"),
             AllowUnknownSelectorType, Socket, OutputOpt], EntryUpdate),
        new("entry delete", "Delete an entry.", [new("id", "entry id", "ID"), Socket, OutputOpt], EntryDelete, "[ID]"),
        new("agent list", "List attested agents.", [Socket, OutputOpt], AgentList),
        new("agent show", "Show one agent.", [new("spiffe-id", "agent ID", "ID"), Socket, OutputOpt], AgentShow, "[ID]"),
        new("agent ban", "Ban an agent: refused everywhere until evicted.", [new("spiffe-id", "agent ID", "ID"), Socket, OutputOpt], AgentBan, "[ID]"),
        new("agent evict", "Evict an agent: its record is deleted and it must attest again.", [new("spiffe-id", "agent ID", "ID"), Socket, OutputOpt], AgentEvict, "[ID]"),
        new("agent readmit", "Readmit a drifted agent (continuous node attestation failed): active again, rechecked at once.",
            [new("spiffe-id", "agent ID", "ID"), Socket, OutputOpt], AgentReadmit, "[ID]"),
        new("bundle show", "Print the trust bundle, or the CA-signed CRL of revoked X.509-SVIDs.",
            [new("format", "pem (default), spiffe (JWK Set) or crl (the CRL as PEM)", "FORMAT"), Socket, OutputOpt], BundleShow),
        new("x509 mint", "Mint an X.509-SVID (admin); the key is made here and never leaves this machine.",
            [new("spiffe-id", "the SVID's SPIFFE ID", "ID", Required: true), new("ttl", "lifetime, e.g. 1h", "DURATION"),
             new("dns", "DNS SAN", "NAME", Repeatable: true), new("write", "write svid.pem, svid.key, bundle.pem to this directory", "DIR"), Socket, OutputOpt], X509Mint),
        new("jwt mint", "Mint a JWT-SVID (admin).",
            [new("spiffe-id", "the token's subject", "ID", Required: true), new("audience", "audience (repeat for several)", "AUD", Repeatable: true, Required: true),
             new("ttl", "lifetime, e.g. 5m", "DURATION"), Socket, OutputOpt], JwtMint),
        new("healthcheck", "Check that the server is live and ready.", [Socket, OutputOpt, new("shallow", "only check that the socket answers", IsFlag: true)], Healthcheck),
    ];

    private static async Task<int> TokenGenerate(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.CreateJoinTokenAsync(new CreateJoinTokenRequest
        {
            TtlSeconds = Seconds(a.GetDuration("ttl")),
            Alias = a.Get("alias") ?? "",
        }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { token = r.Token, token_id = r.TokenId, agent_spiffe_id = r.AgentSpiffeId, expires_at = Output.Time(r.ExpiresAtUnix) });
        }
        else
        {
            ctx.Out.WriteLine($"Token:      {r.Token}");
            ctx.Out.WriteLine($"Agent ID:   {r.AgentSpiffeId}");
            ctx.Out.WriteLine($"Expires at: {Output.Time(r.ExpiresAtUnix)} (single use)");
        }
        return 0;
    }

    private static async Task<int> EntryCreate(ParsedArgs a, CommandContext ctx)
    {
        var request = new CreateEntriesRequest { AllowUnknownSelectorType = a.Flag(AllowUnknownSelectorType.Name) };
        if (a.Get("file") is { } file)
        {
            if (EntryFields.Any(f => a.Has(f.Name)))
            {
                throw new UsageException("give either --file or the entry options (--spiffe-id, --parent-id, --selector ...), not both");
            }
            request.Entries.AddRange(EntryFile.Read(file));
        }
        else
        {
            var e = new Entry
            {
                SpiffeId = a.Get("spiffe-id") ?? throw new UsageException("'writ entry create' needs --spiffe-id ID (or --file FILE)"),
                ParentId = a.Get("parent-id") ?? throw new UsageException("'writ entry create' needs --parent-id ID: the agent (writ agent list) or node alias that serves it"),
            };
            ApplyFields(a, e);
            request.Entries.Add(e);
        }
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.CreateEntriesAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        PrintEntries(a, ctx, r.Entries, detailed: r.Entries.Count == 1);
        return 0;
    }

    private static async Task<int> EntryShow(ParsedArgs a, CommandContext ctx)
    {
        var id = IdArg(a, "id", "entry id");
        using var c = AdminConnection.FromArgs(a);
        var e = await c.CallAsync(s => s.GetEntryAsync(new GetEntryRequest { Id = id }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        PrintEntries(a, ctx, [e], detailed: true);
        return 0;
    }

    private static async Task<int> EntryList(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var all = new List<Entry>();
        var token = "";
        do
        {
            var page = await c.CallAsync(s => s.ListEntriesAsync(new ListEntriesRequest
            {
                ParentId = a.Get("parent-id") ?? "",
                SpiffeId = a.Get("spiffe-id") ?? "",
                Selector = a.Get("selector") ?? "",
                PageSize = 1000,
                PageToken = token,
            }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
            all.AddRange(page.Entries);
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        PrintEntries(a, ctx, all, detailed: false);
        return 0;
    }

    private static async Task<int> EntryUpdate(ParsedArgs a, CommandContext ctx)
    {
        if (a.Get("file") is { } file)
        {
            return await EntryUpdateFromFile(a, ctx, file).ConfigureAwait(false);
        }
        var id = a.Get("id") ?? throw new UsageException("'writ entry update' needs --id ID (or --file FILE)");
        using var c = AdminConnection.FromArgs(a);
        var e = await c.CallAsync(s => s.GetEntryAsync(new GetEntryRequest { Id = id }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.Get("spiffe-id") is { } sid)
        {
            e.SpiffeId = sid;
        }
        if (a.Get("parent-id") is { } pid)
        {
            e.ParentId = pid;
        }
        ApplyFields(a, e);
        if (a.Flag("no-admin"))
        {
            e.Admin = false;
        }
        var updated = await c.CallAsync(s => s.UpdateEntryAsync(Update(a, e), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        PrintEntries(a, ctx, [updated], detailed: true);
        return 0;
    }

    private static UpdateEntryRequest Update(ParsedArgs a, Entry e) =>
        new() { Entry = e, AllowUnknownSelectorType = a.Flag(AllowUnknownSelectorType.Name) };

    /// <summary>
    /// `entry update --file`: the file's one entry replaces the stored one whole (edit what `entry show --output json`
    /// printed). One entry per call, so an update is never applied halfway.
    /// </summary>
    private static async Task<int> EntryUpdateFromFile(ParsedArgs a, CommandContext ctx, string file)
    {
        if (EntryFields.Any(f => a.Has(f.Name)) || a.Has("no-admin"))
        {
            throw new UsageException("give either --file or the entry options (--spiffe-id, --selector ...), not both");
        }
        var entries = EntryFile.Read(file);
        if (entries.Count != 1)
        {
            throw new UsageException($"entry file '{file}' holds {entries.Count} entries; 'writ entry update --file' takes one (update them one by one)");
        }
        var e = entries[0];
        if (a.Get("id") is { } id)
        {
            if (e.Id.Length > 0 && e.Id != id)
            {
                throw new UsageException($"--id {id} and the file's id {e.Id} differ; give one of them");
            }
            e.Id = id;
        }
        if (e.Id.Length == 0)
        {
            throw new UsageException($"entry file '{file}' has no \"id\": add it, or pass --id ID");
        }
        using var c = AdminConnection.FromArgs(a);
        var updated = await c.CallAsync(s => s.UpdateEntryAsync(Update(a, e), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        PrintEntries(a, ctx, [updated], detailed: true);
        return 0;
    }

    private static async Task<int> EntryDelete(ParsedArgs a, CommandContext ctx)
    {
        var id = IdArg(a, "id", "entry id");
        using var c = AdminConnection.FromArgs(a);
        await c.CallAsync(s => s.DeleteEntryAsync(new DeleteEntryRequest { Id = id }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { deleted = id });
        }
        else
        {
            ctx.Out.WriteLine($"Deleted entry {id}");
        }
        return 0;
    }

    /// <summary>Applies the entry options that were given; those not given keep the entry's value.</summary>
    private static void ApplyFields(ParsedArgs a, Entry e)
    {
        if (a.Has("selector"))
        {
            e.Selectors.Clear();
            foreach (var s in a.GetAll("selector"))
            {
                e.Selectors.Add(ParseSelector(s));
            }
        }
        if (a.GetDuration("x509-ttl") is { } x)
        {
            e.X509TtlSeconds = Seconds(x);
        }
        if (a.GetDuration("jwt-ttl") is { } j)
        {
            e.JwtTtlSeconds = Seconds(j);
        }
        if (a.Has("dns"))
        {
            e.DnsNames.Clear();
            e.DnsNames.AddRange(a.GetAll("dns"));
        }
        if (a.Get("hint") is { } h)
        {
            e.Hint = h;
        }
        if (a.Flag("admin"))
        {
            e.Admin = true;
        }
        if (a.Get("expires-at") is { } exp)
        {
            e.ExpiresAtUnix = ParseTime(exp, "--expires-at");
        }
        if (a.Has("federates-with"))
        {
            e.FederatesWith.Clear();
            e.FederatesWith.AddRange(a.GetAll("federates-with").Where(td => td.Length > 0));
        }
        if (a.GetInt("outage-pool") is { } pool)
        {
            e.OutagePool = pool;
        }
    }

    /// <summary>A selector as the user wrote it (<c>type:value</c>), checked by the one selector rule before it is sent.</summary>
    public static ProtoSelector ParseSelector(string s) =>
        Writ.Protocol.Evidence.Selector.TryParse(s, out var selector, out var error)
            ? Writ.Protocol.Evidence.EvidenceProto.ToProto(selector)
            : throw new UsageException($"{Writ.Protocol.Evidence.Selector.InvalidCode}: selector '{s}' is invalid: {error}");

    public static long ParseTime(string text, string what) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
            ? t.ToUnixTimeSeconds()
            : throw new UsageException($"{what} must be an RFC 3339 time such as 2027-01-31T12:00:00Z, got '{text}'");

    private static void PrintEntries(ParsedArgs a, CommandContext ctx, IReadOnlyList<Entry> entries, bool detailed)
    {
        if (a.JsonOutput)
        {
            var list = entries.Select(EntryFile.ToJson).ToList();
            Output.Json(ctx.Out, detailed && entries.Count == 1 ? list[0] : new { entries = list });
            return;
        }
        if (detailed)
        {
            foreach (var e in entries)
            {
                ctx.Out.WriteLine($"Entry ID:   {e.Id}");
                ctx.Out.WriteLine($"SPIFFE ID:  {e.SpiffeId}");
                ctx.Out.WriteLine($"Parent ID:  {e.ParentId}");
                foreach (var s in e.Selectors)
                {
                    ctx.Out.WriteLine($"Selector:   {s.Type}:{s.Value}");
                }
                ctx.Out.WriteLine($"X509 TTL:   {TtlText(e.X509TtlSeconds)}");
                ctx.Out.WriteLine($"JWT TTL:    {TtlText(e.JwtTtlSeconds)}");
                foreach (var d in e.DnsNames)
                {
                    ctx.Out.WriteLine($"DNS name:   {d}");
                }
                if (e.Hint.Length > 0)
                {
                    ctx.Out.WriteLine($"Hint:       {e.Hint}");
                }
                foreach (var td in e.FederatesWith)
                {
                    ctx.Out.WriteLine($"Federates:  {td}");
                }
                if (e.OutagePool > 0)
                {
                    ctx.Out.WriteLine($"Outage pool: {e.OutagePool} pre-signed X.509-SVIDs");
                }
                ctx.Out.WriteLine($"Admin:      {(e.Admin ? "yes" : "no")}");
                ctx.Out.WriteLine($"Expires at: {Output.Time(e.ExpiresAtUnix)}");
                ctx.Out.WriteLine($"Revision:   {e.Revision}");
            }
            return;
        }
        Output.Table(ctx.Out, ["ENTRY ID", "SPIFFE ID", "PARENT ID", "SELECTORS"],
            entries.Select(e => (IReadOnlyList<string>)[e.Id, e.SpiffeId, e.ParentId, string.Join(",", e.Selectors.Select(s => $"{s.Type}:{s.Value}"))]));
        ctx.Out.WriteLine($"{entries.Count} entr{(entries.Count == 1 ? "y" : "ies")}");
    }

    private static string TtlText(int s) => s == 0 ? "server default" : $"{s}s";

    private static async Task<int> AgentList(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.ListAgentsAsync(new ListAgentsRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { agents = r.Agents.Select(AgentJson).ToList() });
            return 0;
        }
        Output.Table(ctx.Out, ["SPIFFE ID", "ATTESTATION", "SVID SERIAL", "EXPIRES AT", "BANNED", "STATUS"],
            r.Agents.Select(x => (IReadOnlyList<string>)[x.SpiffeId, x.AttestationType, x.SerialNumber, Output.Time(x.ExpiresAtUnix), x.Banned ? "yes" : "no", Status(x)]));
        ctx.Out.WriteLine($"{r.Agents.Count} agent(s)");
        return 0;
    }

    private static async Task<int> AgentShow(ParsedArgs a, CommandContext ctx) =>
        await AgentCall(a, ctx, (s, req) => s.GetAgentAsync(req, cancellationToken: ctx.Cancellation), null).ConfigureAwait(false);

    private static async Task<int> AgentBan(ParsedArgs a, CommandContext ctx) =>
        await AgentCall(a, ctx, (s, req) => s.BanAgentAsync(req, cancellationToken: ctx.Cancellation), "Banned").ConfigureAwait(false);

    private static async Task<int> AgentReadmit(ParsedArgs a, CommandContext ctx) =>
        await AgentCall(a, ctx, (s, req) => s.ReadmitAgentAsync(req, cancellationToken: ctx.Cancellation), "Readmitted").ConfigureAwait(false);

    /// <summary>active or drifted (a server from before continuous attestation sends nothing: active).</summary>
    private static string Status(AdminAgent x) => x.Status.Length == 0 ? "active" : x.Status;

    private static async Task<int> AgentCall(ParsedArgs a, CommandContext ctx,
        Func<AdminService.AdminServiceClient, AgentIdRequest, Grpc.Core.AsyncUnaryCall<AdminAgent>> call, string? verb)
    {
        var id = IdArg(a, "spiffe-id", "agent SPIFFE ID");
        using var c = AdminConnection.FromArgs(a);
        var agent = await c.CallAsync(s => call(s, new AgentIdRequest { SpiffeId = id })).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, AgentJson(agent));
            return 0;
        }
        if (verb is not null)
        {
            ctx.Out.WriteLine($"{verb} agent {agent.SpiffeId}");
        }
        ctx.Out.WriteLine($"SPIFFE ID:    {agent.SpiffeId}");
        ctx.Out.WriteLine($"Attestation:  {agent.AttestationType}");
        ctx.Out.WriteLine($"SVID serial:  {agent.SerialNumber}");
        ctx.Out.WriteLine($"Expires at:   {Output.Time(agent.ExpiresAtUnix)}");
        ctx.Out.WriteLine($"Banned:       {(agent.Banned ? "yes" : "no")}");
        ctx.Out.WriteLine($"Status:       {Status(agent)}");
        if (agent.StatusReason.Length > 0)
        {
            ctx.Out.WriteLine($"Drift:        {agent.StatusReason}");
        }
        foreach (var s in agent.Selectors)
        {
            ctx.Out.WriteLine($"Selector:     {s.Type}:{s.Value}");
        }
        return 0;
    }

    private static async Task<int> AgentEvict(ParsedArgs a, CommandContext ctx)
    {
        var id = IdArg(a, "spiffe-id", "agent SPIFFE ID");
        using var c = AdminConnection.FromArgs(a);
        await c.CallAsync(s => s.EvictAgentAsync(new AgentIdRequest { SpiffeId = id }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { evicted = id });
        }
        else
        {
            ctx.Out.WriteLine($"Evicted agent {id}: it must attest again with a new join token");
        }
        return 0;
    }

    private static object AgentJson(AdminAgent x) => new
    {
        spiffe_id = x.SpiffeId,
        attestation_type = x.AttestationType,
        serial_number = x.SerialNumber,
        expires_at = Output.Time(x.ExpiresAtUnix),
        banned = x.Banned,
        status = Status(x),
        status_reason = x.StatusReason.Length == 0 ? null : x.StatusReason,
        selectors = x.Selectors.Select(s => $"{s.Type}:{s.Value}").ToList(),
        created_at = Output.Time(x.CreatedAtUnix),
    };

    private static async Task<int> BundleShow(ParsedArgs a, CommandContext ctx)
    {
        var format = a.Get("format") ?? "pem";
        if (format is not ("pem" or "spiffe" or "crl"))
        {
            throw new UsageException($"--format must be pem, spiffe or crl, got '{format}'");
        }
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.GetBundleAsync(new GetBundleRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            using var doc = JsonDocument.Parse(r.SpiffeBundleJson);
            Output.Json(ctx.Out, new
            {
                trust_domain = r.TrustDomain, sequence = r.Sequence, pem = r.Pem, spiffe = doc.RootElement.Clone(),
                crl_pem = r.CrlDer.Length > 0 ? PemEncoding.WriteString("X509 CRL", r.CrlDer.Span) + "\n" : null,
                retired_crl_pem = r.RetiredCrlDer.Select(d => PemEncoding.WriteString("X509 CRL", d.Span) + "\n").ToList(),
                other_server_crl_pem = r.OtherServerCrlDer.Select(d => PemEncoding.WriteString("X509 CRL", d.Span) + "\n").ToList(),
            });
            return 0;
        }
        if (format == "crl")
        {
            if (r.CrlDer.Length == 0)
            {
                throw new CommandFailedException("the server sent no CRL: it predates revocation support; upgrade it", 1);
            }
            // The active authority's CRL, then one per retired authority whose SVIDs may still be valid, then the other
            // servers' on the same store (issue #16).
            foreach (var der in r.RetiredCrlDer.Prepend(r.CrlDer).Concat(r.OtherServerCrlDer))
            {
                ctx.Out.Write(PemEncoding.WriteString("X509 CRL", der.Span) + "\n");
            }
            return 0;
        }
        ctx.Out.Write(format == "pem" ? r.Pem : r.SpiffeBundleJson.TrimEnd() + "\n");
        return 0;
    }

    private static async Task<int> X509Mint(ParsedArgs a, CommandContext ctx)
    {
        var id = a.Require("spiffe-id");
        if (a.Get("write") is { } target)
        {
            OutputDirectory.Prepare(target, create: false);   // before minting: a refused directory mints nothing
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new MintX509SvidRequest { SpiffeId = id, Csr = ByteString.CopyFrom(Csr.Create(key)), TtlSeconds = Seconds(a.GetDuration("ttl")) };
        request.DnsNames.AddRange(a.GetAll("dns"));
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.MintX509SvidAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        var chainPem = new StringBuilder();
        foreach (var der in r.CertChain)
        {
            chainPem.Append(PemEncoding.WriteString("CERTIFICATE", der.Span)).Append('\n');
        }
        var keyPem = PemEncoding.WriteString("PRIVATE KEY", key.ExportPkcs8PrivateKey()) + "\n";
        var leaf = X509CertificateLoader.LoadCertificate(r.CertChain[0].ToByteArray());
        if (a.Get("write") is { } dir)
        {
            WriteSvidFiles(dir, chainPem.ToString(), keyPem, r.BundlePem);
        }
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new
            {
                spiffe_id = id,
                serial_number = leaf.SerialNumber,
                expires_at = Output.Time(r.ExpiresAtUnix),
                decision_id = r.DecisionId,
                written_to = a.Get("write"),
                svid_pem = a.Has("write") ? null : chainPem.ToString(),
                bundle_pem = a.Has("write") ? null : r.BundlePem,
            });
            return 0;
        }
        if (a.Get("write") is { } written)
        {
            ctx.Out.WriteLine($"SPIFFE ID:  {id}");
            ctx.Out.WriteLine($"Serial:     {leaf.SerialNumber}");
            ctx.Out.WriteLine($"Expires at: {Output.Time(r.ExpiresAtUnix)}");
            ctx.Out.WriteLine($"Decision:   {r.DecisionId}");
            ctx.Out.WriteLine($"Wrote {Path.Combine(written, "svid.pem")}, {Path.Combine(written, "svid.key")} (0600), {Path.Combine(written, "bundle.pem")}");
        }
        else
        {
            ctx.Out.Write(chainPem.ToString());
            ctx.Out.Write(keyPem);
        }
        return 0;
    }

    /// <summary>The file names `writ svid fetch --write` uses too: svid.pem (chain), svid.key (0600), bundle.pem.</summary>
    public static void WriteSvidFiles(string dir, string chainPem, string keyPem, string bundlePem) =>
        OutputDirectory.WriteFiles(dir,
        [
            ("svid.key", keyPem, Output.SecretFile),
            ("svid.pem", chainPem, Output.PublicFile),
            ("bundle.pem", bundlePem, Output.PublicFile),
        ]);

    private static async Task<int> JwtMint(ParsedArgs a, CommandContext ctx)
    {
        var request = new MintJwtSvidRequest { SpiffeId = a.Require("spiffe-id"), TtlSeconds = Seconds(a.GetDuration("ttl")) };
        request.Audience.AddRange(a.GetAll("audience"));
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.MintJwtSvidAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { token = r.Token, expires_at = Output.Time(r.ExpiresAtUnix), decision_id = r.DecisionId });
        }
        else
        {
            ctx.Out.WriteLine(r.Token);
        }
        return 0;
    }

    private static async Task<int> Healthcheck(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.HealthAsync(new HealthRequest(), cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        var healthy = r.Live && (r.Ready || a.Flag("shallow"));
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { live = r.Live, ready = r.Ready, trust_domain = r.TrustDomain, store = r.Store, bundle_sequence = r.BundleSequence, server_id = r.ServerId });
        }
        else
        {
            ctx.Out.WriteLine(healthy ? $"Server is healthy (trust domain {r.TrustDomain}, store {r.Store}, server id {r.ServerId})" : "Server is live but not ready (store unavailable, or issuance stopped: see the server log)");
        }
        return healthy ? 0 : 1;
    }

    private static string IdArg(ParsedArgs a, string option, string what)
    {
        var fromOption = a.Get(option);
        if (a.Positionals.Count > 1 || (fromOption is not null && a.Positionals.Count > 0))
        {
            throw new UsageException($"give one {what}, either as --{option} or as the argument");
        }
        return fromOption ?? a.Positionals.FirstOrDefault() ?? throw new UsageException($"missing {what}: pass it as the argument or --{option}");
    }

    private static int Seconds(TimeSpan? d) => d is null ? 0
        : d.Value.TotalSeconds is > 0 and <= int.MaxValue ? (int)d.Value.TotalSeconds
        : throw new UsageException($"duration {d} is out of range");
}
