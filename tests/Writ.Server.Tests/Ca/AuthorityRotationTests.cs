using Microsoft.Extensions.Logging.Abstractions;
using Writ.Server.Ca;
using Writ.Server.Ca.Rotation;
using Writ.Server.Keys;
using static Writ.Server.Ca.AuthorityStatus;

namespace Writ.Server.Tests.Ca;

/// <summary>
/// The one rotation state machine, row by row of its transition table, run for both kinds of authority with their real
/// strategies (keys in a memory key manager): X.509 and JWT must move through exactly the same states.
/// </summary>
public sealed class AuthorityRotationTests
{
    private static readonly TimeSpan Ttl = TimeSpan.FromHours(1);
    private static readonly TimeSpan Margin = TimeSpan.FromMinutes(10);
    private static readonly DateTimeOffset Start = CaHarness.Start;

    /// <summary>Authorities made at these fractions of the TTL, in this status; the pass at <c>Now</c>; the statuses after it.</summary>
    private sealed record Row((AuthorityStatus Status, double MadeAt)[] Given, double Now, bool Changes, AuthorityStatus[] Then);

    private static readonly Dictionary<string, Row> Advance = new(StringComparer.Ordinal)
    {
        ["nothing yet: a new authority signs at once"] = new([], 0, true, [Active]),
        ["young active: nothing to do"] = new([(Active, 0)], 0.4, false, [Active]),
        ["active past half its life: a successor is prepared (and published)"] = new([(Active, 0)], 0.51, true, [Active, Prepared]),
        ["prepared waits until a sixth of the active's life remains"] = new([(Active, 0), (Prepared, 0.51)], 0.8, false, [Active, Prepared]),
        ["a sixth remains: the prepared one signs, the active retires"] = new([(Active, 0), (Prepared, 0.51)], 0.84, true, [Old, Active]),
        ["active expired, prepared unexpired: the prepared one signs"] = new([(Active, 0), (Prepared, 0.51)], 1.01, true, [Old, Active]),
        ["active expired, nothing prepared: a new authority signs at once"] = new([(Active, 0)], 1.01, true, [Old, Active]),
        ["active and prepared expired: a new authority signs at once"] = new([(Active, 0), (Prepared, -0.5)], 1.01, true, [Old, Prepared, Active]),
        ["a retired authority stays while the successor signs"] = new([(Old, 0), (Active, 0.84)], 0.9, false, [Old, Active]),
        ["an expired active beside an unexpired one: the unexpired one signs, nothing changes"] = new([(Active, -0.9), (Active, 0.2)], 0.3, false, [Active, Active]),
        ["two expired actives and nothing prepared: one new signer, both others retired"] = new([(Active, -1.5), (Active, -1.2)], 0.1, true, [Old, Old, Active]),
    };

    private static readonly Dictionary<string, Row> Prune = new(StringComparer.Ordinal)
    {
        ["a retired authority expired more than the margin ago is pruned"] = new([(Old, 0), (Active, 0.84)], 1.2, true, [Active]),
        ["within the margin it stays"] = new([(Old, 0), (Active, 0.84)], 1.1, false, [Old, Active]),
        ["an expired prepared authority is pruned too"] = new([(Prepared, -1.5), (Active, 0)], 0.1, true, [Active]),
        ["the signing authority is never pruned, even expired"] = new([(Active, 0)], 2, false, [Active]),
    };

    public static TheoryData<string, string> AdvanceRows() => Rows(Advance.Keys);

    public static TheoryData<string, string> PruneRows() => Rows(Prune.Keys);

    private static TheoryData<string, string> Rows(IEnumerable<string> names)
    {
        var data = new TheoryData<string, string>();
        foreach (var kind in new[] { "x509", "jwt" })
        {
            foreach (var name in names)
            {
                data.Add(kind, name);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(AdvanceRows))]
    public Task One_pass_makes_the_transition_the_table_says(string kind, string row) =>
        kind == "x509" ? RunAsync(X509Kind(), Advance[row], prune: false) : RunAsync(JwtKind(), Advance[row], prune: false);

    [Theory]
    [MemberData(nameof(PruneRows))]
    public Task Pruning_removes_exactly_what_the_table_says(string kind, string row) =>
        kind == "x509" ? RunAsync(X509Kind(), Prune[row], prune: true) : RunAsync(JwtKind(), Prune[row], prune: true);

    [Theory]
    [InlineData("x509")]
    [InlineData("jwt")]
    public Task A_whole_life_goes_active_prepared_swap_retire_prune(string kind) =>
        kind == "x509" ? WholeLifeAsync(X509Kind()) : WholeLifeAsync(JwtKind());

    private static X509AuthorityKind X509Kind() =>
        new(CaHarness.Td, new CaOptions { CaTtl = Ttl }, new MemoryKeyManager(), upstream: null, NullLogger.Instance);

    private static JwtAuthorityKind JwtKind() => new(new CaOptions { JwtKeyTtl = Ttl }, new MemoryKeyManager(), NullLogger.Instance);

    private static DateTimeOffset At(double fraction) => Start + (Ttl * fraction);

    private static async Task RunAsync<T>(IAuthorityKind<T> kind, Row row, bool prune) where T : class, IAuthorityRecord<T>
    {
        var list = new List<T>();
        foreach (var (status, madeAt) in row.Given)
        {
            list.Add(await kind.CreateAsync(status, At(madeAt), CaTest.Ct));
        }
        var given = list.Select(a => a.KeyId).ToList();
        var rotation = new AuthorityRotation<T>(kind, Margin);

        var changed = prune ? rotation.Prune(list, At(row.Now)).Count > 0 : await rotation.AdvanceAsync(list, At(row.Now), CaTest.Ct);

        Assert.Equal(row.Changes, changed);
        Assert.Equal(row.Then, list.Select(a => a.Status));
        if (!prune)
        {
            // Authorities keep their place and identity; a new one is appended.
            Assert.Equal(given, list.Take(given.Count).Select(a => a.KeyId));
            Assert.Equal(row.Then.Length, list.Count);
            Assert.Single(list, a => a.Status == Active && a.NotAfter > At(row.Now));
        }
    }

    /// <summary>Every minute of three lifetimes: at most one active signer at any time, and the life of each authority in order.</summary>
    private static async Task WholeLifeAsync<T>(IAuthorityKind<T> kind) where T : class, IAuthorityRecord<T>
    {
        var rotation = new AuthorityRotation<T>(kind, Margin);
        var list = new List<T>();
        var seen = new Dictionary<string, List<AuthorityStatus>>(StringComparer.Ordinal);
        for (var t = TimeSpan.Zero; t < Ttl * 3; t += TimeSpan.FromMinutes(1))
        {
            var now = Start + t;
            await rotation.AdvanceAsync(list, now, CaTest.Ct);
            rotation.Prune(list, now);
            Assert.Single(list, a => a.Status == Active && a.NotAfter > now);
            foreach (var a in list)
            {
                var history = seen.TryGetValue(a.KeyId, out var h) ? h : seen[a.KeyId] = [];
                if (history.Count == 0 || history[^1] != a.Status)
                {
                    history.Add(a.Status);
                }
            }
        }
        Assert.True(seen.Count >= 4, $"only {seen.Count} authorities in three lifetimes");
        Assert.Equal([Active, Old], seen.Values.First());
        foreach (var history in seen.Values.Skip(1).SkipLast(1))
        {
            Assert.Equal([Prepared, Active, Old], history);
        }
    }
}
