using Writ.Server.Ledger;
using Writ.Server.Storage;
using Writ.Protocol.Evidence;

namespace Writ.Server.Tests.Ledger;

public sealed class LedgerVerifierTests
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>A correct chain of n records, as a store would write it.</summary>
    private static List<LedgerEvent> Chain(int n)
    {
        var list = new List<LedgerEvent>();
        var prev = LedgerHash.Genesis;
        for (var i = 1; i <= n; i++)
        {
            var e = new LedgerEvent
            {
                Seq = i,
                At = T0.AddSeconds(i),
                Kind = i % 2 == 0 ? "x509.issued" : "entry.created",
                Actor = "uid:1000",
                Subject = $"s-{i}",
                DecisionId = i % 2 == 0 ? $"d-{i}" : null,
                DataJson = $$"""{"i":{{i}}}""",
                PrevHash = prev,
            };
            e = e with { Hash = LedgerHash.Compute(e, prev) };
            list.Add(e);
            prev = e.Hash;
        }
        return list;
    }

    private static LedgerVerifier Run(IEnumerable<LedgerEvent> events, LedgerHead? head, LedgerVerifier? v = null)
    {
        v ??= new LedgerVerifier();
        foreach (var e in events)
        {
            if (!v.Add(e))
                break;
        }
        v.Finish(head);
        return v;
    }

    private static LedgerHead HeadOf(List<LedgerEvent> chain) => new(chain[^1].Seq, chain[^1].Hash);

    [Fact]
    public void An_untouched_chain_verifies_up_to_its_head()
    {
        var chain = Chain(10);
        var v = Run(chain, HeadOf(chain));
        Assert.Null(v.Problem);
        Assert.Equal(10, v.Checked);
        Assert.Equal(chain[^1].Hash, v.LastHash);
    }

    [Fact]
    public void An_empty_ledger_verifies_against_the_genesis_head() =>
        Assert.Null(Run([], new LedgerHead(0, LedgerHash.Genesis)).Problem);

    [Theory]
    [InlineData("data")]
    [InlineData("actor")]
    [InlineData("subject")]
    [InlineData("kind")]
    [InlineData("decision")]
    [InlineData("time")]
    public void An_altered_field_names_that_record(string field)
    {
        var chain = Chain(10);
        var e = chain[6];
        chain[6] = field switch
        {
            "data" => e with { DataJson = """{"i":999}""" },
            "actor" => e with { Actor = "uid:0" },
            "subject" => e with { Subject = "other" },
            "kind" => e with { Kind = "entry.deleted" },
            "decision" => e with { DecisionId = e.DecisionId is null ? "" : null },
            _ => e with { At = e.At.AddTicks(10) },
        };
        var v = Run(chain, HeadOf(chain));
        Assert.Equal(7, v.Problem!.Seq);
        Assert.Equal("ledger record 7 was altered (its hash does not match its contents): restore the database from a backup", v.Problem.Message);
        Assert.Equal(6, v.Checked);
    }

    [Fact]
    public void A_deleted_middle_record_is_named()
    {
        var chain = Chain(10);
        chain.RemoveAt(4);   // seq 5
        var v = Run(chain, HeadOf(chain));
        Assert.Equal(5, v.Problem!.Seq);
        Assert.StartsWith("ledger record 5 is missing (the next record is 6)", v.Problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Records_deleted_from_the_end_are_caught_by_the_head()
    {
        var chain = Chain(10);
        var head = HeadOf(chain);
        var v = Run(chain.Take(8), head);
        Assert.Equal(9, v.Problem!.Seq);
        Assert.Contains("records 9 to 10 are missing", v.Problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_attacker_who_rewrites_one_record_and_its_hash_breaks_the_next_link()
    {
        var chain = Chain(10);
        var forged = chain[3] with { Actor = "uid:0" };
        chain[3] = forged with { Hash = LedgerHash.Compute(forged, forged.PrevHash) };
        var v = Run(chain, HeadOf(chain));
        Assert.Equal(5, v.Problem!.Seq);
        Assert.Contains("does not link to record 4", v.Problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_rewritten_whole_chain_verifies_but_loses_its_anchor()
    {
        var chain = Chain(10);
        var anchor = chain[5].Hash;
        // Rewrite from record 3 on, recomputing every hash: internally consistent.
        var prev = chain[1].Hash;
        for (var i = 2; i < chain.Count; i++)
        {
            var e = chain[i] with { PrevHash = prev, Actor = "uid:0" };
            chain[i] = e with { Hash = LedgerHash.Compute(e, prev) };
            prev = chain[i].Hash;
        }
        var rewritten = Run(chain, HeadOf(chain), new LedgerVerifier { Anchor = anchor });
        Assert.Null(rewritten.Problem);
        Assert.Null(rewritten.AnchorSeq);

        var honest = Chain(10);
        Assert.Equal(6, Run(honest, HeadOf(honest), new LedgerVerifier { Anchor = anchor }).AnchorSeq);
    }

    [Fact]
    public void A_head_that_disagrees_with_the_last_record_is_reported()
    {
        var chain = Chain(3);
        var v = Run(chain, new LedgerHead(3, new byte[32]));
        Assert.Equal(3, v.Problem!.Seq);
        Assert.Contains("ledger head", v.Problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_duplicated_record_is_reported()
    {
        var chain = Chain(4);
        chain.Insert(2, chain[1]);
        var v = Run(chain, HeadOf(chain));
        Assert.Equal(2, v.Problem!.Seq);
        Assert.Contains("appears again", v.Problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_partial_export_is_checked_from_its_first_record()
    {
        var chain = Chain(10);
        var v = Run(chain.Skip(4), null, LedgerVerifier.FromFirstRecord());
        Assert.Null(v.Problem);
        Assert.Equal(6, v.Checked);
        var altered = chain.Skip(4).ToList();
        altered[2] = altered[2] with { Subject = "x" };
        Assert.Equal(7, Run(altered, null, LedgerVerifier.FromFirstRecord()).Problem!.Seq);
        // Starting a full verification there instead says record 1 is missing.
        Assert.Equal(1, Run(chain.Skip(4), null).Problem!.Seq);
    }

    private static LedgerCheckpoint CheckpointAt(LedgerEvent e) => new(e.Seq, e.Hash, T0.ToUnixTimeSeconds(), "k", []);

    private static LedgerVerifier FromFirstRecordWith(LedgerCheckpoint cp)
    {
        var v = LedgerVerifier.FromFirstRecord();
        v.Checkpoint = cp;
        return v;
    }

    [Fact]
    public void An_attacker_export_that_starts_after_the_checkpoint_with_a_forged_link_does_not_match()
    {
        // Checkpoint at record 5; the attacker exports from record 6 on, rewrites them and recomputes every hash from
        // a forged previous hash: internally consistent, and it reaches past the checkpoint.
        var chain = Chain(10);
        var cp = CheckpointAt(chain[4]);
        var prev = new byte[LedgerHash.Size];
        var forged = new List<LedgerEvent>();
        foreach (var e in chain.Skip(5))
        {
            var f = e with { PrevHash = prev, Actor = "uid:0" };
            f = f with { Hash = LedgerHash.Compute(f, prev) };
            forged.Add(f);
            prev = f.Hash;
        }
        var v = Run(forged, null, FromFirstRecordWith(cp));
        Assert.Equal(6, v.Problem!.Seq);
        Assert.Contains("does not link to the signed checkpoint", v.Problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_export_that_starts_beyond_the_record_after_the_checkpoint_does_not_match()
    {
        var chain = Chain(10);
        var v = Run(chain.Skip(6), null, FromFirstRecordWith(CheckpointAt(chain[4])));
        Assert.Equal(7, v.Problem!.Seq);
        Assert.Contains("cannot be checked against the checkpoint", v.Problem.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)] // from record 1
    [InlineData(3)] // from record 4, which contains the checkpoint's record 5
    [InlineData(5)] // from record 6, linked to the checkpoint's hash
    public void An_honest_export_that_connects_to_the_checkpoint_matches(int skip)
    {
        var chain = Chain(10);
        var v = skip == 0 ? new LedgerVerifier() : LedgerVerifier.FromFirstRecord();
        v.Checkpoint = CheckpointAt(chain[4]);
        Assert.Null(Run(chain.Skip(skip), null, v).Problem);
    }

    [Fact]
    public void Export_lines_round_trip_every_hashed_field()
    {
        foreach (var e in Chain(4))
        {
            var line = LedgerExport.ToLine(e);
            Assert.DoesNotContain('\n', line);
            Assert.True(LedgerExport.TryParseLine(line, out var back, out var error), error);
            Assert.Equal(e.Seq, back!.Seq);
            Assert.Equal(e.At, back.At);
            Assert.Equal(e.DecisionId, back.DecisionId);
            Assert.Equal(e.DataJson, back.DataJson);
            Assert.Equal(e.Hash, LedgerHash.Compute(back, back.PrevHash));
        }
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("""{"seq":1}""")]
    [InlineData("""{"seq":1,"at_unix_micros":0,"kind":"k","actor":"a","subject":"s","decision_id":null,"data_json":"{}","prev_hash":"zz","hash":"00"}""")]
    public void A_malformed_export_line_is_an_error_not_an_exception(string line)
    {
        Assert.False(LedgerExport.TryParseLine(line, out _, out var error));
        Assert.NotEqual("", error);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void Ledger_data_is_written_with_sorted_keys_and_no_whitespace()
    {
        var json = new LedgerJson().Add("z", 1).Add("a", "x y").Add("m", new[] { "b", "a" }).Add("n", null).Add("t", T0).Add("o", new LedgerJson().Add("b", true).Add("a", 2L)).ToString();
        Assert.Equal("""{"a":"x y","m":["b","a"],"n":null,"o":{"a":2,"b":true},"t":"2026-03-01T12:00:00Z","z":1}""", json);
        Assert.Throws<ArgumentException>(() => new LedgerJson().Add("a", 1).Add("a", 2));
    }

    [Fact]
    public void Entry_data_never_depends_on_selector_order_of_the_dictionary_but_keeps_the_entry_order()
    {
        var entry = new RegistrationEntry
        {
            Id = "e",
            SpiffeId = "spiffe://example.org/w",
            ParentId = "spiffe://example.org/a",
            Selectors = [new Selector("unix", "uid:1"), new Selector("unix", "gid:2")],
        };
        var e = LedgerEvents.Entry(LedgerEvents.EntryCreated, "uid:1", entry);
        Assert.Equal("""{"admin":false,"dns_names":[],"expires_at":null,"hint":"","id":"e","jwt_ttl_seconds":0,"parent_id":"spiffe://example.org/a","selectors":["unix:uid:1","unix:gid:2"],"spiffe_id":"spiffe://example.org/w","x509_ttl_seconds":0}""", e.DataJson);
        Assert.Equal("e", e.Subject);
        Assert.Equal(default, e.At);
    }
}
