using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Writ.Protocol.Agent;
using Writ.Server.NodeAttestation;
using Writ.Server.Storage;
using Writ.Spiffe.X509;

namespace Writ.Server.Tests.NodeAttestation;

/// <summary>The node attestor conformance suite for <c>join_token</c>, in process.</summary>
public class JoinTokenNodeAttestorConformanceTests : NodeAttestorConformance
{
    private int _tokens;

    protected override bool SingleUse => true;

    protected override INodeAttestor CreateAttestor(IWritStore store, TimeProvider time) => new JoinTokenNodeAttestor(store.JoinTokens);

    protected override async Task<AgentEvidence> ValidEvidenceAsync() => await TokenAsync(H.Ca.Time.GetUtcNow().AddHours(1));

    /// <summary>A token another trust domain's server generated lives only in that server's store: this one has never seen it.</summary>
    protected override Task<AgentEvidence> ForeignTrustDomainEvidenceAsync() =>
        Task.FromResult(new AgentEvidence(Encoding.UTF8.GetBytes(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)))));

    protected override async Task<AgentEvidence?> ExpiredEvidenceAsync() => await TokenAsync(H.Ca.Time.GetUtcNow().AddSeconds(-1));

    /// <summary>A join token is valid from its creation.</summary>
    protected override Task<AgentEvidence?> NotYetValidEvidenceAsync() => Task.FromResult<AgentEvidence?>(null);

    private async Task<AgentEvidence> TokenAsync(DateTimeOffset expiresAt)
    {
        var secret = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var id = $"tok{Interlocked.Increment(ref _tokens)}";
        await H.Store.JoinTokens.CreateAsync(new JoinToken(id, JoinTokenNodeAttestor.HashToken(secret), expiresAt, null, expiresAt.AddHours(-2)), Ct);
        return new AgentEvidence(Encoding.UTF8.GetBytes(secret));
    }

    [Fact]
    public async Task Each_refusal_names_its_join_token_code()
    {
        var used = await ValidEvidenceAsync();
        Assert.True((await AttestAsync("join_token", used)).Attested);
        Assert.Equal(NodeAttestationCodes.TokenUsed, (await AttestAsync("join_token", used)).Code);
        Assert.Equal(NodeAttestationCodes.TokenExpired, (await AttestAsync("join_token", (await ExpiredEvidenceAsync())!)).Code);
        Assert.Equal(NodeAttestationCodes.TokenUnknown, (await AttestAsync("join_token", await ForeignTrustDomainEvidenceAsync())).Code);
        Assert.Equal(NodeAttestationCodes.TokenMalformed, (await AttestAsync("join_token", new AgentEvidence([]))).Code);
        Assert.Equal(NodeAttestationCodes.TokenMalformed, (await AttestAsync("join_token", new AgentEvidence([0xff, 0xfe, 0x00]))).Code);
    }

    [Fact]
    public async Task A_bad_csr_is_refused_before_the_token_is_looked_at_and_burns_nothing()
    {
        var evidence = await ValidEvidenceAsync();
        var e = await Assert.ThrowsAsync<Writ.Protocol.Errors.WritException>(() => H.Server.NodeAttestation.AttestAsync("join_token", evidence.Payload, "garbage"u8.ToArray(),
            (_, _) => throw new InvalidOperationException(), "test", Ct));
        Assert.Equal(NodeAttestationCodes.BadCsr, e.Code);
        Assert.True((await AttestAsync("join_token", evidence)).Attested);
    }
}

/// <summary>The same suite through the real agent API over gRPC (AttestAgent and its error interceptor), plus AttestJoinToken.</summary>
public sealed class JoinTokenNodeAttestorEndToEndTests : JoinTokenNodeAttestorConformanceTests
{
    private protected override Task OnStartedAsync() => H.StartGrpcAsync();

    private protected override Task<AttestOutcome> AttestAsync(string type, AgentEvidence evidence) => AttestOverGrpcAsync(H.Client!, type, evidence);

    [Fact]
    public async Task AttestJoinToken_takes_the_same_path_and_a_denial_leaves_the_token_usable()
    {
        await H.PushPolicyAsync(NodeAttestationHarness.DefaultPolicy, ("no-nodes.cedar", """
            @id("no-new-nodes")
            forbid (principal is Writ::Node, action == Writ::Action::"AttestNode", resource);
            """));
        var token = Encoding.UTF8.GetString((await ValidEvidenceAsync()).Payload);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new AttestJoinTokenRequest { Token = token, Csr = ByteString.CopyFrom(Csr.Create(key)) };
        var denied = await Assert.ThrowsAsync<RpcException>(async () => await H.Client!.AttestJoinTokenAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.StartsWith(NodeAttestationCodes.Denied + ": ", denied.Status.Detail, StringComparison.Ordinal);

        await H.PushPolicyAsync(NodeAttestationHarness.DefaultPolicy);
        var r = await H.Client!.AttestJoinTokenAsync(request, cancellationToken: Ct);
        Assert.StartsWith("spiffe://example.org/writ/agent/join_token/", r.SpiffeId, StringComparison.Ordinal);
        Assert.NotEmpty(r.SvidChain);
        var again = await Assert.ThrowsAsync<RpcException>(async () => await H.Client!.AttestJoinTokenAsync(request, cancellationToken: Ct));
        Assert.StartsWith(NodeAttestationCodes.TokenUsed + ": ", again.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_AttestAgent_stream_that_sends_nothing_is_cut_off_at_the_time_limit()
    {
        // Unauthenticated callers must not hold streams open for free: the first request has the attestation time limit.
        using var call = H.Client!.AttestAgent(cancellationToken: Ct);
        var answer = call.ResponseStream.MoveNext(Ct);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!answer.IsCompleted && DateTime.UtcNow < deadline)
        {
            H.Ca.Time.Advance(TestLimits.Timeout);   // the limit runs on the server's (fake) clock
            await Task.WhenAny(answer, Task.Delay(20, Ct));
        }
        var e = await Assert.ThrowsAsync<RpcException>(async () => await answer.WaitAsync(TimeSpan.FromSeconds(1), Ct));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.StartsWith(NodeAttestationCodes.Timeout + ": ", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_AttestAgent_stream_without_params_is_refused()
    {
        using var call = H.Client!.AttestAgent(cancellationToken: Ct);
        await call.RequestStream.WriteAsync(new AttestAgentRequest { ChallengeResponse = ByteString.CopyFromUtf8("hello") }, Ct);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext(Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.StartsWith(NodeAttestationCodes.BadRequest + ": ", e.Status.Detail, StringComparison.Ordinal);
    }
}
