using Writ.Cli.Commands;
using Writ.IntegrationTests.Harness;
using Writ.Server.Configuration;

namespace Writ.IntegrationTests;

/// <summary>Docs live beside the code: every command and every configuration key must be documented.</summary>
public sealed class DocsTests
{
    [Fact]
    public void Every_command_is_in_the_cli_reference()
    {
        var doc = File.ReadAllText(Path.Combine(Repo.Root, "docs", "cli.md"));
        var missing = AllCommands.Build().Select(c => "writ " + c.Path).Where(p => !doc.Contains(p, StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, "undocumented in docs/cli.md: " + string.Join(", ", missing));
    }

    [Fact]
    public void Every_doc_is_linked_from_the_readme()
    {
        var readme = File.ReadAllText(Path.Combine(Repo.Root, "README.md"));
        var unlinked = Directory.GetFiles(Path.Combine(Repo.Root, "docs"), "*.md").Select(f => "docs/" + Path.GetFileName(f))
            .Where(d => !readme.Contains($"]({d})", StringComparison.Ordinal)).ToList();
        Assert.True(unlinked.Count == 0, "docs the README does not link: " + string.Join(", ", unlinked));
    }

    [Fact]
    public void Every_server_setting_is_in_the_configuration_reference()
    {
        var doc = File.ReadAllText(Path.Combine(Repo.Root, "docs", "configuration.md"));
        var missing = ServerConfigLoader.Keys.Where(k => !doc.Contains($"| `{k.Name}` |", StringComparison.Ordinal)).Select(k => k.Name).ToList();
        Assert.True(missing.Count == 0, "undocumented in docs/configuration.md: " + string.Join(", ", missing));
    }

    [Fact]
    public void Every_log_event_id_is_in_the_telemetry_reference()
    {
        var doc = File.ReadAllText(Path.Combine(Repo.Root, "docs", "telemetry.md"));
        var ids = new[] { typeof(Writ.Server.ServerLog).Assembly, typeof(Writ.Agent.AgentLog).Assembly, typeof(Writ.Protocol.Hosting.HostingLog).Assembly, typeof(Writ.Workload.X509Source).Assembly }
            .SelectMany(a => a.GetTypes())
            .SelectMany(t => t.GetMethods(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic))
            .SelectMany(m => m.GetCustomAttributes(typeof(Microsoft.Extensions.Logging.LoggerMessageAttribute), false).Cast<Microsoft.Extensions.Logging.LoggerMessageAttribute>())
            .Select(a => a.EventId)
            .ToList();
        Assert.True(ids.Count > 30, $"found only {ids.Count} log events: the scan is broken");
        Assert.Equal(ids.Count, ids.Distinct().Count());
        var missing = ids.Where(id => !doc.Contains($"| {id} |", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, "undocumented in docs/telemetry.md: " + string.Join(", ", missing));
    }
}
