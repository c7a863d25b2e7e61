using Google.Protobuf;
using Grpc.Core;
using Writ.Protocol.Admin;
using Writ.Server.Federation;
using Writ.Server.Ledger;
using Writ.Server.Registration;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using ProtoFederation = Writ.Protocol.Admin.FederationRelationship;
using StoreFederation = Writ.Server.Storage.FederationRelationship;

namespace Writ.Server.Api;

/// <summary>Federation relationships on the admin API (issue #16): <c>writ federation create|list|show|update|delete|refresh</c>.</summary>
public sealed partial class AdminApi
{
    public override async Task<ProtoFederation> CreateFederation(ProtoFederation request, ServerCallContext context)
    {
        var (relationship, bundle) = CheckFederation(request, bundleHeld: false);
        var stored = await StoreFederationWriteAsync(() => server.Store.Federations.CreateAsync(relationship, StoredOf(bundle), context.CancellationToken,
            [LedgerEvents.Federation(LedgerEvents.FederationCreated, AdminCaller.Of(context), relationship, bundle)])).ConfigureAwait(false);
        ServerLog.FederationChanged(log, stored.TrustDomain, "created", stored.Profile, stored.BundleEndpointUrl);
        await AfterFederationChangeAsync(context.CancellationToken).ConfigureAwait(false);
        return await FederationProtoAsync(stored, context.CancellationToken).ConfigureAwait(false);
    }

    public override async Task<ListFederationsResponse> ListFederations(ListFederationsRequest request, ServerCallContext context)
    {
        var list = await server.Store.Federations.ListAsync(context.CancellationToken).ConfigureAwait(false);
        var response = new ListFederationsResponse();
        response.Relationships.AddRange(list.Select(f => ToProto(f.Relationship, f.Bundle)));
        return response;
    }

    public override async Task<ProtoFederation> GetFederation(FederationRequest request, ServerCallContext context)
    {
        var r = await server.Store.Federations.GetAsync(RequireKnownName(request.TrustDomain), context.CancellationToken).ConfigureAwait(false)
            ?? throw NoFederation(request.TrustDomain);
        return await FederationProtoAsync(r, context.CancellationToken).ConfigureAwait(false);
    }

    public override async Task<ProtoFederation> UpdateFederation(ProtoFederation request, ServerCallContext context)
    {
        var held = await server.Store.Federations.GetAsync(RequireKnownName(request.TrustDomain), context.CancellationToken).ConfigureAwait(false) is not null
            && await server.Store.Bundles.GetAsync(request.TrustDomain, context.CancellationToken).ConfigureAwait(false) is not null;
        var (relationship, bundle) = CheckFederation(request, held);
        var stored = await server.Store.Federations.UpdateAsync(relationship, StoredOf(bundle), context.CancellationToken,
            [LedgerEvents.Federation(LedgerEvents.FederationUpdated, AdminCaller.Of(context), relationship, bundle)]).ConfigureAwait(false);
        ServerLog.FederationChanged(log, stored.TrustDomain, "updated", stored.Profile, stored.BundleEndpointUrl);
        await AfterFederationChangeAsync(context.CancellationToken).ConfigureAwait(false);
        return await FederationProtoAsync(stored, context.CancellationToken).ConfigureAwait(false);
    }

    public override async Task<DeleteFederationResponse> DeleteFederation(FederationRequest request, ServerCallContext context)
    {
        var gone = await server.Store.Federations.GetAsync(RequireKnownName(request.TrustDomain), context.CancellationToken).ConfigureAwait(false)
            ?? throw NoFederation(request.TrustDomain);
        await server.Store.Federations.DeleteAsync(gone.TrustDomain, context.CancellationToken,
            [LedgerEvents.Federation(LedgerEvents.FederationDeleted, AdminCaller.Of(context), gone)]).ConfigureAwait(false);
        ServerLog.FederationChanged(log, gone.TrustDomain, "deleted", gone.Profile, gone.BundleEndpointUrl);
        await server.FederatedBundles.ReloadAsync(context.CancellationToken).ConfigureAwait(false);
        return new DeleteFederationResponse();
    }

    public override async Task<ProtoFederation> RefreshFederation(FederationRequest request, ServerCallContext context)
    {
        var r = await server.BundleRefresher.RefreshNowAsync(RequireKnownName(request.TrustDomain), context.CancellationToken).ConfigureAwait(false)
            ?? throw NoFederation(request.TrustDomain);
        return await FederationProtoAsync(r, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Entries' federates_with (issue #16): valid trust domain names, not ours, each with a relationship. Checked before the
    /// write; a relationship deleted meanwhile only means that entry's workloads get no bundle of that domain.
    /// </summary>
    private async Task CheckFederatesWithAsync(IReadOnlyList<RegistrationEntry> entries, CancellationToken ct)
    {
        if (entries.All(e => e.FederatesWith.Count == 0))
        {
            return;
        }
        var known = (await server.Store.Federations.ListAsync(ct).ConfigureAwait(false)).Select(f => f.Relationship.TrustDomain).ToHashSet(StringComparer.Ordinal);
        for (var i = 0; i < entries.Count; i++)
        {
            var label = entries.Count == 1 ? "entry" : $"entry {i + 1} of {entries.Count}";
            var e = entries[i];
            if (e.FederatesWith.Count > FederationRules.MaxFederatesWith)
            {
                throw new ValidationException($"{label}: {e.FederatesWith.Count} federated trust domains is more than the {FederationRules.MaxFederatesWith} allowed", FederationRules.EntryTrustDomainCode);
            }
            foreach (var td in e.FederatesWith)
            {
                if (FederationRules.TrustDomainProblem(td, server.Options.TrustDomain) is { } problem)
                {
                    throw new ValidationException($"{label}: federates_with {problem.Message}", FederationRules.EntryTrustDomainCode);
                }
                if (!known.Contains(td))
                {
                    throw new ValidationException($"{label}: federates_with '{td}' has no federation relationship: create it first with 'writ federation create --trust-domain {td} ...'", FederationRules.EntryUnknownCode);
                }
            }
            if (e.FederatesWith.Distinct(StringComparer.Ordinal).Count() != e.FederatesWith.Count)
            {
                throw new ValidationException($"{label}: federates_with names a trust domain twice", FederationRules.EntryTrustDomainCode);
            }
        }
    }

    /// <summary>The whole request checked before anything is written; the bootstrap bundle parsed and checked for its domain.</summary>
    /// <param name="bundleHeld">A bundle of the domain is stored already (an update), so https_spiffe needs no new one.</param>
    private (StoreFederation Relationship, TrustBundle? Bundle) CheckFederation(ProtoFederation request, bool bundleHeld)
    {
        if (FederationRules.TrustDomainProblem(request.TrustDomain, server.Options.TrustDomain) is { } tdProblem)
        {
            throw new ValidationException(tdProblem.Message, tdProblem.Code);
        }
        if (FederationRules.EndpointUrlProblem(request.BundleEndpointUrl) is { } urlProblem)
        {
            throw new ValidationException(urlProblem, FederationRules.EndpointUrlCode);
        }
        if (FederationRules.ProfileProblem(request.Profile, request.EndpointSpiffeId) is { } profileProblem)
        {
            throw new ValidationException(profileProblem.Message, profileProblem.Code);
        }
        var td = TrustDomain.Parse(request.TrustDomain);
        TrustBundle? bundle = null;
        if (!request.TrustBundleJson.IsEmpty)
        {
            if (request.TrustBundleJson.Length > BundleRefresher.MaxBodyBytes)
            {
                throw new ValidationException($"the trust bundle is larger than {BundleRefresher.MaxBodyBytes} bytes", FederationRules.BundleCode);
            }
            string json;
            try
            {
                json = new System.Text.UTF8Encoding(false, true).GetString(request.TrustBundleJson.Span);
            }
            catch (System.Text.DecoderFallbackException)
            {
                throw new ValidationException("the trust bundle is not UTF-8 text: give a SPIFFE bundle (JSON) or PEM CA certificates", FederationRules.BundleCode);
            }
            if (!FederationRules.TryParseBundle(td, json, out bundle, out var error))
            {
                throw new ValidationException($"the trust bundle is not a SPIFFE bundle of {td.Name}: {error}", FederationRules.BundleCode);
            }
        }
        else if (request.Profile == StoreFederation.HttpsSpiffe && !bundleHeld)
        {
            // §5.2.2: the endpoint is authenticated by the foreign domain's bundle, so the first one comes out of band.
            throw new ValidationException($"profile https_spiffe needs a bootstrap bundle of {td.Name} to authenticate its endpoint: pass --trust-bundle-file (SPIFFE bundle JSON or PEM)", FederationRules.BundleCode);
        }
        var relationship = new StoreFederation
        {
            TrustDomain = td.Name,
            BundleEndpointUrl = request.BundleEndpointUrl,
            Profile = request.Profile,
            EndpointSpiffeId = request.EndpointSpiffeId,
        };
        return (relationship, bundle);
    }

    private StoredBundle? StoredOf(TrustBundle? bundle) =>
        bundle is null ? null : new StoredBundle(bundle.TrustDomain.Name, bundle.ToSpiffeJson(), bundle.Sequence ?? 0, server.Time.GetUtcNow());

    private static async Task<StoreFederation> StoreFederationWriteAsync(Func<Task<StoreFederation>> write)
    {
        try
        {
            return await write().ConfigureAwait(false);
        }
        catch (ArgumentException e)
        {
            throw new ValidationException(e.Message, FederationRules.OwnTrustDomainCode);
        }
    }

    private async Task AfterFederationChangeAsync(CancellationToken ct)
    {
        await server.FederatedBundles.ReloadAsync(ct).ConfigureAwait(false);
        server.BundleRefresher.Kick();
    }

    private static string RequireKnownName(string trustDomain) =>
        TrustDomain.TryParse(trustDomain, out var td, out _) && td.Name == trustDomain
            ? trustDomain
            : throw new ValidationException($"trust domain '{trustDomain}' is not a trust domain name: give the bare name, e.g. partner.example", FederationRules.TrustDomainCode);

    private static StoreNotFoundException NoFederation(string trustDomain) =>
        new($"there is no federation relationship with '{trustDomain}'; list them with 'writ federation list'");

    private async Task<ProtoFederation> FederationProtoAsync(StoreFederation r, CancellationToken ct) =>
        ToProto(r, await server.Store.Bundles.GetAsync(r.TrustDomain, ct).ConfigureAwait(false));

    private static ProtoFederation ToProto(StoreFederation r, StoredBundle? bundle) => new()
    {
        TrustDomain = r.TrustDomain,
        BundleEndpointUrl = r.BundleEndpointUrl,
        Profile = r.Profile,
        EndpointSpiffeId = r.EndpointSpiffeId,
        TrustBundleJson = bundle is null ? ByteString.Empty : ByteString.CopyFromUtf8(bundle.SpiffeBundleJson),
        BundleSequence = bundle?.Sequence ?? 0,
        LastRefreshUnix = r.LastRefresh?.ToUnixTimeSeconds() ?? 0,
        NextRefreshUnix = r.NextRefresh.ToUnixTimeSeconds(),
        LastError = r.LastError ?? "",
        CreatedAtUnix = r.CreatedAt.ToUnixTimeSeconds(),
    };
}
