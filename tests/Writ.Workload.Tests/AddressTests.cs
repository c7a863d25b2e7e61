namespace Writ.Workload.Tests;

public class AddressTests
{
    [Theory]
    [InlineData("unix:///run/writ/agent.sock", "/run/writ/agent.sock")]
    [InlineData("unix:/run/writ/agent.sock", "/run/writ/agent.sock")]
    [InlineData("  unix:///tmp/a  ", "/tmp/a")]
    public void Unix_forms_give_the_socket_path(string address, string path)
    {
        Assert.Equal(path, WorkloadApiAddress.ResolveSocketPath(address));
    }

    [Theory]
    [InlineData("tcp://127.0.0.1:8081")]
    [InlineData("unix://host/run/agent.sock")]
    [InlineData("unix:relative/agent.sock")]
    [InlineData("unix:///")]
    [InlineData("unix:")]
    [InlineData("/run/writ/agent.sock")]
    [InlineData("unix:///run/agent.sock?x=1")]
    [InlineData("http://localhost")]
    public void Anything_else_is_refused_with_WRIT_SDK_ADDRESS(string address)
    {
        var e = Assert.Throws<WorkloadApiException>(() => WorkloadApiAddress.ResolveSocketPath(address));
        Assert.Equal("WRIT-SDK-ADDRESS", e.Code);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("unix:///", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sources_refuse_a_bad_address_before_dialling()
    {
        var e = await Assert.ThrowsAsync<WorkloadApiException>(() => X509Source.CreateAsync(new X509SourceOptions { Address = "tcp://127.0.0.1:1" }, TestContext.Current.CancellationToken));
        Assert.Equal(WorkloadErrors.Address, e.Code);
    }

    [Fact]
    public void Serials_compare_as_numbers()
    {
        Assert.Equal("AB01", SerialNumbers.Normalize("00:ab:01"));
        Assert.Equal("AB01", SerialNumbers.Normalize("ab01"));
        Assert.Equal("0", SerialNumbers.Normalize("00"));
        Assert.NotEqual(SerialNumbers.Normalize("AB01"), SerialNumbers.Normalize("AB010"));
    }
}
