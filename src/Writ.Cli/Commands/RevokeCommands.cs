using Writ.Cli.Admin;
using Writ.Cli.CommandLine;
using Writ.Protocol.Admin;
using Revocation = Writ.Protocol.Agent.Revocation;

namespace Writ.Cli.Commands;

/// <summary>`writ revoke` and `writ revoke list` (issue #6).</summary>
public static class RevokeCommands
{
    private static readonly OptionSpec Socket = new("admin-socket", "the server's admin socket", "PATH", EnvVar: AdminConnection.SocketEnvVar);
    private static readonly OptionSpec OutputOpt = new("output", "table (default) or json", "FORMAT");
    private static readonly string[] Targets = ["serial", "spiffe-id", "entry", "agent", "jti"];

    public static IEnumerable<CommandSpec> All() =>
    [
        new("revoke", "Revoke credentials at once: one SVID (--serial, --jti) or everything issued to an ID, for an entry or through an agent.",
            [new("serial", "X.509-SVID serial (hex; colons allowed), e.g. from 'openssl x509 -noout -serial'", "SERIAL"),
             new("spiffe-id", "every unexpired credential issued to this SPIFFE ID", "ID"),
             new("entry", "every unexpired credential issued for this registration entry", "ID"),
             new("agent", "the agent's own SVID and every unexpired credential issued through it", "ID"),
             new("jti", "one JWT-SVID by its jti claim", "JTI"),
             new("reason", "why, recorded in the ledger and the revocation (default: revoked by admin)", "TEXT"),
             Socket, OutputOpt], Revoke),
        new("revoke list", "List revocations of credentials that have not expired yet (--all: also expired ones).",
            [new("all", "include revocations of credentials that have expired", IsFlag: true), Socket, OutputOpt], List),
    ];

    private static async Task<int> Revoke(ParsedArgs a, CommandContext ctx)
    {
        var given = Targets.Where(a.Has).ToList();
        if (given.Count != 1)
        {
            throw new UsageException("give exactly one of --serial SERIAL, --spiffe-id ID, --entry ID, --agent ID, --jti JTI");
        }
        var value = a.Get(given[0])!;
        var request = new RevokeRequest { Reason = a.Get("reason") ?? "" };
        switch (given[0])
        {
            case "serial": request.SerialHex = value; break;
            case "spiffe-id": request.SpiffeId = value; break;
            case "entry": request.EntryId = value; break;
            case "agent": request.AgentId = value; break;
            default: request.Jti = value; break;
        }
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.RevokeAsync(request, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { revoked = r.Revoked.Select(Json).ToList() });
            return 0;
        }
        if (r.Revoked.Count == 0)
        {
            ctx.Out.WriteLine($"Nothing new to revoke: every credential matching --{given[0]} {value} was revoked already ('writ revoke list')");
            return 0;
        }
        Print(ctx, r.Revoked);
        ctx.Out.WriteLine($"Revoked {r.Revoked.Count} credential(s); agents drop them now and the CRL lists the X.509 ones ('writ bundle show --format crl')");
        return 0;
    }

    private static async Task<int> List(ParsedArgs a, CommandContext ctx)
    {
        using var c = AdminConnection.FromArgs(a);
        var r = await c.CallAsync(s => s.ListRevocationsAsync(new ListRevocationsRequest { IncludeExpired = a.Flag("all") }, cancellationToken: ctx.Cancellation)).ConfigureAwait(false);
        if (a.JsonOutput)
        {
            Output.Json(ctx.Out, new { revocations = r.Revocations.Select(Json).ToList() });
            return 0;
        }
        Print(ctx, r.Revocations);
        ctx.Out.WriteLine($"{r.Revocations.Count} revocation(s)");
        return 0;
    }

    private static void Print(CommandContext ctx, IEnumerable<Revocation> list) =>
        Output.Table(ctx.Out, ["KIND", "SERIAL / JTI", "SPIFFE ID", "REVOKED AT", "EXPIRES AT", "REASON"],
            list.Select(x => (IReadOnlyList<string>)[x.SerialHex.Length > 0 ? "x509" : "jwt", x.SerialHex.Length > 0 ? x.SerialHex : x.Jti, x.SpiffeId,
                Output.Time(x.RevokedAtUnix), Output.Time(x.ExpiresAtUnix), x.Reason]));

    private static object Json(Revocation x) => new
    {
        kind = x.SerialHex.Length > 0 ? "x509" : "jwt",
        serial = x.SerialHex.Length > 0 ? x.SerialHex : null,
        jti = x.Jti.Length > 0 ? x.Jti : null,
        spiffe_id = x.SpiffeId,
        entry_id = x.EntryId.Length > 0 ? x.EntryId : null,
        instance_id = x.InstanceId.Length > 0 ? x.InstanceId : null,
        revoked_at = Output.Time(x.RevokedAtUnix),
        expires_at = Output.Time(x.ExpiresAtUnix),
        reason = x.Reason,
        revision = x.Revision,
    };
}
