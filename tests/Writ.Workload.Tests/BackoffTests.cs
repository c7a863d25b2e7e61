namespace Writ.Workload.Tests;

public class BackoffTests
{
    [Fact]
    public void Delays_double_up_to_the_cap_with_jitter_between_half_and_all_and_reset_after_success()
    {
        var jitter = 1.0;
        var b = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), () => jitter);
        var full = Enumerable.Range(0, 8).Select(_ => b.Next().TotalSeconds).ToList();
        Assert.Equal([1, 2, 4, 8, 16, 30, 30, 30], full);

        b.Reset();
        jitter = 0;
        Assert.Equal(0.5, b.Next().TotalSeconds);   // half of the first delay at the lowest jitter
        Assert.Equal(1, b.Next().TotalSeconds);
    }

    [Fact]
    public void A_jitter_source_out_of_range_cannot_stretch_or_invert_the_delay()
    {
        var b = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), () => 7);
        Assert.Equal(1, b.Next().TotalSeconds);
        var c = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), () => -3);
        Assert.Equal(0.5, c.Next().TotalSeconds);
    }
}
