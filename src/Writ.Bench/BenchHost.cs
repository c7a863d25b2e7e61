using System.Diagnostics;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Admin;
using Writ.Protocol.Errors;

namespace Writ.Bench;

/// <summary>
/// What the benches take from the program that runs them (the CLI): its admin client, its logging, and how to start
/// <c>writ server run</c> as a child process.
/// </summary>
/// <param name="ConnectAdmin">An admin API client on a server's admin socket; its calls fail with the caller's own errors.</param>
/// <param name="Logging">Logging for the in-process server and agent (the benches want errors only).</param>
/// <param name="ServerProcess">A start info that runs the writ executable; the bench appends <c>server run …</c>.</param>
public sealed record BenchHost(Func<string, IBenchAdmin> ConnectAdmin, Action<ILoggingBuilder> Logging, Func<ProcessStartInfo> ServerProcess);

/// <summary>An admin API connection as the benches use it.</summary>
public interface IBenchAdmin : IDisposable
{
    /// <summary>Runs one admin call; a failure surfaces as the connection owner's one-line error.</summary>
    Task<T> CallAsync<T>(Func<AdminService.AdminServiceClient, AsyncUnaryCall<T>> call);
}

/// <summary>
/// A bench that cannot go on (its server did not start, a stream stalled, …): one line under the code of a failed writ
/// command (<c>CliErrors.Failed</c>, the benches run only as writ commands), exit 1.
/// </summary>
public sealed class BenchFailedException(string message) : WritException("WRIT-CLI-FAILED", WritErrorKind.FailedPrecondition, message);
