using Writ.Policy.Ast;
using Writ.Policy.Authorization;
using Writ.Policy.Evaluation;
using Writ.Policy.Syntax;

namespace Writ.Policy.Tests.Evaluation;

public class EvaluatorTests
{
    private static readonly Entities Store = Build();

    private static Entities Build()
    {
        Assert.True(Entities.TryParseJson("""
            [
              {"uid": {"type": "User", "id": "alice"}, "attrs": {"age": 30, "addr": {"city": "Oslo"}, "roles": ["admin"]},
               "parents": [{"type": "Group", "id": "staff"}], "tags": {"clearance": "secret"}},
              {"uid": {"type": "Group", "id": "staff"}, "attrs": {}, "parents": [{"type": "Group", "id": "everyone"}]},
              {"uid": {"type": "Group", "id": "everyone"}, "attrs": {}, "parents": []}
            ]
            """, null, out var e, out var err), err);
        return e!;
    }

    private static readonly Request Req = new(new EntityUid("User", "alice"), new EntityUid("Action", "view"), new EntityUid("Photo", "p"),
        new RecordValue(new Dictionary<string, Value>(StringComparer.Ordinal) { ["n"] = Value.Of(5) }));

    private static bool Eval(string text, out Value? value, out EvaluationError? error)
    {
        Assert.True(Parser.TryParseExpression(text, out var e, out var perrs), string.Join("; ", perrs));
        return Evaluator.TryEvaluate(e!, Req, Store, out value, out error);
    }

    [Theory]
    [InlineData("1 + 2 * 3 == 7")]
    [InlineData("principal in Group::\"everyone\"")]
    [InlineData("principal in [Group::\"nope\", Group::\"staff\"]")]
    [InlineData("!(principal in Group::\"nope\")")]
    [InlineData("User::\"ghost\" in User::\"ghost\"")]
    [InlineData("!(User::\"ghost\" in Group::\"staff\")")]
    [InlineData("principal.addr.city == \"Oslo\"")]
    [InlineData("principal has addr.city && !(principal has addr.zip)")]
    [InlineData("!(User::\"ghost\" has age)")]
    [InlineData("principal.roles.contains(\"admin\")")]
    [InlineData("[1, 2, 3].containsAll([1, 3]) && [1].containsAny([3, 1]) && [].isEmpty()")]
    [InlineData("[1, 2] == [2, 1, 1]")]
    [InlineData("{a: 1, b: [true]} == {b: [true], a: 1}")]
    [InlineData("1 != \"1\"")]
    [InlineData("\"abc*\" like \"a*\\*\"")]
    [InlineData("principal is User && !(principal is Group)")]
    [InlineData("principal is User in Group::\"staff\"")]
    [InlineData("principal.hasTag(\"clearance\") && principal.getTag(\"clearance\") == \"secret\"")]
    [InlineData("!User::\"ghost\".hasTag(\"x\")")]
    [InlineData("if context.n > 3 then true else 1 + \"x\"")]
    [InlineData("!(false && (1 + \"a\"))")]
    [InlineData("true || principal.nope")]
    [InlineData("ip(\"10.1.2.3\").isInRange(ip(\"10.0.0.0/8\")) && !ip(\"11.0.0.1\").isInRange(ip(\"10.0.0.0/8\"))")]
    [InlineData("ip(\"127.0.0.1\").isLoopback() && ip(\"::1\").isLoopback() && ip(\"224.0.0.1\").isMulticast() && ip(\"ff02::1\").isIpv6()")]
    [InlineData("ip(\"10.0.0.1\") != ip(\"10.0.0.1/32\") || ip(\"10.0.0.1\") == ip(\"10.0.0.1/32\")")]
    [InlineData("decimal(\"1.5\") == decimal(\"1.5000\") && decimal(\"-0.0001\").lessThan(decimal(\"0.0\"))")]
    [InlineData("decimal(\"922337203685477.5807\").greaterThanOrEqual(decimal(\"-922337203685477.5808\"))")]
    [InlineData("datetime(\"2024-10-15T11:38:02.101+1134\") == datetime(\"2024-10-15T00:04:02.101Z\")")]
    [InlineData("datetime(\"2024-01-01\") < datetime(\"2024-01-02\") && duration(\"1h\") > duration(\"59m\")")]
    [InlineData("datetime(\"2024-01-01\").offset(duration(\"1d2h\")).toTime() == duration(\"2h\")")]
    [InlineData("datetime(\"1969-12-31T23:00:00Z\").toDate() == datetime(\"1969-12-31\")")]
    [InlineData("datetime(\"1969-12-31T23:00:00Z\").toTime() == duration(\"23h\")")]
    [InlineData("datetime(\"2024-01-02\").durationSince(datetime(\"2024-01-01\")).toHours() == 24")]
    [InlineData("duration(\"-1d1ms\").toMilliseconds() == -86400001 && duration(\"-90s\").toMinutes() == -1")]
    [InlineData("-9223372036854775808 < 0")]
    public void EvaluatesToTrue(string text)
    {
        Assert.True(Eval(text, out var v, out var err), err?.ToString());
        Assert.Equal(BoolValue.True, v);
    }

    [Theory]
    [InlineData("9223372036854775807 + 1", EvaluationErrorKind.IntegerOverflow)]
    [InlineData("-9223372036854775808 - 1", EvaluationErrorKind.IntegerOverflow)]
    [InlineData("9223372036854775807 * 2", EvaluationErrorKind.IntegerOverflow)]
    [InlineData("-(-9223372036854775808)", EvaluationErrorKind.IntegerOverflow)]
    [InlineData("1 + true", EvaluationErrorKind.TypeError)]
    [InlineData("1 && true", EvaluationErrorKind.TypeError)]
    [InlineData("true && 1", EvaluationErrorKind.TypeError)]
    [InlineData("if 1 then 2 else 3", EvaluationErrorKind.TypeError)]
    [InlineData("1 in [User::\"alice\"]", EvaluationErrorKind.TypeError)]
    [InlineData("principal in [principal, 1]", EvaluationErrorKind.TypeError)]
    [InlineData("User::\"ghost\".age", EvaluationErrorKind.EntityDoesNotExist)]
    [InlineData("principal.nope", EvaluationErrorKind.AttributeDoesNotExist)]
    [InlineData("context.nope", EvaluationErrorKind.AttributeDoesNotExist)]
    [InlineData("principal.getTag(\"nope\")", EvaluationErrorKind.TagDoesNotExist)]
    [InlineData("User::\"ghost\".getTag(\"x\")", EvaluationErrorKind.EntityDoesNotExist)]
    [InlineData("ip(\"1.2.3\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("ip(\"01.2.3.4\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("ip(\"::ffff:1.2.3.4\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("ip(\"10.0.0.0/33\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("decimal(\"1.23456\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("decimal(\"922337203685477.5808\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("datetime(\"2025-02-29\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("datetime(\"2024-01-01T24:00:00Z\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("duration(\"1m1h\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("duration(\"9223372036854775808ms\")", EvaluationErrorKind.ExtensionError)]
    [InlineData("datetime(\"2024-01-01\").offset(duration(\"9223372036854775807ms\"))", EvaluationErrorKind.ExtensionError)]
    [InlineData("decimal(\"1.0\") < decimal(\"2.0\")", EvaluationErrorKind.TypeError)]
    [InlineData("ip(\"1.1.1.1\").lessThan(decimal(\"1.0\"))", EvaluationErrorKind.TypeError)]
    [InlineData("ip(\"1.1.1.1\").isIpv4(1)", EvaluationErrorKind.WrongArity)]
    [InlineData("\"a\" like \"a\" like \"a\"", EvaluationErrorKind.TypeError)]
    public void ReportsErrors(string text, EvaluationErrorKind kind)
    {
        if (!Parser.TryParseExpression(text, out var e, out _))
        {
            Assert.Contains("like", text, StringComparison.Ordinal); // chained like is a parse error, fine
            return;
        }

        Assert.False(Evaluator.TryEvaluate(e!, Req, Store, out var v, out var err));
        Assert.Null(v);
        Assert.Equal(kind, err!.Kind);
        Assert.DoesNotContain('\n', err.Message);
    }
}
