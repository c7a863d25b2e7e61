using System.Globalization;
using System.Text.Json.Nodes;
using Grpc.Core;
using Writ.Protocol.Admin;
using Writ.Server.Issuance;
using Writ.Server.Ledger;
using Writ.Server.Policy;
using Writ.Server.Registration;
using Writ.Server.Storage;

namespace Writ.Server.Api;

/// <summary>Decisions: <c>writ explain</c> (a recorded decision, whole) and <c>writ policy whatif</c> (replay against a candidate set).</summary>
public sealed partial class AdminApi
{
    public const int DefaultWhatIfLimit = 1000;
    public const int MaxWhatIfLimit = 100_000;

    public override async Task<ExplainResponse> Explain(ExplainRequest request, ServerCallContext context)
    {
        var id = request.DecisionId.Trim();
        if (id.Length is 0 or > 64 || id.Any(c => char.IsControl(c) || char.IsWhiteSpace(c)))
        {
            throw new ValidationException("give a decision id as printed in the refused workload's or caller's error, e.g. 'writ explain d-0123456789abcdef0123' or 'writ explain c-0123456789abcdef0123'");
        }
        var record = await server.Store.Ledger.GetByDecisionAsync(id, context.CancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException($"decision '{id}' is not in the ledger: check the id (d-… for an issuance, c-… for a call; from the error or 'writ audit list'); a call's allow is recorded only when sampled");
        var json = ExplainJson(record);
        if (record.Kind is AccessRecords.Allowed or AccessRecords.Denied)
        {
            json = await ExplainAccessAsync(record, json, context.CancellationToken).ConfigureAwait(false);
        }
        return new ExplainResponse { DecisionId = id, Json = json };
    }

    /// <summary>
    /// A call decision (reported by an agent) explained with a re-evaluation: the recorded Cedar request asked again of
    /// the policy version the agent says it decided with, as the server stores it. <c>reevaluated.agrees</c> false means the
    /// agent's outcome is not what that version decides (an agent with another set, or a false report).
    /// </summary>
    private async Task<string> ExplainAccessAsync(LedgerEvent record, string json, CancellationToken ct)
    {
        var o = (JsonObject)JsonNode.Parse(json)!;
        var replay = new JsonObject();
        var version = o["policy_version"] is JsonValue v && v.TryGetValue<long>(out var n) ? n : -1;
        replay["policy_version"] = version;
        if (o["stage"]?.GetValue<string>() != "policy")
        {
            replay["note"] = "refused before policy was asked (live state): nothing to re-evaluate";
        }
        else if (await CompiledVersionAsync(version, ct).ConfigureAwait(false) is not { } set)
        {
            replay["note"] = $"policy version {version} is not stored on this server (or no longer compiles): cannot re-evaluate";
        }
        else if (!WritCedar.TryReadQuery(o["request"], o["entities"], out var query, out var error))
        {
            replay["note"] = "the recorded request cannot be read: " + error;
        }
        else
        {
            var (allowed, determining, errors, _) = IssuanceDecider.Authorize(set, query!);
            var reported = o["decision"]?.GetValue<string>() ?? "";
            var now = allowed ? "allow" : "deny";
            replay["decision"] = now;
            replay["determining_policies"] = new JsonArray([.. determining.Select(x => (JsonNode)x)]);
            replay["errors"] = new JsonArray([.. errors.Select(x => (JsonNode)x)]);
            replay["agrees"] = now == reported;
            if (now != reported)
                ServerLog.AccessReplayDisagrees(log, record.DecisionId ?? "", record.Actor, reported, now, version);
        }
        o["reevaluated"] = replay;
        return WritCedar.Canonical(o);
    }

    /// <summary>A stored policy version compiled (0: the built-in default set), or null when it is unknown or does not compile.</summary>
    private async Task<CompiledPolicySet?> CompiledVersionAsync(long version, CancellationToken ct)
    {
        if (version == 0)
            return IssuancePolicyEngine.DefaultSet;
        if (version < 0)
            return null;
        var active = server.Policy.Current;
        if (active.Version == version)
            return active.Compiled;
        var stored = await server.Store.Policies.GetAsync(version, ct).ConfigureAwait(false);
        return stored is not null && WritPolicyCompiler.TryCompile(stored.Files, out var compiled, out _) ? compiled : null;
    }

    /// <summary>The ledger record's data with its envelope (seq, at, kind, actor) merged in; canonical JSON.</summary>
    public static string ExplainJson(LedgerEvent record)
    {
        var o = JsonNode.Parse(record.DataJson) as JsonObject ?? [];
        o["seq"] = record.Seq;
        o["at"] = record.At.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);
        o["ledger_kind"] = record.Kind;
        o["actor"] = record.Actor;
        o["decision_id"] = record.DecisionId;
        return WritCedar.Canonical(o);
    }

    /// <summary>Admin-minted X.509-SVID: decided by Cedar (<c>AdminMintX509Svid</c>) and recorded, on the issuance path.</summary>
    public override async Task<MintX509SvidResponse> MintX509Svid(MintX509SvidRequest request, ServerCallContext context)
    {
        var id = WorkloadId(request.SpiffeId);
        var ttl = server.Issuer.Cap(Ttl(request.TtlSeconds, server.Options.DefaultX509Ttl));
        foreach (var d in request.DnsNames)
        {
            if (!EntryValidator.IsDnsName(d))
            {
                throw new ValidationException($"DNS name '{d}' is not a valid host name");
            }
        }
        var minted = await MintPipeline.MintAdminX509Async(AdminCaller.Of(context), id, request.Csr.Memory, ttl, [.. request.DnsNames], context.CancellationToken).ConfigureAwait(false);
        var response = new MintX509SvidResponse { BundlePem = server.Ca.Bundle.ToPem(), ExpiresAtUnix = minted.ExpiresAt.ToUnixTimeSeconds(), DecisionId = minted.DecisionId };
        response.CertChain.AddRange(minted.Chain.Select(c => Google.Protobuf.ByteString.CopyFrom(c.RawData)));
        return response;
    }

    /// <summary>Admin-minted JWT-SVID: decided by Cedar (<c>AdminMintJwtSvid</c>), recorded by jti (never the token).</summary>
    public override async Task<MintJwtSvidResponse> MintJwtSvid(MintJwtSvidRequest request, ServerCallContext context)
    {
        var id = WorkloadId(request.SpiffeId);
        var audience = AgentApi.CheckAudience(request.Audience);
        var ttl = server.Issuer.Cap(Ttl(request.TtlSeconds, server.Options.DefaultJwtTtl));
        var minted = await MintPipeline.MintAdminJwtAsync(AdminCaller.Of(context), id, audience, ttl, context.CancellationToken).ConfigureAwait(false);
        return new MintJwtSvidResponse { Token = minted.Token, ExpiresAtUnix = minted.ExpiresAt.ToUnixTimeSeconds(), DecisionId = minted.DecisionId };
    }

    private IssuancePipeline MintPipeline => _mintPipeline ??= new IssuancePipeline(server, log);

    private IssuancePipeline? _mintPipeline;

    public override async Task<WhatIfResponse> WhatIf(WhatIfRequest request, ServerCallContext context)
    {
        var limit = request.Limit == 0 ? DefaultWhatIfLimit : request.Limit;
        if (limit is < 1 or > MaxWhatIfLimit)
        {
            throw new ValidationException($"--limit {request.Limit} is out of range: replay between 1 and {MaxWhatIfLimit} recent decisions");
        }
        var files = request.Files.Select(f => new PolicyFileRecord(f.Name, f.Text)).ToList();
        if (!WritPolicyCompiler.TryCompile(files, out var candidate, out var errors))
        {
            throw new ValidationException($"the candidate policy set is invalid ({errors.Count} error{(errors.Count == 1 ? "" : "s")}), nothing was replayed: {string.Join("; ", errors)}");
        }
        var records = await server.Store.Ledger.RecentDecisionsAsync(limit, context.CancellationToken).ConfigureAwait(false);
        var response = new WhatIfResponse();
        foreach (var r in records)
        {
            if (WhatIfReplay.Replay(r, candidate!) is not { } outcome)
            {
                continue;
            }
            response.Replayed++;
            if (outcome.Change is { } change)
            {
                response.Changes.Add(change);
            }
        }
        ServerLog.WhatIfReplayed(log, response.Replayed, response.Changes.Count);
        return response;
    }
}

/// <summary>Replays one recorded decision against a candidate policy set.</summary>
public static class WhatIfReplay
{
    /// <summary>
    /// Null when the record cannot be replayed (not a policy-stage decision, or no recorded request); otherwise the
    /// change, or a null change when the outcome would be the same.
    /// </summary>
    public static (WhatIfChange? Change, bool WouldAllow)? Replay(LedgerEvent record, CompiledPolicySet candidate)
    {
        JsonObject? data;
        try
        {
            data = JsonNode.Parse(record.DataJson) as JsonObject;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
        if (data is null || Str(data, "stage") != "policy" || !WritCedar.TryReadQuery(data["request"], data["entities"], out var query, out _))
        {
            return null;
        }
        var was = Str(data, "decision") == "allow";
        var (allowed, determining, _, _) = IssuanceDecider.Authorize(candidate, query!);
        if (allowed == was)
        {
            return (null, allowed);
        }
        var change = new WhatIfChange
        {
            DecisionId = record.DecisionId ?? "",
            Action = query!.Request.Action.Id,
            SpiffeId = query.Request.Resource.Id,
            Workload = Describe(query),
            Was = was ? "allow" : "deny",
            WouldBe = allowed ? "allow" : "deny",
        };
        change.DeterminingPolicies.AddRange(determining);
        return (change, allowed);
    }

    /// <summary>"agent A uid U exe P" for a workload, "node A (attestation)" for an agent, "admin uid:N (writ x509 mint)" for an admin mint.</summary>
    public static string Describe(CedarQuery q)
    {
        if (!q.Entities.TryGet(q.Request.Principal, out var p))
        {
            return q.Request.Principal.Id;
        }
        string A(string name) => p.Attributes.TryGetValue(name, out var v) ? v switch
        {
            Writ.Policy.Evaluation.StringValue s => s.Value,
            Writ.Policy.Evaluation.LongValue l => l.Value.ToString(CultureInfo.InvariantCulture),
            Writ.Policy.Evaluation.EntityValue e => e.Uid.Id,
            _ => v.ToString(),
        } : "";
        if (Writ.Authz.CallCedar.Call.Equals(q.Request.Action))
        {
            return $"caller {q.Request.Principal.Id}" + (A("parent_id") is { Length: > 0 } agent ? " via " + agent : "");
        }
        if (q.Request.Principal.Type == WritCedar.NodeType)
        {
            return $"node {q.Request.Principal.Id} ({A("attestation")})";
        }
        if (q.Request.Principal.Type == WritCedar.AdminType)
        {
            return $"admin {A("caller")} (writ {(WritCedar.AdminMintJwtSvid.Equals(q.Request.Action) ? "jwt" : "x509")} mint)";
        }
        var text = $"agent {A("node")} instance {A("instance_id")} uid {A("uid")}";
        var exe = A("exe_path");
        return exe.Length > 0 ? text + " exe " + exe : text;
    }

    private static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
}
