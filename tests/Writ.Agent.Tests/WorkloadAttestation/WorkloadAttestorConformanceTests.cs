using Writ.Agent.PeerTracking;
using Writ.Agent.Tests.TestSupport;
using Writ.Agent.WorkloadAttestation;
using Writ.Protocol.Evidence;

namespace Writ.Agent.Tests.WorkloadAttestation;

/// <summary>What every <see cref="IWorkloadAttestor"/> must do, run against each implementation.</summary>
public abstract class WorkloadAttestorConformanceTests
{
    protected abstract IWorkloadAttestor Create(IProcFs proc);

    [Fact]
    public void Has_a_valid_name()
    {
        IWorkloadAttestor attestor = Create(ProcFs.Host);
        Assert.True(Selector.IsValidType(attestor.Name), attestor.Name);
    }

    [Fact]
    public async Task Attests_a_live_process_with_well_formed_selectors_named_after_itself()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        IWorkloadAttestor attestor = Create(ProcFs.Host);

        AttestorResult result = await UnixWorkloadAttestorTests.AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Null(result.Error);
        Assert.Equal(attestor.Name, result.Attestor);
        Assert.NotEmpty(result.Selectors);
        Assert.All(result.Selectors, s =>
        {
            Assert.True(Selector.IsValidType(s.Type), s.Type);
            Assert.False(string.IsNullOrEmpty(s.Value));
        });
        Assert.All(result.Facts, f => Assert.False(string.IsNullOrEmpty(f.Key)));
    }

    [Fact]
    public async Task A_process_in_another_mount_namespace_is_attested_without_a_selector_naming_a_path_there()
    {
        // Paths are resolved in the process's own mount namespace, where `unshare -m` and a bind mount put any file at
        // any path: an attestor may still attest such a process, but none of its selectors may name a file by path.
        Assert.SkipUnless(File.Exists("/usr/bin/unshare"), "needs unshare (util-linux)");
        using Child child = Child.StartExpecting("/usr/bin/sleep", "/usr/bin/unshare", "-m", "/usr/bin/sleep", "30");
        IWorkloadAttestor attestor = Create(ProcFs.Host);

        AttestorResult result = await UnixWorkloadAttestorTests.AttestAsync(attestor, child.Pid, 0, 0);

        Assert.Null(result.Error);
        Assert.NotEmpty(result.Selectors);
        Assert.DoesNotContain(result.Selectors, s => s.Value.StartsWith("path:/", StringComparison.Ordinal) && s.Type == "unix");
    }

    [Fact]
    public async Task A_process_that_has_gone_is_a_one_line_error_not_an_exception()
    {
        using Child child = Child.Start("/usr/bin/sleep", "30");
        Assert.True(ProcessPin.TryCreate(ProcFs.Host, child.Pid, out ProcessPin? pin, out _));
        child.KillAndWait();

        AttestorResult result = await Create(ProcFs.Host).AttestAsync(new WorkloadProcess(new PeerCredentials(child.Pid, 0, 0), pin!), TestContext.Current.CancellationToken);

        Assert.Empty(result.Selectors);
        Assert.False(string.IsNullOrWhiteSpace(result.Error));
        Assert.DoesNotContain('\n', result.Error!);
    }
}

public sealed class UnixWorkloadAttestorConformanceTests : WorkloadAttestorConformanceTests
{
    protected override IWorkloadAttestor Create(IProcFs proc) => new UnixWorkloadAttestor(proc);
}

public sealed class CgroupWorkloadAttestorConformanceTests : WorkloadAttestorConformanceTests
{
    protected override IWorkloadAttestor Create(IProcFs proc) => new CgroupWorkloadAttestor(proc);
}
