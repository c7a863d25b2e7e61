using System.Collections.Concurrent;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Admin;
using Writ.Server.Ledger;
using Writ.Server.Policy;
using Writ.Server.Registration;
using Writ.Server.Storage;

namespace Writ.Server.Api;

/// <summary>The policy lifecycle: push (validated against the Writ schema; a refused push changes nothing), list, get, rollback.</summary>
public sealed partial class AdminApi
{
    public const int MaxPolicyFiles = 1000;
    public const int MaxPolicyBytes = 4 << 20;

    // Policy counts by set hash: listing never recompiles a version twice.
    private static readonly ConcurrentDictionary<string, int> PolicyCounts = new(StringComparer.Ordinal);

    public override async Task<PolicyVersion> PushPolicy(PushPolicyRequest request, ServerCallContext context)
    {
        var author = AdminCaller.Of(context);
        var files = request.Files.Select(f => new PolicyFileRecord(f.Name, f.Text)).ToList();
        if (files.Count > MaxPolicyFiles || files.Sum(f => (long)f.Text.Length) > MaxPolicyBytes)
            throw new ValidationException($"a policy set is at most {MaxPolicyFiles} files and {MaxPolicyBytes >> 20} MiB of text: split or trim it");
        var compiled = Compile(files, author, "push");
        return await StoreVersionAsync(compiled, author, request.Comment, rolledBackFrom: null, context.CancellationToken).ConfigureAwait(false);
    }

    public override async Task<ListPoliciesResponse> ListPolicies(ListPoliciesRequest request, ServerCallContext context)
    {
        var versions = await server.Store.Policies.ListAsync(context.CancellationToken).ConfigureAwait(false);
        var response = new ListPoliciesResponse();
        for (var i = 0; i < versions.Count; i++)
        {
            var p = ToProto(versions[i], active: i == 0);
            p.Files.Clear();
            response.Versions.Add(p);
        }
        return response;
    }

    public override async Task<PolicyVersion> GetPolicy(GetPolicyRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var active = await server.Store.Policies.ActiveAsync(ct).ConfigureAwait(false)
            ?? throw new StoreNotFoundException("no policy version is stored yet: push one with 'writ policy push --file FILE'");
        if (request.Version == 0 || request.Version == active.Version)
            return ToProto(active, active: true);
        if (request.Version < 0)
            throw new ValidationException($"a policy version is a positive number, got {request.Version}; 'writ policy list' shows them");
        var v = await server.Store.Policies.GetAsync(request.Version, ct).ConfigureAwait(false)
            ?? throw new StoreNotFoundException($"policy version {request.Version} does not exist: 'writ policy list' shows the versions");
        return ToProto(v, active: false);
    }

    public override async Task<PolicyVersion> RollbackPolicy(RollbackPolicyRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var author = AdminCaller.Of(context);
        if (request.ToVersion <= 0)
            throw new ValidationException($"roll back to a positive version number, got {request.ToVersion}; 'writ policy list' shows them");
        var target = await server.Store.Policies.GetAsync(request.ToVersion, ct).ConfigureAwait(false)
            ?? throw new StoreNotFoundException($"policy version {request.ToVersion} does not exist: 'writ policy list' shows the versions");
        // Validated again: the schema may have changed since that version was pushed.
        var compiled = Compile(target.Files, author, "rollback");
        return await StoreVersionAsync(compiled, author, request.Comment, target.Version, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// On first start (no version stored) installs <see cref="WritPolicyCompiler.DefaultFiles"/> as version 1, author
    /// "server", with its policy.pushed record. Another server doing the same at once is fine: one of them wins.
    /// </summary>
    public static async Task InstallDefaultPolicyAsync(IWritStore store, ILogger log, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (await store.Policies.ActiveAsync(ct).ConfigureAwait(false) is not null)
            return;
        if (!WritPolicyCompiler.TryCompile(WritPolicyCompiler.DefaultFiles, out var compiled, out var errors))
            throw new InvalidOperationException("the built-in default policy set does not compile: " + string.Join("; ", errors));
        var version = new StoredPolicyVersion
        {
            Files = compiled!.Files,
            Sha256 = compiled.Sha256,
            Author = LedgerEvents.ServerActor,
            Comment = "default policy set",
        };
        try
        {
            var stored = await store.Policies.PushAsync(version, expectedActive: 0,
                [LedgerEvents.Policy(LedgerEvents.PolicyPushed, LedgerEvents.ServerActor, version, compiled.Set.Policies.Count)], ct).ConfigureAwait(false);
            ServerLog.DefaultPolicyInstalled(log, stored.Version);
        }
        catch (StoreConflictException)
        {
            // Another server installed a version first.
        }
    }

    private CompiledPolicySet Compile(IReadOnlyList<PolicyFileRecord> files, string author, string what)
    {
        if (WritPolicyCompiler.TryCompile(files, out var compiled, out var errors))
        {
            if (compiled!.Set.Policies.Count > 0)
                return compiled;
            // Only comments: every issuance would be denied by default, which is never what a push means to do.
            errors = [$"{string.Join(", ", files.Select(f => f.Name))}: no policies in the set: every issuance would be denied; push at least one permit (or an explicit forbid)"];
        }
        ServerLog.PolicyPushRefused(log, author, errors.Count, errors[0]);
        var more = errors.Count > 1 ? $" (and {errors.Count - 1} more)" : "";
        throw new ValidationException($"the {what} was refused and nothing changed: {errors[0]}{more}; check the files with 'writ policy validate --schema' or push them to see every error");
    }

    private async Task<PolicyVersion> StoreVersionAsync(CompiledPolicySet compiled, string author, string comment, long? rolledBackFrom, CancellationToken ct)
    {
        var active = await server.Store.Policies.ActiveAsync(ct).ConfigureAwait(false);
        var count = compiled.Set.Policies.Count;
        if (active is not null && string.Equals(active.Sha256, compiled.Sha256, StringComparison.Ordinal))
        {
            ServerLog.PolicyUnchanged(log, author, active.Version);
            var same = ToProto(active, active: true);
            same.Unchanged = true;
            return same;
        }
        var version = new StoredPolicyVersion
        {
            Files = compiled.Files,
            Sha256 = compiled.Sha256,
            Author = author,
            Comment = comment,
            RolledBackFrom = rolledBackFrom,
        };
        var kind = rolledBackFrom is null ? LedgerEvents.PolicyPushed : LedgerEvents.PolicyRolledBack;
        var stored = await server.Store.Policies.PushAsync(version, active?.Version ?? 0, [LedgerEvents.Policy(kind, author, version, count)], ct).ConfigureAwait(false);
        PolicyCounts.TryAdd(stored.Sha256, count);
        if (rolledBackFrom is { } from)
            ServerLog.PolicyRolledBack(log, author, stored.Version, from);
        else
            ServerLog.PolicyPushed(log, stored.Version, author, stored.Sha256, count);
        server.Announce(Writ.Server.Sync.ChangeKinds.Policy);
        return ToProto(stored, active: true);
    }

    private static PolicyVersion ToProto(StoredPolicyVersion v, bool active)
    {
        var p = new PolicyVersion
        {
            Version = v.Version,
            Sha256 = v.Sha256,
            Author = v.Author,
            Comment = v.Comment,
            CreatedAtUnix = v.CreatedAt.ToUnixTimeSeconds(),
            Active = active,
            RolledBackFrom = v.RolledBackFrom ?? 0,
            PolicyCount = PolicyCounts.GetOrAdd(v.Sha256, _ => WritPolicyCompiler.TryCompile(v.Files, out var c, out IReadOnlyList<string> _) ? c!.Set.Policies.Count : 0),
        };
        p.Files.AddRange(v.Files.Select(f => new PolicyFile { Name = f.Name, Text = f.Text }));
        return p;
    }
}
