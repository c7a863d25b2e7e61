using System.Reflection;
using System.Reflection.Emit;
using System.Security.Cryptography;
using System.Text;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Spiffe.Tests.Jwt;

/// <summary>jti, iat and cnf x5t#S256 as typed properties; malformed bindings refused with one-line reasons.</summary>
public sealed class JwtBindingClaimsTests
{
    private static readonly DateTimeOffset Now = TestCa.Now;
    private static readonly SpiffeId Subject = SpiffeId.Parse("spiffe://example.org/workload");
    private static readonly ECDsa Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private static readonly TrustBundle Bundle = new(TrustDomain.Parse("example.org"), [], [new JwtAuthority("kid-1", Key)]);

    private static string B64(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static string Mint(IReadOnlyDictionary<string, object> extra) =>
        JwtSvidMinter.Mint(new JwtSigningKey("kid-1", Key), Subject, ["svc"], Now, Now.AddMinutes(5), extra);

    /// <summary>Signs any payload with the trusted key, so only the claim under test is wrong.</summary>
    private static string Signed(string claimsTail)
    {
        var payload = $$"""{"sub":"{{Subject}}","aud":["svc"],"exp":{{Now.AddMinutes(5).ToUnixTimeSeconds()}},"iat":{{Now.ToUnixTimeSeconds()}}{{claimsTail}}}""";
        var input = B64(Encoding.UTF8.GetBytes("""{"alg":"ES256","kid":"kid-1","typ":"JWT"}""")) + "." + B64(Encoding.UTF8.GetBytes(payload));
        return input + "." + B64(Key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256));
    }

    private static JwtSvidValidation Validate(string token) => JwtSvidValidator.Validate(token, Bundle, ["svc"], Now);

    [Fact]
    public void Jti_iat_and_cnf_are_typed_properties()
    {
        var cert = new TestCa("example.org").Mint("/workload").Chain[0];
        var x5t = B64(SHA256.HashData(cert.RawData));
        var token = Mint(new Dictionary<string, object>
        {
            ["jti"] = "abc-123",
            ["cnf"] = new Dictionary<string, object> { ["x5t#S256"] = x5t },
        });
        var r = Validate(token);
        Assert.True(r.IsValid, r.Error);
        var svid = r.Svid!;
        Assert.Equal("abc-123", svid.Jti);
        Assert.Equal(Now, svid.IssuedAt);
        Assert.Equal(x5t, svid.CnfX5tS256);
        Assert.Equal(x5t, CertificateBinding.Thumbprint(cert));
        Assert.True(svid.IsBound);
        Assert.True(svid.IsBoundTo(cert));
        Assert.True(svid.IsBoundTo(JwtPeer.FromCertificate(cert)));
        var other = new TestCa("example.org").Mint("/workload").Chain[0];
        Assert.False(svid.IsBoundTo(other));
        Assert.False(svid.IsBoundTo(JwtPeer.FromId("x")));

        // The unverified reader (for display) sees the same.
        Assert.True(JwtSvidValidator.TryReadUnverified(token, out var shown, out var error), error);
        Assert.Equal("abc-123", shown.Jti);
        Assert.Equal(x5t, shown.CnfX5tS256);
    }

    [Fact]
    public void A_token_without_jti_or_cnf_is_a_bearer_token()
    {
        var r = Validate(Mint(new Dictionary<string, object>()));
        Assert.True(r.IsValid, r.Error);
        Assert.Null(r.Svid!.Jti);
        Assert.Null(r.Svid.CnfX5tS256);
        Assert.False(r.Svid.IsBound);
        Assert.False(r.Svid.IsBoundTo(new TestCa("example.org").Mint("/w").Chain[0]));
    }

    [Theory]
    [InlineData(""","jti":42""", "jti claim must be a non-empty string")]
    [InlineData(""","jti":"" """, "jti claim must be a non-empty string")]
    [InlineData(""","jti":null""", "jti claim must be a non-empty string")]
    [InlineData(""","jti":"a\u0000b" """, "jti claim must be a non-empty string")]
    [InlineData(""","cnf":"abc" """, "cnf claim must be a JSON object")]
    [InlineData(""","cnf":[] """, "cnf claim must be a JSON object")]
    [InlineData(""","cnf":{}""", "cnf claim has no x5t#S256 member")]
    [InlineData(""","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}""", "cnf claim has no x5t#S256 member")]
    [InlineData(""","cnf":{"x5t#S256":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I","jkt":"x"}""", "more than one confirmation method")]
    [InlineData(""","cnf":{"x5t#S256":42}""", "x5t#S256 is not the unpadded base64url SHA-256")]
    [InlineData(""","cnf":{"x5t#S256":"short"}""", "x5t#S256 is not the unpadded base64url SHA-256")]
    [InlineData(""","cnf":{"x5t#S256":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I="}""", "x5t#S256 is not the unpadded base64url SHA-256")]
    [InlineData(""","cnf":{"x5t#S256":"0ZcOCORZNYy+DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}""", "x5t#S256 is not the unpadded base64url SHA-256")]
    [InlineData(""","cnf":{"x5t#S256":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4J"}""", "x5t#S256 is not the unpadded base64url SHA-256")]
    [InlineData(""","cnf":{"x5t#S256":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I0ZcOCORZNYy"}""", "x5t#S256 is not the unpadded base64url SHA-256")]
    public void Malformed_jti_or_cnf_is_refused_with_one_line(string tail, string reason)
    {
        var r = Validate(Signed(tail));
        Assert.False(r.IsValid);
        Assert.Null(r.Svid);
        Assert.Contains(reason, r.Error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', r.Error!);
        Assert.False(JwtSvidValidator.TryReadUnverified(Signed(tail), out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Well_formed_hand_built_binding_is_accepted()
    {
        // Control for the theory above: the same hand-built path with a correct cnf passes.
        var r = Validate(Signed(""","jti":"j1","cnf":{"x5t#S256":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"""));
        Assert.True(r.IsValid, r.Error);
        Assert.Equal("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", r.Svid!.CnfX5tS256);
    }

    [Fact]
    public void Overlong_jti_is_refused()
    {
        var ok = Validate(Signed($",\"jti\":\"{new string('a', JwtSvidValidator.MaxJtiLength)}\""));
        Assert.True(ok.IsValid, ok.Error);
        var r = Validate(Signed($",\"jti\":\"{new string('a', JwtSvidValidator.MaxJtiLength + 1)}\""));
        Assert.False(r.IsValid);
        Assert.Contains("at most 256", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Thumbprints_are_compared_in_constant_time()
    {
        // Every binding check goes through CertificateBinding.FixedTimeMatches, which must call
        // CryptographicOperations.FixedTimeEquals (no early exit on the first differing byte) and nothing like SequenceEqual.
        var matches = typeof(CertificateBinding).GetMethod("FixedTimeMatches", BindingFlags.NonPublic | BindingFlags.Static)!;
        var called = CalledMethods(matches);
        Assert.Contains(called, m => m.DeclaringType == typeof(CryptographicOperations) && m.Name == nameof(CryptographicOperations.FixedTimeEquals));
        Assert.DoesNotContain(called, m => m.Name is "SequenceEqual" or "Equals" or "SequenceCompareTo");

        foreach (var name in new[] { nameof(JwtSvid.IsBoundTo) })
        {
            foreach (var overload in typeof(JwtSvid).GetMethods().Where(m => m.Name == name))
            {
                var calls = CalledMethods(overload);
                Assert.DoesNotContain(calls, m => m.Name is "SequenceEqual" or "SequenceCompareTo");
                // Each overload reaches the fixed-time compare directly or through another IsBoundTo.
                Assert.Contains(calls, m => m == matches || m.Name == name);
            }
        }
    }

    [Fact]
    public void Binding_compare_is_exact_at_every_byte()
    {
        var cert = new TestCa("example.org").Mint("/workload").Chain[0];
        var sha = SHA256.HashData(cert.RawData);
        for (var i = 0; i < sha.Length; i += 7)
        {
            var flipped = (byte[])sha.Clone();
            flipped[i] ^= 0x01;
            var svid = Bound(B64(flipped));
            Assert.False(svid.IsBoundTo(cert), $"byte {i} flipped still matched");
        }
        Assert.True(Bound(B64(sha)).IsBoundTo(cert));
    }

    private static JwtSvid Bound(string x5t)
    {
        var r = Validate(Mint(new Dictionary<string, object> { ["jti"] = "j", ["cnf"] = new Dictionary<string, object> { ["x5t#S256"] = x5t } }));
        Assert.True(r.IsValid, r.Error);
        return r.Svid!;
    }

    /// <summary>The methods a method's IL calls (call/callvirt), resolved through its module.</summary>
    private static List<MethodBase> CalledMethods(MethodInfo method)
    {
        var il = method.GetMethodBody()!.GetILAsByteArray()!;
        var calls = new List<MethodBase>();
        var call = OpCodes.Call.Value;
        var callvirt = OpCodes.Callvirt.Value;
        for (var i = 0; i + 4 < il.Length; i++)
        {
            if (il[i] == call || il[i] == callvirt)
            {
                var token = BitConverter.ToInt32(il, i + 1);
                try
                {
                    if (method.Module.ResolveMethod(token, method.DeclaringType?.GetGenericArguments(), method.GetGenericArguments()) is { } m)
                    {
                        calls.Add(m);
                    }
                }
                catch (ArgumentException)
                {
                    // A byte that merely looks like a call opcode inside an operand: not a call.
                }
            }
        }
        return calls;
    }
}
