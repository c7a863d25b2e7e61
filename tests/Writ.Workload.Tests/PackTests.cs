using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;

namespace Writ.Workload.Tests;

/// <summary><c>dotnet pack</c> makes a NuGet package of the SDK with its README, XML docs and a dependency on Writ.Spiffe.</summary>
public sealed class PackTests : IDisposable
{
    private readonly DirectoryInfo _out = Directory.CreateTempSubdirectory("writ-pack-");

    public void Dispose() => _out.Delete(recursive: true);

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Writ.slnx")))
            {
                return d.FullName;
            }
        }
        throw new InvalidOperationException("Writ.slnx not found above the test binaries");
    }

    private async Task PackAsync(string project)
    {
        // --no-build: the test project's build already built the SDK in Release (the package holds those binaries).
        var psi = new ProcessStartInfo("dotnet", ["pack", Path.Combine(RepoRoot(), "src", project), "-c", "Release", "--no-build", "--no-restore", "-o", _out.FullName])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await p.WaitForExitAsync(TestContext.Current.CancellationToken);
        Assert.True(p.ExitCode == 0, $"dotnet pack {project} failed: {await stdout}{await stderr}");
    }

    [Fact]
    public async Task The_SDK_package_has_its_README_XML_docs_and_depends_on_Writ_Spiffe()
    {
        await PackAsync("Writ.Workload");
        await PackAsync("Writ.Spiffe");

        var sdk = Assert.Single(_out.GetFiles("Writ.Workload.*.nupkg"));
        using (var zip = ZipFile.OpenRead(sdk.FullName))
        {
            var names = zip.Entries.Select(e => e.FullName).ToList();
            Assert.Contains("README.md", names);
            Assert.Contains("lib/net10.0/Writ.Workload.dll", names);
            var xml = zip.GetEntry("lib/net10.0/Writ.Workload.xml");
            Assert.NotNull(xml);
            using (var docs = xml.Open())
            {
                var members = XDocument.Load(docs).Descendants("member").Select(m => (string?)m.Attribute("name")).ToList();
                Assert.Contains("T:Writ.Workload.X509Source", members);
                Assert.Contains("T:Writ.Workload.Http.SpiffeMtls", members);
                Assert.Contains(members, m => m!.StartsWith("M:Writ.Workload.Kestrel.WritKestrelExtensions.UseWritServerCertificate", StringComparison.Ordinal));
            }
            using var nuspecStream = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open();
            var nuspec = XDocument.Load(nuspecStream);
            var deps = nuspec.Descendants().Where(e => e.Name.LocalName == "dependency").Select(e => (string?)e.Attribute("id")).ToList();
            Assert.Contains("Writ.Spiffe", deps);
            Assert.Contains("Grpc.Net.Client", deps);
            Assert.DoesNotContain(deps, d => d!.StartsWith("Writ.", StringComparison.Ordinal) && d is not "Writ.Spiffe");
            Assert.Equal("README.md", nuspec.Descendants().Single(e => e.Name.LocalName == "readme").Value);
        }

        var spiffe = Assert.Single(_out.GetFiles("Writ.Spiffe.*.nupkg"));
        using var spiffeZip = ZipFile.OpenRead(spiffe.FullName);
        Assert.Contains(spiffeZip.Entries, e => e.FullName == "README.md");
        Assert.Contains(spiffeZip.Entries, e => e.FullName == "lib/net10.0/Writ.Spiffe.xml");
    }
}
