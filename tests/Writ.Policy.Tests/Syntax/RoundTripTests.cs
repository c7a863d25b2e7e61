using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Syntax;
using Writ.Policy.Tests.Corpus;

namespace Writ.Policy.Tests.Syntax;

/// <summary>Round-trip properties over every corpus policy file: text → AST → text and AST → JSON (EST) → AST keep the AST.</summary>
public class RoundTripTests
{
    [Fact]
    public void FormatterAndJsonRoundTripEveryCorpusPolicy()
    {
        var files = Directory.GetFiles(Path.Combine(CorpusFiles.CorpusRoot, "corpus-tests"), "*.cedar")
            .Concat(Directory.GetFiles(Path.Combine(CorpusFiles.ConformanceDir, "tests"), "*.cedar", SearchOption.AllDirectories))
            .Order(StringComparer.Ordinal).ToList();
        var failures = new List<string>();
        foreach (var f in files)
        {
            Assert.True(PolicySet.TryParse(File.ReadAllText(f), out var set, out _));
            var est = PolicyJson.ToJson(set!);
            var text = PolicyFormatter.Format(set!);
            if (!PolicySet.TryParse(text, out var reparsed, out var errors))
            {
                failures.Add($"{Path.GetFileName(f)}: formatted text does not parse: {errors[0]}\n{text}");
                continue;
            }

            if (PolicyJson.ToJson(reparsed!) != est)
            {
                failures.Add($"{Path.GetFileName(f)}: formatted text parses to a different policy:\n{text}");
                continue;
            }

            if (!PolicyJson.TryParsePolicySet(est, out var fromJson, out var jerr))
            {
                failures.Add($"{Path.GetFileName(f)}: EST does not read back: {jerr}");
                continue;
            }

            if (PolicyJson.ToJson(fromJson!) != est) failures.Add($"{Path.GetFileName(f)}: EST round trip changed the policy");
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {files.Count} files failed:\n" + string.Join("\n", failures.Take(10)));
    }

    [Fact]
    public void EstMatchesCedarsShape()
    {
        Assert.True(PolicySet.TryParse("""
            @id("a") permit(principal == User::"alice", action in [Action::"view"], resource is Photo)
            when { context.n > 1 && resource.name like "*.jpg" && ip("1.2.3.4").isIpv4() };
            """, out var set, out _));
        var json = PolicyJson.ToJson(set!.Policies[0]);
        Assert.Contains("\"principal\":{\"op\":\"==\",\"entity\":{\"type\":\"User\",\"id\":\"alice\"}}", json, StringComparison.Ordinal);
        Assert.Contains("\"action\":{\"op\":\"in\",\"entity\":{\"type\":\"Action\",\"id\":\"view\"}}", json, StringComparison.Ordinal);
        Assert.Contains("\"resource\":{\"op\":\"is\",\"entity_type\":\"Photo\"}", json, StringComparison.Ordinal);
        Assert.Contains("{\">\":{\"left\":{\".\":{\"left\":{\"Var\":\"context\"},\"attr\":\"n\"}},\"right\":{\"Value\":1}}}", json, StringComparison.Ordinal);
        Assert.Contains("\"pattern\":[\"Wildcard\",{\"Literal\":\".\"},{\"Literal\":\"j\"},{\"Literal\":\"p\"},{\"Literal\":\"g\"}]", json, StringComparison.Ordinal);
        Assert.Contains("{\"isIpv4\":[{\"ip\":[{\"Value\":\"1.2.3.4\"}]}]}", json, StringComparison.Ordinal);
        Assert.Contains("\"annotations\":{\"id\":\"a\"}", json, StringComparison.Ordinal);
    }

    [Fact]
    public void TemplatesLinkAndAuthorize()
    {
        Assert.True(PolicySet.TryParse("""
            permit(principal == ?principal, action == Action::"view", resource in ?resource);
            """, out var set, out _));
        Assert.Empty(set!.Policies);
        var template = Assert.Single(set.Templates);
        var alice = new EntityUid("User", "alice");
        var album = new EntityUid("Album", "a");
        Assert.True(set.TryLink(template.Id, "link1", new Dictionary<SlotId, EntityUid> { [SlotId.Principal] = alice, [SlotId.Resource] = album }, out var linked, out var err), err);
        Assert.False(set.TryLink(template.Id, "link2", new Dictionary<SlotId, EntityUid> { [SlotId.Principal] = alice }, out _, out err));
        Assert.Contains("?resource", err, StringComparison.Ordinal);
        Assert.False(linked!.TryLink(template.Id, "link1", new Dictionary<SlotId, EntityUid> { [SlotId.Principal] = alice, [SlotId.Resource] = album }, out _, out err));
        Assert.Contains("already used", err, StringComparison.Ordinal);

        var entities = Entities.Create([new Entity(new EntityUid("Photo", "p"), parents: [album])]);
        var ok = Authorizer.IsAuthorized(new Request(alice, new EntityUid("Action", "view"), new EntityUid("Photo", "p")), linked, entities);
        Assert.Equal(Decision.Allow, ok.Decision);
        Assert.Equal(["link1"], ok.Reasons);
        var bob = Authorizer.IsAuthorized(new Request(new EntityUid("User", "bob"), new EntityUid("Action", "view"), new EntityUid("Photo", "p")), linked, entities);
        Assert.Equal(Decision.Deny, bob.Decision);

        // links survive the JSON policy-set format
        var json = PolicyJson.ToJson(linked);
        Assert.Contains("\"templateLinks\":[{\"templateId\":\"policy0\",\"newId\":\"link1\"", json, StringComparison.Ordinal);
        Assert.True(PolicyJson.TryParsePolicySet(json, out var back, out err), err);
        Assert.Equal(json, PolicyJson.ToJson(back!));
    }

    [Theory]
    [InlineData("-(5)")]
    [InlineData("-5 * 3")]
    [InlineData("1 + -5")]
    [InlineData("!(!true)")]
    [InlineData("(1 == 2) == false")]
    [InlineData("(if true then 1 else 2) + 3")]
    [InlineData("(-5).foo")]
    [InlineData("{\"a b\": 1}[\"a b\"]")]
    [InlineData("context[\"if\"] has \"then\"")]
    [InlineData("\"\\u{0}*\\n\" like \"a\\*b*\\u{1F600}\"")]
    public void FormatterKeepsMeaning(string text)
    {
        Assert.True(Parser.TryParseExpression(text, out var e, out var errors), string.Join("; ", errors));
        var printed = PolicyFormatter.Format(e!);
        Assert.True(Parser.TryParseExpression(printed, out var again, out errors), printed + ": " + string.Join("; ", errors));
        Assert.Equal(PolicyJson.ToJson(e!), PolicyJson.ToJson(again!));
    }
}
