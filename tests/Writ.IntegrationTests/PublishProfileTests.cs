using System.Xml.Linq;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests;

/// <summary>
/// The publish profiles give a self-contained single-file `writ` for one RID (issue #11.4, #11.8). Publishing takes
/// minutes, so this checks the properties; docs/install.md records a publish by hand (size, command).
/// </summary>
public sealed class PublishProfileTests
{
    [Theory]
    [InlineData("linux-x64")]
    [InlineData("linux-arm64")]
    public void The_profile_publishes_a_self_contained_single_file_for_its_rid_only(string rid)
    {
        var file = Path.Combine(Repo.Root, "src", "Writ.Cli", "Properties", "PublishProfiles", rid + ".pubxml");
        var properties = XDocument.Load(file).Descendants("PropertyGroup").Elements()
            .ToDictionary(e => e.Name.LocalName, e => e.Value.Trim(), StringComparer.Ordinal);
        Assert.Equal(rid, properties["RuntimeIdentifier"]);   // restores and copies the natives of this RID only
        Assert.Equal("true", properties["SelfContained"]);    // the file's hash covers the runtime, not a generic launcher
        Assert.Equal("true", properties["PublishSingleFile"]);
        Assert.Equal("Release", properties["Configuration"]);
        // Nothing extracted at start into a directory the running user can write.
        Assert.Equal("false", properties["IncludeNativeLibrariesForSelfExtract"]);
        Assert.Equal("false", properties["EnableCompressionInSingleFile"]);
        Assert.EndsWith($"artifacts/publish/{rid}/", properties["PublishDir"], StringComparison.Ordinal);
        var install = File.ReadAllText(Path.Combine(Repo.Root, "docs", "install.md"));
        Assert.Contains($"-p:PublishProfile={rid}", install, StringComparison.Ordinal);
    }
}
