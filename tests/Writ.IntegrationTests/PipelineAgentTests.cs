using System.Text.RegularExpressions;
using Writ.IntegrationTests.Harness;
using Writ.Server.Policy;

namespace Writ.IntegrationTests;

/// <summary>The pipeline with a real agent and real workload processes: a denial reaches the workload with a decision id that `writ explain` resolves.</summary>
public sealed partial class PipelineAgentTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [GeneratedRegex("d-[0-9a-f]{20}")]
    private static partial Regex DecisionId();

    /// <summary>Pushes the default policies plus a forbid of every workload whose path matches <paramref name="pathGlob"/>; waits until the server uses it.</summary>
    public static async Task<string> PushForbidAsync(AgentRig rig, string id, string pathGlob)
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(Path.Combine(dir.Path, "default.cedar"), WritPolicyCompiler.DefaultFiles[0].Text, Ct);
        await File.WriteAllTextAsync(Path.Combine(dir.Path, "freeze.cedar"), $$"""
            @id("{{id}}")
            forbid (principal is Writ::Workload, action, resource)
            when { resource.path like "{{pathGlob}}" };
            """, Ct);
        var push = await rig.Server.WritAsync("policy", "push", "--file", dir.Path);
        Assert.True(push.ExitCode == 0, push.ToString());
        var version = Regex.Match(push.Stdout, @"pushed policy version (\d+)").Groups[1].Value;
        await rig.Server.Stderr.WaitForAsync(l => l.Contains($"Issuance policy version {version} active", StringComparison.Ordinal), TimeSpan.FromSeconds(20), () => rig.Server.HasExited);
        return version;
    }

    [Fact]
    public async Task A_real_workload_refused_by_a_pushed_forbid_gets_a_decision_id_that_explain_resolves()
    {
        await using var rig = await AgentRig.StartAsync();
        await rig.CreateEntryAsync("spiffe://example.org/payments/worker", ["unix:uid:0"]);
        await AgentTests.WaitForSvidAsync(rig);   // the entry alone is enough under the default policy
        var before = await rig.WorkloadAsync("svid", "fetch", "--output", "json");
        Assert.True(before.ExitCode == 0, before.ToString());

        var version = await PushForbidAsync(rig, "freeze-payments", "/payments/*");

        // A new workload process is a new instance: the agent asks the server, the server refuses.
        var after = await rig.WorkloadAsync("svid", "fetch", "--output", "json");
        // Asked for JSON: the error is JSON too, under the code the server gave the refusal.
        Expect.OneJsonError(after, "WRIT-ISSUE-DENIED", "denied by policy 'freeze-payments'");
        var id = DecisionId().Match(after.Stderr).Value;
        Assert.NotEmpty(id);
        Assert.Contains($"writ explain {id}", after.Stderr, StringComparison.Ordinal);

        var explained = await rig.Server.WritAsync("explain", id);
        Assert.True(explained.ExitCode == 0, explained.ToString());
        Assert.Contains("DENY — denied by policy 'freeze-payments'", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains($"policy version        {version} ", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains("spiffe://example.org/payments/worker", explained.Stdout, StringComparison.Ordinal);
        // The evidence is the real process's, as the agent proved it from the kernel.
        Assert.Contains("selector  unix:uid:0", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains("selector  unix:sha256:", explained.Stdout, StringComparison.Ordinal);
        Assert.Contains("agent                 " + rig.Agent.AgentId, explained.Stdout, StringComparison.Ordinal);
    }
}
