using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Json;
using Writ.Policy.Schema;

namespace Writ.Policy.Tests.Authorization;

public class RequestValidatorTests
{
    private static readonly CedarSchema Schema = Parse();

    private static CedarSchema Parse()
    {
        Assert.True(CedarSchema.TryParseCedar("""
            entity User; entity Doc; entity Bot;
            action view appliesTo { principal: [User], resource: [Doc], context: { ip: ipaddr, reason?: String } };
            """, out var schema, out var errors), string.Join("; ", errors));
        return schema!;
    }

    private static Request Req(string principalType, string action, string contextJson)
    {
        // shaped by the schema but not checked (validateRequest: false), so that invalid contexts reach the validator;
        // a context the schema cannot even shape (a required attribute missing, an undeclared one) is read without it
        if (!CedarJson.TryParseContext(contextJson, Schema, new EntityUid("Action", action), validate: false, out var ctx, out _))
        {
            Assert.True(CedarJson.TryParseContext(contextJson, null, null, out ctx, out var error), error);
        }

        return new Request(new EntityUid(principalType, "p"), new EntityUid("Action", action), new EntityUid("Doc", "d"), ctx);
    }

    [Fact]
    public void ValidRequestPasses()
    {
        Assert.True(RequestValidator.TryValidate(Req("User", "view", """{"ip": "10.0.0.1", "reason": "audit"}"""), Schema, out var error), error);
        Assert.True(RequestValidator.TryValidate(Req("User", "view", """{"ip": "10.0.0.1"}"""), Schema, out error), error);
    }

    [Theory]
    [InlineData("Bot", "view", """{"ip": "10.0.0.1"}""", "does not apply to a principal of type Bot")]
    [InlineData("Ghost", "view", """{"ip": "10.0.0.1"}""", "does not declare")]
    [InlineData("User", "delete", """{}""", "not declared")]
    [InlineData("User", "view", """{}""", "missing the required attribute")]
    [InlineData("User", "view", """{"ip": "10.0.0.1", "reason": 7}""", "not of type String")]
    [InlineData("User", "view", """{"ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}, "admin": true}""", "does not declare")]
    public void InvalidRequestsAreRejected(string principalType, string action, string context, string expected)
    {
        // An attacker shaping the request (extra context keys, a principal type the action is not for) is refused.
        Assert.False(RequestValidator.TryValidate(Req(principalType, action, context), Schema, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void ContextWithAnIpStringOutsideTheSchemaIsNotAnIp()
    {
        var request = new Request(new EntityUid("User", "p"), new EntityUid("Action", "view"), new EntityUid("Doc", "d"),
            new RecordValue(new Dictionary<string, Value>(StringComparer.Ordinal) { ["ip"] = Value.Of("10.0.0.1") }));
        Assert.False(RequestValidator.TryValidate(request, Schema, out var error));
        Assert.Contains("ipaddr", error, StringComparison.Ordinal);
    }
}
