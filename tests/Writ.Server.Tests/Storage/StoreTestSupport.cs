using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Storage;

/// <summary>A clock the test moves by hand; timers (poll intervals) still run on real time.</summary>
internal sealed class ManualTime(DateTimeOffset start) : TimeProvider
{
    private long _ticks = start.UtcTicks;

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}

internal static class StoreAssert
{
    public static void OneLine(Exception e)
    {
        Assert.False(string.IsNullOrWhiteSpace(e.Message), "error message is empty");
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
        Assert.DoesNotContain("   at ", e.Message, StringComparison.Ordinal);
    }

    public static async Task<T> ThrowsOneLineAsync<T>(Func<Task> action) where T : Exception
    {
        var e = await Assert.ThrowsAsync<T>(action);
        OneLine(e);
        return e;
    }
}

internal static class Entries
{
    public static Selector Sel(string text) =>
        Selector.TryParse(text, out var s, out var error) ? s : throw new ArgumentException(error);

    public static RegistrationEntry New(string spiffeId, string parentId, params string[] selectors) => new()
    {
        SpiffeId = spiffeId,
        ParentId = parentId,
        Selectors = selectors.Select(Sel).ToArray(),
    };
}
