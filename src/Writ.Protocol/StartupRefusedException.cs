namespace Writ.Protocol;

/// <summary>
/// A server or agent refused to start because of the operator's set-up (data dir or port in use, data of another trust
/// domain...). <see cref="Code"/> is stable (documented in docs/cli.md) for scripts and runbooks; the message is one
/// line saying what to do. Thrown before anything is created or written.
/// </summary>
public sealed class StartupRefusedException(string code, string message) : Exception(message)
{
    public string Code { get; } = code;
}
