using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Writ.Protocol.Errors;

namespace Writ.Server.Tests.Oidc;

/// <summary>A logger that keeps every line (event id, level, formatted message) so tests can see what was logged, and what was not.</summary>
public sealed class ListLogger : ILogger
{
    public ConcurrentQueue<(int EventId, LogLevel Level, string Message)> Lines { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        Lines.Enqueue((eventId.Id, logLevel, formatter(state, exception)));
    }

    public int Count(int eventId) => Lines.Count(l => l.EventId == eventId);
}

internal static class OidcAssert
{
    /// <summary>
    /// Awaits a refusal with <paramref name="code"/> and checks the house rules for its message: one line, and nothing of
    /// the token's payload or signature in it.
    /// </summary>
    public static async Task<WritException> RefusedAsync(string code, string token, Func<Task> act)
    {
        var e = await Assert.ThrowsAsync<WritException>(act);
        Assert.True(e.Code == code, $"expected {code}, got {e.Code}: {e.Message}");
        Assert.DoesNotContain('\n', e.Message);
        foreach (var part in token.Split('.').Skip(1).Where(p => p.Length >= 8))
        {
            Assert.DoesNotContain(part, e.Message, StringComparison.Ordinal);
        }
        Assert.Equal(code is "WRIT-OIDC-ISSUER-UNREACHABLE" or "WRIT-OIDC-ISSUER-MISCONFIGURED" ? WritErrorKind.Unavailable : WritErrorKind.Unauthenticated, e.Kind);
        return e;
    }

    /// <summary>The repository root (the folder holding Writ.slnx).</summary>
    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Writ.slnx")))
                {
                    return dir.FullName;
                }
            }
            throw new InvalidOperationException("Writ.slnx not found above the test binaries");
        }
    }
}
