using Writ.Policy.Tests.Schema;

namespace Writ.Policy.Tests.Differential;

/// <summary>
/// A crash of the reference process (node dying on a signal, as on a V8 fatal error) is retried once and, if it happens
/// again, reported as an infrastructure failure, never as a mismatch. The crashing bridge is a real node process that
/// kills itself with SIGKILL (crashing-reference.mjs).
/// </summary>
public sealed class ReferenceEngineCrashTests : IDisposable
{
    private static readonly string Script = Path.Combine(CedarTestData.RepoRoot, "tests", "Writ.Policy.Tests", "Differential", "crashing-reference.mjs");
    private readonly string _dir = Directory.CreateTempSubdirectory("writ-crash-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ACrashIsRetriedOnceInAFreshProcessAndTheBatchIsAnswered()
    {
        var marker = Path.Combine(_dir, "crashed");
        using var engine = new ReferenceEngine(Script, new Dictionary<string, string> { ["WRIT_CRASH"] = "once:" + marker });
        var cases = Enumerable.Range(0, 3).Select(i => GeneratedDifferentialTests.CaseFor(900 + i)).ToList();
        var theirs = engine.Answer(cases, validate: true);
        Assert.True(File.Exists(marker), "the first process did not get to crash");
        Assert.Equal(1, engine.Crashes);
        for (var i = 0; i < cases.Count; i++)
        {
            var ours = WritEngine.Answer(cases[i], validate: true);
            Assert.Equal(cases[i].Requests.Count, theirs[i].Answers.Count);
            Assert.All(Enumerable.Range(0, ours.Answers.Count), k => Assert.True(ours.Answers[k].SameAs(theirs[i].Answers[k]), $"{ours.Answers[k]} vs {theirs[i].Answers[k]}"));
        }

        Assert.Equal([true, false], engine.Parses(["permit(principal, action, resource);", "permit(principal"]));   // the fresh process keeps serving
    }

    [Fact]
    public void ASecondCrashFailsAsInfrastructureNotAsAMismatch()
    {
        using var engine = new ReferenceEngine(Script, new Dictionary<string, string> { ["WRIT_CRASH"] = "always" });
        var e = Assert.Throws<ReferenceEngineCrashedException>(() => engine.Answer([GeneratedDifferentialTests.CaseFor(901)], validate: true));
        Assert.Equal(2, engine.Crashes);
        Assert.StartsWith("INFRASTRUCTURE FAILURE, not a mismatch: the Cedar reference engine process", e.Message, StringComparison.Ordinal);
        Assert.Contains("crashed twice", e.Message, StringComparison.Ordinal);
        Assert.Contains("killed by signal 9", e.Message, StringComparison.Ordinal);
        Assert.Contains("simulated V8 crash", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("MISMATCH", e.Message, StringComparison.Ordinal);
        Assert.Throws<ReferenceEngineCrashedException>(() => engine.Parses(["permit(principal, action, resource);"]));
    }
}
