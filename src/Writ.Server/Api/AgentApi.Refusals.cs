using Grpc.Core;
using Writ.Protocol.Agent;
using Writ.Protocol.Evidence;
using Writ.Server.Ledger;
using Writ.Server.Registration;

namespace Writ.Server.Api;

/// <summary>
/// ReportWorkloadRefused: a workload asked its agent for an identity and got none (no entry matches its evidence — a
/// process in the wrong namespace, an unsigned image, a pod the kubelet does not know). The agent decides that locally
/// without asking the server, so it reports it; the server records a <c>workload.refused</c> ledger record within a
/// per-agent flood limit, so that refusals are in the ledger beside issuances and denials.
/// </summary>
public sealed partial class AgentApi
{
    private const int MaxAttestorErrors = 16;

    public override async Task<ReportWorkloadRefusedResponse> ReportWorkloadRefused(ReportWorkloadRefusedRequest request, ServerCallContext context)
    {
        var caller = await AuthenticateAsync(context).ConfigureAwait(false);
        if (request.Evidence is null)
        {
            throw new ValidationException("the refused workload's evidence is missing");
        }
        if (!EvidenceProto.TryFromProto(request.Evidence, out var evidence, out var evidenceError))
        {
            throw new ValidationException($"the refused workload's evidence is malformed: {evidenceError}");
        }
        if (request.Code.Length is < 6 or > 64 || !request.Code.StartsWith("WRIT-", StringComparison.Ordinal)
            || !request.Code.All(c => char.IsAsciiLetterUpper(c) || char.IsAsciiDigit(c) || c == '-'))
        {
            throw new ValidationException("code must be the stable WRIT-… code the workload got (capital letters, digits and '-', at most 64)");
        }
        static bool Line(string s) => s.Length <= MaxReportField && !s.Any(char.IsControl);
        if (request.Reason.Length == 0 || !Line(request.Reason))
        {
            throw new ValidationException($"reason is required: one line of at most {MaxReportField} printable characters");
        }
        if (request.AttestorErrors.Count > MaxAttestorErrors || !request.AttestorErrors.All(Line))
        {
            throw new ValidationException($"at most {MaxAttestorErrors} attestor errors, each one line of at most {MaxReportField} printable characters");
        }
        var agent = caller.Id.ToString();
        var now = server.Time.GetUtcNow();
        ServerLog.WorkloadRefusedReported(log, agent, evidence.InstanceId, request.Code, request.Reason);
        if (!server.WorkloadRefusals.TryRecord(agent, now, out var suppressed))
        {
            return new ReportWorkloadRefusedResponse { Recorded = false };
        }
        await server.LedgerWriter.RecordAsync(
            [LedgerEvents.WorkloadRefusal(agent, evidence, request.Code, request.Reason, [.. request.AttestorErrors], suppressed)],
            [], "the workload refusal could not be recorded in the ledger: check the server's store; the agent reports it again", context.CancellationToken).ConfigureAwait(false);
        return new ReportWorkloadRefusedResponse { Recorded = true };
    }
}
