using System.Security.Cryptography;
using System.Text;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Server.NodeAttestation;
using Writ.Server.Storage;
using Writ.Spiffe;

namespace Writ.Tests.Shared;

/// <summary>
/// A test-only continuous node attestor with the shape of tpm: reusable evidence (a node name and its "posture", e.g. a
/// PCR digest, MACed with a key the node holds), a nonce challenge at attestation, and rechecks whose answer is the node's
/// current posture MACed with the recheck's nonce. The attested posture is the node's attestor state; an answer with
/// another posture is a drift (WRIT-TEST-POSTURE-CHANGED), one with a bad MAC too (WRIT-TEST-BAD-ANSWER).
/// </summary>
internal sealed class ContinuousTestAttestor(byte[] key) : IContinuousNodeAttestor
{
    public const string TypeName = "test_continuous";
    public const string PostureChanged = "WRIT-TEST-POSTURE-CHANGED";
    public const string BadAnswer = "WRIT-TEST-BAD-ANSWER";

    public string Type => TypeName;
    public TimeSpan RecheckInterval { get; set; } = TimeSpan.FromMinutes(1);
    public TimeSpan RecheckGrace { get; set; } = TimeSpan.FromSeconds(10);
    public DriftAction DriftAction { get; set; } = DriftAction.Quarantine;

    /// <summary>When set, the appraisal throws this (a bug in an attestor).</summary>
    public Exception? AppraisalFault { get; set; }

    public static byte[] Evidence(byte[] key, string name, string posture, string trustDomain = "example.org")
    {
        var claims = Encoding.UTF8.GetBytes($"{name}\n{posture}\n{trustDomain}");
        return [.. claims, (byte)'.', .. HMACSHA256.HashData(key, claims)];
    }

    public static byte[] ChallengeAnswer(byte[] key, ReadOnlyMemory<byte> nonce, byte[] evidence) => HMACSHA256.HashData(key, (byte[])[.. nonce.Span, .. evidence]);

    /// <summary>The agent's answer to a recheck payload (the nonce): its posture now, MACed with the nonce.</summary>
    public static byte[] RecheckAnswer(byte[] key, ReadOnlyMemory<byte> nonce, string posture)
    {
        var p = Encoding.UTF8.GetBytes(posture);
        return [.. p, .. HMACSHA256.HashData(key, (byte[])[.. nonce.Span, .. p])];
    }

    public async Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
    {
        var payload = evidence.Payload.ToArray();
        var dot = payload.Length - 33;
        if (dot < 1 || payload[dot] != (byte)'.' || !CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(key, payload.AsSpan(0, dot)), payload.AsSpan(dot + 1)))
            throw new WritException("WRIT-TEST-BAD-EVIDENCE", WritErrorKind.PermissionDenied, "the evidence is not signed by the test key");
        var claims = Encoding.UTF8.GetString(payload.AsSpan(0, dot)).Split('\n');
        var nonce = RandomNumberGenerator.GetBytes(16);
        var answer = await challenge(nonce, ct);
        if (!CryptographicOperations.FixedTimeEquals(ChallengeAnswer(key, nonce, payload), answer.Span))
            throw new WritException("WRIT-TEST-BAD-ANSWER", WritErrorKind.PermissionDenied, "the challenge answer does not prove the key for this nonce");
        // The trust domain is taken from the evidence: the service must refuse one that is not its own.
        var id = SpiffeId.FromSegments(TrustDomain.Parse(claims[2]), "writ", "agent", TypeName, claims[0]);
        return new AttestedNodeFacts(TypeName, id, Selectors(claims[0], claims[1]), [], null) { AttestorState = Encoding.UTF8.GetBytes(claims[1]) };
    }

    public NodeRecheck NewRecheck(AttestedNode node, DateTimeOffset now)
    {
        var nonce = RandomNumberGenerator.GetBytes(16);
        return new NodeRecheck(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)), nonce, nonce, now);
    }

    public Task<NodeAppraisal> AppraiseAsync(AttestedNode node, NodeRecheck recheck, ReadOnlyMemory<byte> answer, CancellationToken ct)
    {
        if (AppraisalFault is { } fault)
            throw fault;
        var a = answer.ToArray();
        if (a.Length < 32)
            return Task.FromResult(NodeAppraisal.Drifted(BadAnswer, "the recheck answer is too short"));
        var posture = a.AsSpan(0, a.Length - 32).ToArray();
        if (!CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(key, (byte[])[.. recheck.Expected.Span, .. posture]), a.AsSpan(a.Length - 32)))
            return Task.FromResult(NodeAppraisal.Drifted(BadAnswer, "the recheck answer is not MACed with this recheck's nonce"));
        if (!posture.AsSpan().SequenceEqual(node.AttestorState ?? []))
            return Task.FromResult(NodeAppraisal.Drifted(PostureChanged, $"posture is '{Encoding.UTF8.GetString(posture)}', attested '{Encoding.UTF8.GetString(node.AttestorState ?? [])}'"));
        var name = node.SpiffeId[(node.SpiffeId.LastIndexOf('/') + 1)..];
        return Task.FromResult(NodeAppraisal.Ok(Selectors(name, Encoding.UTF8.GetString(posture)), posture));
    }

    private static Selector[] Selectors(string name, string posture) => [new(TypeName, name), new(TypeName, $"posture:{posture}")];
}
