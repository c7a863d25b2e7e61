using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Writ.Server.Ca;
using Writ.Server.Keys;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;

namespace Writ.Server.Tests.Ca;

/// <summary>
/// A CA under test: a real SQLite store on a temp file, a fake clock the test moves, and every published bundle recorded.
/// </summary>
internal sealed class CaHarness : IAsyncDisposable
{
    /// <summary>A whole second, so certificate times (second precision) equal clock times.</summary>
    public static readonly DateTimeOffset Start = new(2026, 3, 1, 8, 0, 0, TimeSpan.Zero);

    public static readonly TrustDomain Td = TrustDomain.Parse("example.org");
    public static readonly SpiffeId Workload = SpiffeId.Parse("spiffe://example.org/workload");

    private CaHarness(string dir, FakeTimeProvider time, IWritStore store)
    {
        Dir = dir;
        Time = time;
        Store = store;
    }

    public string Dir { get; }
    public FakeTimeProvider Time { get; }
    public IWritStore Store { get; }
    public string DbPath => Path.Combine(Dir, "writ.db");
    public string KeyPath => Path.Combine(Dir, "keys.json");

    /// <summary>Every bundle any CA of this harness published through <see cref="WritCa.BundleChanged"/>, in order.</summary>
    public List<TrustBundle> Published { get; } = [];

    public CapturingLogger<WritCa> Log { get; } = new();

    public static async Task<CaHarness> CreateAsync(DateTimeOffset? start = null)
    {
        var dir = Directory.CreateTempSubdirectory("writ-ca-").FullName;
        var time = new FakeTimeProvider(start ?? Start);
        var store = await WritStoreFactory.OpenAsync("sqlite", Path.Combine(dir, "writ.db"), time, TestContext.Current.CancellationToken);
        return new CaHarness(dir, time, store);
    }

    public WritCa NewCa(CaOptions options, IKeyManager keys)
    {
        var ca = new WritCa(Td, options, keys, Store, Time, Log);
        ca.BundleChanged += Published.Add;
        return ca;
    }

    public async Task<WritCa> StartCaAsync(CaOptions options, IKeyManager keys)
    {
        var ca = NewCa(options, keys);
        await ca.InitializeAsync(TestContext.Current.CancellationToken);
        return ca;
    }

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp directory left behind is not a test failure.
        }
    }
}

internal static class CaTest
{
    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A fresh workload key, as an agent's CSR would carry.</summary>
    public static PublicKey WorkloadKey()
    {
        using var k = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new PublicKey(k);
    }

    public static HashSet<string> Thumbprints(TrustBundle b) => b.X509Authorities.Select(c => c.Thumbprint).ToHashSet(StringComparer.Ordinal);

    public static HashSet<string> Kids(TrustBundle b) => b.JwtAuthorities.Keys.ToHashSet(StringComparer.Ordinal);

    /// <summary>The bundle root that issued <paramref name="leaf"/> (by subject name; CA subjects carry a random serial).</summary>
    public static X509Certificate2? IssuerIn(TrustBundle b, X509Certificate2 leaf) =>
        b.X509Authorities.SingleOrDefault(c => c.SubjectName.RawData.AsSpan().SequenceEqual(leaf.IssuerName.RawData));

    public static string KidOf(string jwt)
    {
        Assert.True(Writ.Spiffe.Jwt.JwtSvidValidator.TryReadUnverified(jwt, out _, out var error), error);
        var header = System.Text.Json.JsonDocument.Parse(Base64UrlDecode(jwt.Split('.')[0])).RootElement;
        return header.GetProperty("kid").GetString()!;
    }

    public static string AlgOf(string jwt)
    {
        var header = System.Text.Json.JsonDocument.Parse(Base64UrlDecode(jwt.Split('.')[0])).RootElement;
        return header.GetProperty("alg").GetString()!;
    }

    private static byte[] Base64UrlDecode(string s)
    {
        s = s.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(s + new string('=', (4 - (s.Length % 4)) % 4));
    }

    public static void OneLine(Exception e)
    {
        Assert.False(string.IsNullOrWhiteSpace(e.Message), "error message is empty");
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }

    public static async Task<string> JournalTextAsync(IWritStore store)
    {
        var j = await store.CaJournal.GetAsync("ca", Ct);
        return j is null ? "" : System.Text.Encoding.UTF8.GetString(j.Data);
    }
}

/// <summary>Runs a real program (openssl) and returns its exit code and output.</summary>
internal static class Proc
{
    public static async Task<(int Exit, string Output)> RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync(CaTest.Ct);
        var stderr = p.StandardError.ReadToEndAsync(CaTest.Ct);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(CaTest.Ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(deadline.Token);
        return (p.ExitCode, (await stdout) + (await stderr));
    }

    /// <summary><c>openssl verify</c> at the fake clock's time (openssl would otherwise use the machine's clock).</summary>
    public static Task<(int Exit, string Output)> OpensslVerifyAsync(DateTimeOffset at, string caFile, string? untrusted, string leaf)
    {
        List<string> args = ["verify", "-x509_strict", "-attime", at.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture), "-CAfile", caFile];
        if (untrusted is not null)
        {
            args.AddRange(["-untrusted", untrusted]);
        }
        args.Add(leaf);
        return RunAsync("openssl", [.. args]);
    }
}

/// <summary>Keeps every log entry with its event id, so a test can require that every CA event has one.</summary>
internal sealed class CapturingLogger<T> : ILogger<T>
{
    public ConcurrentQueue<(LogLevel Level, EventId Id, string Message)> Entries { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, eventId, formatter(state, exception)));
}

/// <summary>The real store, except that bundle or journal writes fail while the test says so (a database outage).</summary>
internal sealed class FlakyStore(IWritStore inner) : IWritStore
{
    public bool FailBundleWrites { get; set; }
    public bool FailJournalWrites { get; set; }

    public string Kind => inner.Kind;
    public IEntryStore Entries => inner.Entries;
    public INodeStore Nodes => inner.Nodes;
    public IJoinTokenStore JoinTokens => inner.JoinTokens;
    public IBundleStore Bundles => new FlakyBundles(this, inner.Bundles);
    public ICaJournalStore CaJournal => new FlakyJournal(this, inner.CaJournal);
    public IMetadataStore Metadata => inner.Metadata;
    public ITpmReferenceSetStore TpmReferenceSets => inner.TpmReferenceSets;
    public ICiSessionStore CiSessions => inner.CiSessions;
    public IFederationStore Federations => inner.Federations;
    public ILedgerStore Ledger => inner.Ledger;
    public IPolicyStore Policies => inner.Policies;
    public IRevocationStore Revocations => inner.Revocations;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;   // the harness owns the inner store

    private sealed class FlakyBundles(FlakyStore owner, IBundleStore inner) : IBundleStore
    {
        public Task<StoredBundle?> GetAsync(string trustDomain, CancellationToken ct) => inner.GetAsync(trustDomain, ct);
        public Task<IReadOnlyList<StoredBundle>> ListAsync(CancellationToken ct) => inner.ListAsync(ct);
        public Task PutAsync(StoredBundle bundle, CancellationToken ct) =>
            owner.FailBundleWrites ? throw new StoreUnavailableException("store down (test)") : inner.PutAsync(bundle, ct);
    }

    private sealed class FlakyJournal(FlakyStore owner, ICaJournalStore inner) : ICaJournalStore
    {
        public Task<CaJournal?> GetAsync(string name, CancellationToken ct) => inner.GetAsync(name, ct);
        public Task PutAsync(CaJournal journal, CancellationToken ct) =>
            owner.FailJournalWrites ? throw new StoreUnavailableException("store down (test)") : inner.PutAsync(journal, ct);
    }
}
