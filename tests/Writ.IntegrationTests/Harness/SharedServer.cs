namespace Writ.IntegrationTests.Harness;

/// <summary>One server for a test class whose tests do not disturb each other (each uses its own IDs).</summary>
public sealed class SharedServer : IAsyncLifetime
{
    private readonly TempDir _dir = new();

    public ServerProcess Server { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Server = await ServerProcess.StartAsync(_dir["server"]);

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        _dir.Dispose();
    }
}
