using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Writ.Protocol.Agent;
using Writ.Protocol.Errors;
using Writ.Server.NodeAttestation;
using Writ.Server.Storage;
using Writ.Spiffe.X509;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>
/// What an agent sends for one attestation: the evidence payload, how it answers challenges (null: it cannot) and, when
/// the answers are bound to it (tpm signs it with a TPM-resident key), the CSR of the agent's key (null: a fresh one).
/// </summary>
public sealed record AgentEvidence(byte[] Payload, Func<ReadOnlyMemory<byte>, byte[]>? Answer = null, byte[]? Csr = null);

/// <summary>How one attestation ended: the agent ID, or the stable code and message of the refusal.</summary>
public sealed record AttestOutcome(string? AgentId, string? Code, string? Message)
{
    public bool Attested => AgentId is not null;
}

/// <summary>
/// The conformance suite every node attestor must pass. A subclass names the attestor and its fixtures (fresh valid
/// evidence, evidence made for another trust domain, expired / not-yet-valid evidence where the attestor has a validity
/// window); the suite checks replay, trust domain, validity, challenge-answer reuse, size limits, a throwing or hanging
/// attestor and that a Cedar denial burns no single-use evidence — and in every refusal that nothing was written. The
/// transport is the service in process; <see cref="AttestAsync"/> is overridden to run the same cases over the real gRPC
/// agent API.
/// </summary>
public abstract class NodeAttestorConformance : IAsyncLifetime
{
    /// <summary>A short time limit, so the hanging-attestor case advances the fake clock only a little.</summary>
    protected static readonly NodeAttestationLimits TestLimits = new(4096, TimeSpan.FromSeconds(5), 4) { MaxAnswerBytes = 8192 };

    private protected NodeAttestationHarness H { get; private set; } = null!;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The attestor under test, on this server's store and clock.</summary>
    protected abstract INodeAttestor CreateAttestor(IWritStore store, TimeProvider time);

    /// <summary>Evidence for one new agent that the attestor accepts (each call a different agent).</summary>
    protected abstract Task<AgentEvidence> ValidEvidenceAsync();

    /// <summary>Evidence that would be valid, but for (or from) another trust domain than the server's (example.org).</summary>
    protected abstract Task<AgentEvidence> ForeignTrustDomainEvidenceAsync();

    /// <summary>Evidence past its validity; null when the attestor's evidence has no expiry.</summary>
    protected abstract Task<AgentEvidence?> ExpiredEvidenceAsync();

    /// <summary>Evidence before its validity starts; null when the attestor's evidence has no start.</summary>
    protected abstract Task<AgentEvidence?> NotYetValidEvidenceAsync();

    /// <summary>True when the evidence may be used once only (a join token); then a denial must leave it usable.</summary>
    protected abstract bool SingleUse { get; }

    /// <summary>The server clock's start (null: the CA tests' fixed start); attestors checking real certificates need about now.</summary>
    protected virtual DateTimeOffset? ClockStart => null;

    public async ValueTask InitializeAsync()
    {
        H = await NodeAttestationHarness.CreateAsync(ClockStart);
        Use(CreateAttestor(H.Store, H.Ca.Time));
        await OnStartedAsync();
    }

    /// <summary>After the harness started (the end-to-end subclass starts the gRPC API here).</summary>
    private protected virtual Task OnStartedAsync() => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await H.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private protected INodeAttestor Attestor { get; private set; } = null!;

    private void Use(INodeAttestor attestor)
    {
        Attestor = attestor;
        H.Use(TestLimits, attestor);
    }

    /// <summary>One attestation of <paramref name="type"/> with this evidence and a fresh CSR.</summary>
    private protected virtual async Task<AttestOutcome> AttestAsync(string type, AgentEvidence evidence)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        try
        {
            var r = await H.Server.NodeAttestation.AttestAsync(type, evidence.Payload, evidence.Csr ?? Csr.Create(key),
                (c, _) => Task.FromResult<ReadOnlyMemory<byte>>(evidence.Answer is { } a ? a(c) : throw new InvalidOperationException("this evidence answers no challenge")),
                "test", Ct);
            return new AttestOutcome(r.AgentId.ToString(), null, null);
        }
        catch (WritException e)
        {
            return new AttestOutcome(null, e.Code, e.Message);
        }
    }

    /// <summary>Attests over the real agent API (for the end-to-end subclass): AttestAgent with its challenge rounds.</summary>
    private protected static async Task<AttestOutcome> AttestOverGrpcAsync(AgentService.AgentServiceClient client, string type, AgentEvidence evidence)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        try
        {
            using var call = client.AttestAgent(cancellationToken: Ct);
            await call.RequestStream.WriteAsync(new AttestAgentRequest
            {
                Params = new AttestAgentParams { AttestationType = type, Payload = ByteString.CopyFrom(evidence.Payload), Csr = ByteString.CopyFrom(evidence.Csr ?? Csr.Create(key)) },
            }, Ct);
            while (await call.ResponseStream.MoveNext(Ct))
            {
                var step = call.ResponseStream.Current;
                if (step.StepCase == AttestAgentResponse.StepOneofCase.Result)
                    return new AttestOutcome(step.Result.SpiffeId, null, null);
                var answer = evidence.Answer is { } a ? a(step.Challenge.Memory) : [];
                await call.RequestStream.WriteAsync(new AttestAgentRequest { ChallengeResponse = ByteString.CopyFrom(answer) }, Ct);
            }
            throw new InvalidOperationException("the server ended AttestAgent without a result or a status");
        }
        catch (RpcException e)
        {
            // The detail is "CODE: message" (the error interceptor); anything else fails the caller's code check.
            var colon = e.Status.Detail.IndexOf(": ", StringComparison.Ordinal);
            return colon > 0 ? new AttestOutcome(null, e.Status.Detail[..colon], e.Status.Detail[(colon + 2)..]) : new AttestOutcome(null, $"status {e.StatusCode}", e.Status.Detail);
        }
    }

    private Task<IReadOnlyList<AttestedNode>> NodesAsync() => H.Store.Nodes.ListAsync(Ct);

    private async Task AssertRefusedAndNothingWrittenAsync(AttestOutcome outcome, int nodesBefore, params string[] codes)
    {
        Assert.False(outcome.Attested, $"attested {outcome.AgentId}, expected a refusal");
        Assert.NotNull(outcome.Code);
        Assert.StartsWith("WRIT-", outcome.Code, StringComparison.Ordinal);
        if (codes.Length > 0)
            Assert.Contains(outcome.Code, codes);
        Assert.DoesNotContain('\n', outcome.Message!);
        Assert.DoesNotContain("   at ", outcome.Message!, StringComparison.Ordinal);
        Assert.Equal(nodesBefore, (await NodesAsync()).Count);
        // Every refusal but a Cedar denial (recorded as its decision) leaves a ledger record with its code.
        if (outcome.Code != NodeAttestationCodes.Denied)
        {
            var refusals = await H.Store.Ledger.ListAsync(0, 1000, Writ.Server.Ledger.LedgerEvents.NodeAttestationRefused, null, Ct);
            Assert.Contains(refusals, r => r.DataJson.Contains($"\"code\":\"{outcome.Code}\"", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Valid_evidence_attests_an_agent_of_this_trust_domain_and_stores_it()
    {
        var outcome = await AttestAsync(Attestor.Type, await ValidEvidenceAsync());
        Assert.True(outcome.Attested, $"{outcome.Code}: {outcome.Message}");
        Assert.StartsWith($"spiffe://example.org/writ/agent/{Attestor.Type}/", outcome.AgentId, StringComparison.Ordinal);
        var node = Assert.Single(await NodesAsync());
        Assert.Equal(outcome.AgentId, node.SpiffeId);
        Assert.Equal(Attestor.Type, node.AttestationType);
        Assert.False(node.Banned);
    }

    [Fact]
    public async Task Replayed_evidence_is_refused()
    {
        var answers = new List<byte[]>();
        var evidence = await ValidEvidenceAsync();
        var recorded = evidence with { Answer = evidence.Answer is { } a ? c => { var r = a(c); answers.Add(r); return r; } : null };
        Assert.True((await AttestAsync(Attestor.Type, recorded)).Attested);
        var before = Assert.Single(await NodesAsync());
        // Reusable evidence (a re-attestable attestor: tpm, x509pop) may attest its node again, but only by answering a
        // fresh challenge with the node's key: a replay of the evidence with the recorded answers fails the challenge.
        // Other evidence is refused outright (used, or the node exists).
        var replay = Attestor.Reattestable ? evidence with { Answer = _ => answers.Count > 0 ? answers[0] : [] } : evidence;
        await AssertRefusedAndNothingWrittenAsync(await AttestAsync(Attestor.Type, replay), 1);
        Assert.Equal(before.SerialNumber, Assert.Single(await NodesAsync()).SerialNumber);
    }

    [Fact]
    public async Task Evidence_for_another_trust_domain_is_refused()
    {
        var outcome = await AttestAsync(Attestor.Type, await ForeignTrustDomainEvidenceAsync());
        await AssertRefusedAndNothingWrittenAsync(outcome, 0);
    }

    [Fact]
    public async Task Expired_evidence_is_refused()
    {
        var evidence = await ExpiredEvidenceAsync();
        Assert.SkipWhen(evidence is null, $"{Attestor.Type} evidence has no expiry");
        await AssertRefusedAndNothingWrittenAsync(await AttestAsync(Attestor.Type, evidence!), 0);
    }

    [Fact]
    public async Task Not_yet_valid_evidence_is_refused()
    {
        var evidence = await NotYetValidEvidenceAsync();
        Assert.SkipWhen(evidence is null, $"{Attestor.Type} evidence has no start of validity");
        await AssertRefusedAndNothingWrittenAsync(await AttestAsync(Attestor.Type, evidence!), 0);
    }

    [Fact]
    public async Task A_reused_challenge_answer_is_refused()
    {
        var answers = new List<byte[]>();
        var first = await ValidEvidenceAsync();
        var recorded = first with { Answer = first.Answer is { } a ? c => { var r = a(c); answers.Add(r); return r; } : null };
        Assert.True((await AttestAsync(Attestor.Type, recorded)).Attested);
        Assert.SkipWhen(answers.Count == 0, $"{Attestor.Type} asks no challenge");

        // A second agent replays the first one's answers instead of answering its own challenges.
        var replayed = 0;
        var second = (await ValidEvidenceAsync()) with { Answer = _ => answers[Math.Min(replayed++, answers.Count - 1)] };
        await AssertRefusedAndNothingWrittenAsync(await AttestAsync(Attestor.Type, second), 1);
    }

    [Fact]
    public async Task Oversized_evidence_is_refused_before_the_attestor_runs()
    {
        var counting = new CountingAttestor(Attestor);
        Use(counting);
        var valid = await ValidEvidenceAsync();
        var huge = valid with { Payload = [.. valid.Payload, .. new byte[TestLimits.MaxEvidenceBytes]] };
        await AssertRefusedAndNothingWrittenAsync(await AttestAsync(Attestor.Type, huge), 0, NodeAttestationCodes.TooLarge);
        Assert.Equal(0, counting.Calls);
    }

    [Fact]
    public async Task An_oversized_challenge_answer_is_refused()
    {
        var evidence = await ValidEvidenceAsync();
        Assert.SkipWhen(evidence.Answer is null, $"{Attestor.Type} asks no challenge");
        var huge = evidence with { Answer = _ => new byte[TestLimits.MaxAnswerBytes + 1] };
        await AssertRefusedAndNothingWrittenAsync(await AttestAsync(Attestor.Type, huge), 0, NodeAttestationCodes.TooLarge);
    }

    [Fact]
    public async Task An_unknown_attestation_type_is_refused()
    {
        await AssertRefusedAndNothingWrittenAsync(await AttestAsync("no_such_attestor", await ValidEvidenceAsync()), 0, NodeAttestationCodes.UnknownType);
    }

    [Fact]
    public async Task An_attestor_that_throws_is_a_clean_error_that_writes_nothing_and_burns_nothing()
    {
        Use(new ThrowingAttestor(Attestor));
        var evidence = await ValidEvidenceAsync();
        var outcome = await AttestAsync(Attestor.Type, evidence);
        await AssertRefusedAndNothingWrittenAsync(outcome, 0, NodeAttestationCodes.Failed);
        Assert.DoesNotContain(ThrowingAttestor.Secret, outcome.Message!, StringComparison.Ordinal);
        Assert.DoesNotContain(nameof(ThrowingAttestor), outcome.Message!, StringComparison.Ordinal);

        Use(((ThrowingAttestor)Attestor).Inner);
        Assert.True((await AttestAsync(Attestor.Type, evidence)).Attested, "the evidence was burnt by a failed attempt");
    }

    [Fact]
    public async Task An_attestor_that_hangs_is_cut_off_at_the_time_limit_and_burns_nothing()
    {
        var hanging = new HangingAttestor(Attestor);
        Use(hanging);
        var evidence = await ValidEvidenceAsync();
        var attempt = AttestAsync(Attestor.Type, evidence);
        await hanging.Entered.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        // The limit runs on the server's (fake) clock: move it until the attempt ends (the timer may start a moment later).
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!attempt.IsCompleted && DateTime.UtcNow < deadline)
        {
            H.Ca.Time.Advance(TestLimits.Timeout);
            await Task.WhenAny(attempt, Task.Delay(20, Ct));
        }
        await AssertRefusedAndNothingWrittenAsync(await attempt.WaitAsync(TimeSpan.FromSeconds(1), Ct), 0, NodeAttestationCodes.Timeout);

        Use(hanging.Inner);
        Assert.True((await AttestAsync(Attestor.Type, evidence)).Attested, "the evidence was burnt by a timed-out attempt");
    }

    [Fact]
    public async Task A_policy_denial_refuses_and_leaves_single_use_evidence_usable()
    {
        await H.PushPolicyAsync(NodeAttestationHarness.DefaultPolicy, ("no-nodes.cedar", """
            @id("no-new-nodes")
            forbid (principal is Writ::Node, action == Writ::Action::"AttestNode", resource);
            """));
        var evidence = await ValidEvidenceAsync();
        var denied = await AttestAsync(Attestor.Type, evidence);
        await AssertRefusedAndNothingWrittenAsync(denied, 0, NodeAttestationCodes.Denied);
        Assert.Contains("decision d-", denied.Message, StringComparison.Ordinal);

        await H.PushPolicyAsync(NodeAttestationHarness.DefaultPolicy);
        var retry = await AttestAsync(Attestor.Type, evidence);
        Assert.True(retry.Attested, $"after the denial the same evidence was refused: {retry.Code}: {retry.Message}");
        Assert.Single(await NodesAsync());
    }

    [Fact]
    public async Task Agents_racing_with_the_same_single_use_evidence_store_one_node()
    {
        Assert.SkipUnless(SingleUse, $"{Attestor.Type} evidence is not single-use");
        var evidence = await ValidEvidenceAsync();
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Task.Run(() => AttestAsync(Attestor.Type, evidence), Ct)));
        Assert.Single(outcomes, o => o.Attested);
        Assert.All(outcomes.Where(o => !o.Attested), o => Assert.StartsWith("WRIT-", o.Code, StringComparison.Ordinal));
        Assert.Single(await NodesAsync());
    }

    /// <summary>Counts calls, then delegates.</summary>
    private sealed class CountingAttestor(INodeAttestor inner) : INodeAttestor
    {
        public int Calls;
        public string Type => inner.Type;

        public Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
        {
            Interlocked.Increment(ref Calls);
            return inner.AttestAsync(evidence, challenge, ct);
        }
    }

    /// <summary>Runs the real attestor, then fails with a message that must not reach the agent.</summary>
    private sealed class ThrowingAttestor(INodeAttestor inner) : INodeAttestor
    {
        public const string Secret = "connection string Password=hunter2";
        public INodeAttestor Inner => inner;
        public string Type => inner.Type;

        public async Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
        {
            await inner.AttestAsync(evidence, challenge, ct);
            throw new InvalidOperationException(Secret);
        }
    }

    /// <summary>Never finishes and ignores its cancellation token: only the service's time limit ends it.</summary>
    private sealed class HangingAttestor(INodeAttestor inner) : INodeAttestor
    {
        private readonly TaskCompletionSource<AttestedNodeFacts> _never = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public INodeAttestor Inner => inner;
        public string Type => inner.Type;

        public Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
        {
            Entered.TrySetResult();
            return _never.Task;
        }
    }
}
