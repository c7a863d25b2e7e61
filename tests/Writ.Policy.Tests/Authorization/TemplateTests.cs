using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;

namespace Writ.Policy.Tests.Authorization;

public class TemplateTests
{
    // Expected decisions recorded from the reference engine (cedar-wasm 4.12.0 isAuthorized) for the same
    // templates, links, static policy and entities.
    [Theory]
    [InlineData("alice", "d", Decision.Allow, "l0")]
    [InlineData("alice", "open", Decision.Allow, "s0")]
    [InlineData("mallory", "open", Decision.Deny, "l1")]
    [InlineData("bob", "d", Decision.Deny, null)]
    public void LinkedTemplatesDecideLikeTheReferenceEngine(string principal, string resource, Decision decision, string? reason)
    {
        Assert.True(PolicySet.TryParse("""
            @id("t0") permit(principal == ?principal, action == Action::"view", resource in ?resource) when { resource.public || principal == resource.owner };
            @id("t1") forbid(principal is User in ?principal, action, resource);
            @id("s0") permit(principal, action == Action::"view", resource == Doc::"open");
            """, out var set, out var errors), string.Join("; ", errors));
        Assert.Equal(2, set!.Templates.Count);
        Assert.True(set.TryLink("t0", "l0", new Dictionary<SlotId, EntityUid>
        {
            [SlotId.Principal] = new("User", "alice"),
            [SlotId.Resource] = new("Folder", "f"),
        }, out set, out var error), error);
        Assert.True(set!.TryLink("t1", "l1", new Dictionary<SlotId, EntityUid> { [SlotId.Principal] = new("Group", "banned") }, out set, out error), error);
        Assert.True(Entities.TryParseJson("""
            [{"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": []},
             {"uid": {"type": "User", "id": "mallory"}, "attrs": {}, "parents": [{"type": "Group", "id": "banned"}]},
             {"uid": {"type": "Doc", "id": "d"}, "attrs": {"public": false, "owner": {"__entity": {"type": "User", "id": "alice"}}}, "parents": [{"type": "Folder", "id": "f"}]},
             {"uid": {"type": "Doc", "id": "open"}, "attrs": {"public": true, "owner": {"__entity": {"type": "User", "id": "bob"}}}, "parents": []}]
            """, null, out var entities, out error), error);

        foreach (var candidate in new[] { set!, RoundTrip(set!) })
        {
            var r = Authorizer.IsAuthorized(new Request(new EntityUid("User", principal), new EntityUid("Action", "view"), new EntityUid("Doc", resource)), candidate, entities!);
            Assert.Equal(decision, r.Decision);
            Assert.Equal(reason is null ? [] : [reason], r.Reasons.ToArray());
            Assert.Empty(r.Errors);
        }
    }

    private static PolicySet RoundTrip(PolicySet set)
    {
        Assert.True(PolicyJson.TryParsePolicySet(PolicyJson.ToJson(set), out var back, out var error), error);
        return back!;
    }

    [Fact]
    public void UnlinkedTemplatesNeverApply()
    {
        Assert.True(PolicySet.TryParse("permit(principal == ?principal, action, resource);", out var set, out _));
        var r = Authorizer.IsAuthorized(new Request(new EntityUid("User", "a"), new EntityUid("Action", "v"), new EntityUid("Doc", "d")), set!, Entities.Empty);
        Assert.Equal(Decision.Deny, r.Decision);
        Assert.Empty(r.Errors);
    }
}
