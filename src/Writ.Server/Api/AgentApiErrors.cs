namespace Writ.Server.Api;

/// <summary>
/// The stable codes of the agent API's own refusals (authentication of the calling agent, malformed requests); listed
/// in docs/errors.md. The agent keys its reaction on them (banned → stop, not attested → forget the SVID, superseded →
/// retry on the renewed channel), never on the message text.
/// </summary>
public static class AgentApiErrors
{
    public const string NoCertificate = "WRIT-AGENT-NO-CERT";
    public const string CertificateRefused = "WRIT-AGENT-CERT-REFUSED";
    public const string NotAnAgent = "WRIT-AGENT-NOT-AN-AGENT";
    public const string NotAttested = "WRIT-AGENT-NOT-ATTESTED";
    public const string Revoked = "WRIT-AGENT-REVOKED";
    public const string ServerStopping = "WRIT-SERVER-STOPPING";
    public const string BadRequest = "WRIT-AGENT-BAD-REQUEST";
}
