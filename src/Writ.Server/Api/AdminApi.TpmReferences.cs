using Grpc.Core;
using Writ.Protocol.Admin;
using Writ.Server.Ledger;
using Writ.Server.Registration;
using Writ.Server.Storage;
using ProtoPcr = Writ.Protocol.Admin.TpmPcrReference;
using ProtoSet = Writ.Protocol.Admin.TpmReferenceSet;

namespace Writ.Server.Api;

/// <summary>TPM reference sets on the admin API (issue #14): <c>writ tpm reference create|list|delete</c>.</summary>
public sealed partial class AdminApi
{
    public override async Task<ProtoSet> CreateTpmReferenceSet(CreateTpmReferenceSetRequest request, ServerCallContext context)
    {
        if (TpmReferenceRules.NameProblem(request.Name) is { } nameProblem)
        {
            throw new ValidationException(nameProblem, TpmReferenceRules.NameCode);
        }
        var set = new Storage.TpmReferenceSet(request.Name, [.. request.Pcrs.Select(p => new Storage.TpmPcrReference(p.Bank, p.Index, p.DigestHex))], default);
        if (TpmReferenceRules.Problem(set) is { } problem)
        {
            throw new ValidationException(problem, TpmReferenceRules.PcrCode);
        }
        set = set with { Pcrs = TpmReferenceRules.Normalize(set.Pcrs) };
        var stored = await server.Store.TpmReferenceSets.CreateAsync(set, context.CancellationToken,
            [LedgerEvents.TpmReference(LedgerEvents.TpmReferenceCreated, AdminCaller.Of(context), set)]).ConfigureAwait(false);
        return ToProto(stored);
    }

    public override async Task<ListTpmReferenceSetsResponse> ListTpmReferenceSets(ListTpmReferenceSetsRequest request, ServerCallContext context)
    {
        var sets = await server.Store.TpmReferenceSets.ListAsync(context.CancellationToken).ConfigureAwait(false);
        var response = new ListTpmReferenceSetsResponse();
        response.Sets.AddRange(sets.Select(ToProto));
        return response;
    }

    public override async Task<DeleteTpmReferenceSetResponse> DeleteTpmReferenceSet(DeleteTpmReferenceSetRequest request, ServerCallContext context)
    {
        if (TpmReferenceRules.NameProblem(request.Name) is { } nameProblem)
        {
            throw new ValidationException(nameProblem, TpmReferenceRules.NameCode);
        }
        var gone = await server.Store.TpmReferenceSets.GetAsync(request.Name, context.CancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException($"TPM reference set '{request.Name}' does not exist; list them with 'writ tpm reference list'");
        await server.Store.TpmReferenceSets.DeleteAsync(request.Name, context.CancellationToken,
            [LedgerEvents.TpmReference(LedgerEvents.TpmReferenceDeleted, AdminCaller.Of(context), gone)]).ConfigureAwait(false);
        return new DeleteTpmReferenceSetResponse();
    }

    private static ProtoSet ToProto(Storage.TpmReferenceSet set)
    {
        var proto = new ProtoSet { Name = set.Name, CreatedAtUnix = set.CreatedAt.ToUnixTimeSeconds() };
        proto.Pcrs.AddRange(set.Pcrs.Select(p => new ProtoPcr { Bank = p.Bank, Index = p.Index, DigestHex = p.DigestHex }));
        return proto;
    }
}
