using System.Text.RegularExpressions;
using Grpc.Core;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;
using Writ.Server.Ledger;
using Writ.Server.Storage;

namespace Writ.Server.Api;

/// <summary>The stable codes of access reports (docs/errors.md).</summary>
public static class AccessErrors
{
    /// <summary>A report that breaks the rules (sizes, decision id shape, fields): nothing of it is recorded.</summary>
    public const string Invalid = "WRIT-ACCESS-INVALID";
}

/// <summary>
/// ReportAccess: the request-time decisions (<c>Writ::Action::"call"</c>) an agent made — every denial and a sample of
/// allows — recorded as <c>access.denied</c> / <c>access.allowed</c> ledger records. Only an authenticated agent may
/// report; the report is checked whole (one bad decision refuses the call and records nothing of it); the records say
/// which agent reported them (the authenticated one, whatever the facts claim); a per-agent flood limit bounds what one
/// agent can write, and what goes over it is counted in an <c>access.suppressed</c> record.
/// </summary>
public sealed partial class AgentApi
{
    public const int MaxAccessDecisionsPerReport = 256;
    public const int MaxAccessString = 4096;
    public const int MaxAccessHeaders = 32;
    public const int MaxAccessSetItems = 256;
    public const long MaxAccessDropped = 1_000_000_000;

    [GeneratedRegex(@"^c-[0-9a-f]{20}\z", RegexOptions.CultureInvariant)]
    private static partial Regex CallDecisionId();

    [GeneratedRegex(@"^WRIT-[A-Z0-9-]{1,59}\z", RegexOptions.CultureInvariant)]
    private static partial Regex ErrorCode();

    [GeneratedRegex(@"^[a-z0-9_-]{1,32}\z", RegexOptions.CultureInvariant)]
    private static partial Regex Token();

    public override async Task<ReportAccessResponse> ReportAccess(ReportAccessRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        var agent = caller.Id.ToString();
        if (CheckAccessReport(request) is { } error)
        {
            ServerLog.AccessReportRefused(log, agent, error);
            throw new WritException(AccessErrors.Invalid, WritErrorKind.InvalidArgument, $"the access report was refused and nothing of it recorded: {error}");
        }
        var ct = context.CancellationToken;
        var windows = server.AccessRecords;
        await windows.Serial.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // A decision already recorded (the agent retried a report whose answer it lost) is not written twice.
            var fresh = new List<AccessDecision>(request.Decisions.Count);
            foreach (var d in request.Decisions)
            {
                if (await server.Store.Ledger.GetByDecisionAsync(d.DecisionId, ct).ConfigureAwait(false) is null)
                    fresh.Add(d);
            }
            var now = server.Time.GetUtcNow();
            var grant = windows.Admit(agent, now, fresh.Count, request.Dropped);
            var events = new List<LedgerEvent>(grant.Admitted + 1);
            if (grant.Summary)
            {
                events.Add(AccessRecords.Summary(agent, grant.OverLimit, grant.Dropped, now));
                ServerLog.AccessSuppressed(log, agent, grant.OverLimit, grant.Dropped);
            }
            events.AddRange(fresh.Take(grant.Admitted).Select(d => AccessRecords.Decision(agent, d, now)));
            ServerLog.AccessReported(log, agent, request.Decisions.Count, request.Decisions.Count(d => !d.Allowed), grant.Admitted);
            if (events.Count > 0)
            {
                await server.LedgerWriter.RecordAsync(events, [],
                    "the access decisions could not be recorded in the ledger: check the server's store; the agent reports them again", ct).ConfigureAwait(false);
            }
            return new ReportAccessResponse { Recorded = grant.Admitted };
        }
        finally
        {
            windows.Serial.Release();
        }
    }

    /// <summary>Why an access report breaks the rules, or null when every decision in it is well-formed.</summary>
    public static string? CheckAccessReport(ReportAccessRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Decisions.Count > MaxAccessDecisionsPerReport)
            return $"{request.Decisions.Count} decisions in one report, at most {MaxAccessDecisionsPerReport}: send them in several reports";
        if (request.Dropped is < 0 or > MaxAccessDropped)
            return $"dropped must be from 0 to {MaxAccessDropped}, got {request.Dropped}";
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < request.Decisions.Count; i++)
        {
            var d = request.Decisions[i];
            if (CheckAccessDecision(d) is { } why)
                return $"decision {i}: {why}";
            if (!ids.Add(d.DecisionId))
                return $"decision {i}: decision id {d.DecisionId} appears twice in the report";
        }
        return null;
    }

    private static string? CheckAccessDecision(AccessDecision d)
    {
        if (!CallDecisionId().IsMatch(d.DecisionId))
            return "the decision id must be \"c-\" and 20 lower-case hex digits (CallDecision.NewId)";
        if (d.Facts is not { } f)
            return "the call facts are missing";
        if (d.PolicyVersion < 0 || d.DecidedAtUnixMs <= 0)
            return "policy_version must be 0 or more and decided_at_unix_ms a time after 1970";
        if (!Token().IsMatch(d.Surface))
            return "surface must name where the decision was made (\"ext_authz\", \"sdk\"): 1-32 of a-z, 0-9, '_' and '-'";
        if (d.Allowed ? d.Code.Length != 0 : !ErrorCode().IsMatch(d.Code))
            return "code must be empty for an allow and the stable WRIT-… code of a denial (capital letters, digits and '-', at most 64)";
        if (f.Credential is not ("" or Authz.CallCedar.X509Credential or Authz.CallCedar.JwtCredential))
            return $"credential must be \"{Authz.CallCedar.X509Credential}\", \"{Authz.CallCedar.JwtCredential}\" or empty";
        if (f.Headers.Count > MaxAccessHeaders)
            return $"{f.Headers.Count} headers, at most {MaxAccessHeaders}";
        if (f.CallerSelectors.Count > MaxAccessSetItems || f.CallerDnsNames.Count > MaxAccessSetItems || d.DeterminingPolicies.Count > MaxAccessSetItems)
            return $"at most {MaxAccessSetItems} caller selectors, DNS names and determining policies";
        string[] lines = [d.Reason, f.CallerSpiffeId, f.CallerSerialHex, f.CallerJti, f.ResourceSpiffeId, f.Method, f.Path, f.Host,
            f.CallerInstanceId, f.CallerAgentId, .. f.CallerSelectors, .. f.CallerDnsNames, .. d.DeterminingPolicies];
        if (lines.Any(s => !Line(s)))
            return $"every text field must be one line of at most {MaxAccessString} characters without control characters";
        if (f.Headers.Any(h => h.Key.Length == 0 || !Line(h.Key) || h.Key != h.Key.ToLowerInvariant() || !Line(h.Value)))
            return $"header names must be lower-case and non-empty, names and values one line of at most {MaxAccessString} characters";
        // Every denial is recorded, also one refused because the request named no destination (WRIT-AUTHZ-NO-RESOURCE).
        if (d.Allowed && f.ResourceSpiffeId.Length == 0 || d.Reason.Length == 0)
            return "the reason is required, and an allowed call names its resource";
        return null;
    }

    private static bool Line(string s) => s.Length <= MaxAccessString && !s.Any(char.IsControl);
}
