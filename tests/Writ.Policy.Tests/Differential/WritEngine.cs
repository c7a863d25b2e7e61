using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;
using Writ.Policy.Syntax;
using Writ.Policy.Validation;

namespace Writ.Policy.Tests.Differential;

/// <summary>Runs a generated case through Writ.Policy the way the bridge runs it through the reference engine.</summary>
internal static class WritEngine
{
    public static CaseAnswer Answer(GenCase c, bool validate)
    {
        CaseAnswer FailAll(string why) =>
            new(validate && c.Schema is not null ? new Validation(false, [], why) : null, c.Requests.Select(_ => new Answer(null, [], [], why)).ToList());

        CedarSchema? schema = null;
        if (c.Schema is not null && !CedarSchema.TryParseCedar(c.Schema, out schema, out var schemaErrors))
        {
            return FailAll("schema: " + schemaErrors[0]);
        }

        var list = new List<CedarPolicy>();
        foreach (var p in c.Policies)
        {
            if (!Parser.TryParsePolicies(p.Text, out var parsed, out var errors)) return FailAll($"policy {p.Id}: {errors[0]}");
            if (parsed.Count != 1) return FailAll($"policy {p.Id}: expected one policy, got {parsed.Count}");
            list.Add(parsed[0].WithId(p.Id));
        }

        var set = new PolicySet(list);
        foreach (var l in c.Links)
        {
            var values = new Dictionary<SlotId, EntityUid>();
            if (l.Principal is not null) values[SlotId.Principal] = l.Principal;
            if (l.Resource is not null) values[SlotId.Resource] = l.Resource;
            if (!set.TryLink(l.TemplateId, l.NewId, values, out var linked, out var linkError)) return FailAll($"link {l.NewId}: {linkError}");
            set = linked!;
        }

        Validation? validation = null;
        if (validate && schema is not null)
        {
            var result = Validator.Validate(set, schema);
            validation = new Validation(result.Passed, result.Errors.Select(e => e.PolicyId).Distinct().Order(StringComparer.Ordinal).ToList(),
                string.Join("; ", result.Errors.Select(e => e.ToString())));
        }

        if (!Entities.TryParseJson(c.EntitiesJson, schema, out var entities, out var entityError))
        {
            return new CaseAnswer(validation, c.Requests.Select(_ => new Answer(null, [], [], "entities: " + entityError)).ToList());
        }

        var answers = new List<Answer>(c.Requests.Count);
        foreach (var r in c.Requests)
        {
            if (!CedarJson.TryParseContext(r.ContextJson, schema, r.Action, r.ValidateRequest, out var context, out var contextError))
            {
                answers.Add(new Answer(null, [], [], "context: " + contextError));
                continue;
            }

            var request = new Request(r.Principal, r.Action, r.Resource, context);
            if (r.ValidateRequest && schema is not null && !RequestValidator.TryValidate(request, schema, out var requestError))
            {
                answers.Add(new Answer(null, [], [], "request: " + requestError));
                continue;
            }

            var response = Authorizer.IsAuthorized(request, set, entities!);
            answers.Add(new Answer(
                response.Decision == Decision.Allow ? "allow" : "deny",
                response.Reasons.Order(StringComparer.Ordinal).ToList(),
                response.Errors.Select(e => e.PolicyId).Distinct().Order(StringComparer.Ordinal).ToList(),
                null,
                string.Join("; ", response.Errors.Select(e => e.ToString()))));
        }

        return new CaseAnswer(validation, answers);
    }
}
