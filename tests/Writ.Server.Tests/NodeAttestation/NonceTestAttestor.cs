using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Server.NodeAttestation;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>
/// A test-only attestor with what join_token lacks — a validity window, a trust domain in the evidence and a challenge —
/// the shape of the coming TPM / cloud attestors: the evidence is signed claims; the server challenges with a fresh
/// nonce; the agent proves the key by MACing nonce and evidence. Keeps the conformance suite's challenge cases honest.
/// </summary>
internal sealed class NonceTestAttestor(byte[] key, TimeProvider time) : INodeAttestor
{
    public const string TypeName = "test_nonce";

    public string Type => TypeName;

    public static byte[] Evidence(byte[] key, string trustDomain, string name, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        var claims = JsonSerializer.SerializeToUtf8Bytes(new Claims(trustDomain, name, notBefore.ToUnixTimeSeconds(), notAfter.ToUnixTimeSeconds()));
        return [.. claims, (byte)'.', .. HMACSHA256.HashData(key, claims)];
    }

    public static byte[] Answer(byte[] key, ReadOnlyMemory<byte> nonce, byte[] evidence) => HMACSHA256.HashData(key, (byte[])[.. nonce.Span, .. evidence]);

    public async Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
    {
        var payload = evidence.Payload.ToArray();
        var dot = payload.Length - 33;   // claims '.' HMAC-SHA256
        if (dot < 1 || payload[dot] != (byte)'.'
            || !CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(key, payload.AsSpan(0, dot)), payload.AsSpan(dot + 1)))
            throw Refused("WRIT-TEST-BAD-EVIDENCE", "the evidence is not signed by the test key");
        var claims = JsonSerializer.Deserialize<Claims>(payload.AsSpan(0, dot))!;
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        if (now < claims.NotBefore)
            throw Refused("WRIT-TEST-NOT-YET-VALID", "the evidence is not valid yet");
        if (now >= claims.NotAfter)
            throw Refused("WRIT-TEST-EXPIRED", "the evidence has expired");
        var nonce = RandomNumberGenerator.GetBytes(16);
        var answer = await challenge(nonce, ct);
        if (!CryptographicOperations.FixedTimeEquals(Answer(key, nonce, payload), answer.Span))
            throw Refused("WRIT-TEST-BAD-ANSWER", "the challenge answer does not prove the key for this nonce");
        // The trust domain is taken from the evidence: the service must refuse one that is not its own.
        var id = SpiffeId.FromSegments(TrustDomain.Parse(claims.TrustDomain), "writ", "agent", TypeName, claims.Name);
        return new AttestedNodeFacts(TypeName, id, [new Selector(TypeName, claims.Name)], [], null);
    }

    private static WritException Refused(string code, string message) => new(code, WritErrorKind.PermissionDenied, message);

    private sealed record Claims(string TrustDomain, string Name, long NotBefore, long NotAfter);
}

/// <summary>The conformance suite on the challenge-answering test attestor.</summary>
public class NonceTestAttestorConformanceTests : NodeAttestorConformance
{
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private int _names;

    protected override bool SingleUse => false;

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time) => new NonceTestAttestor(_key, time);

    protected override Task<AgentEvidence> ValidEvidenceAsync() => Task.FromResult(Make("example.org", TimeSpan.FromMinutes(-1), TimeSpan.FromHours(1)));

    protected override Task<AgentEvidence> ForeignTrustDomainEvidenceAsync() => Task.FromResult(Make("other.example", TimeSpan.FromMinutes(-1), TimeSpan.FromHours(1)));

    protected override Task<AgentEvidence?> ExpiredEvidenceAsync() => Task.FromResult<AgentEvidence?>(Make("example.org", TimeSpan.FromHours(-2), TimeSpan.FromHours(-1)));

    protected override Task<AgentEvidence?> NotYetValidEvidenceAsync() => Task.FromResult<AgentEvidence?>(Make("example.org", TimeSpan.FromHours(1), TimeSpan.FromHours(2)));

    private AgentEvidence Make(string trustDomain, TimeSpan from, TimeSpan to)
    {
        var now = H.Ca.Time.GetUtcNow();
        var evidence = NonceTestAttestor.Evidence(_key, trustDomain, $"node{Interlocked.Increment(ref _names)}", now + from, now + to);
        return new AgentEvidence(evidence, nonce => NonceTestAttestor.Answer(_key, nonce, evidence));
    }

    [Fact]
    public async Task Evidence_naming_another_trust_domain_is_refused_by_the_service_itself()
    {
        var outcome = await AttestAsync(NonceTestAttestor.TypeName, await ForeignTrustDomainEvidenceAsync());
        Assert.Equal(NodeAttestationCodes.ForeignId, outcome.Code);
        Assert.Contains(Encoding.UTF8.GetString("other.example"u8), outcome.Message, StringComparison.Ordinal);
    }
}

/// <summary>The challenge rounds through the real gRPC AttestAgent stream.</summary>
public sealed class NonceTestAttestorEndToEndTests : NonceTestAttestorConformanceTests
{
    private protected override Task OnStartedAsync() => H.StartGrpcAsync();

    private protected override Task<AttestOutcome> AttestAsync(string type, AgentEvidence evidence) => AttestOverGrpcAsync(H.Client!, type, evidence);
}
