using Grpc.Core;
using Microsoft.Extensions.Logging;
using Writ.Agent.NodeAttestation;
using Writ.Protocol.Agent;

namespace Writ.Agent.Sync;

/// <summary>
/// Keeps <see cref="AgentState"/> equal to what the server says this agent may serve: one long-lived server-push
/// stream, resumed from the last applied revision after a reconnect. When the stream's server fails, the next attempt
/// goes at once to the next server of the <see cref="Pool"/>; only after every server failed in a row does it back off
/// (exponential, with jitter). While no server is reachable nothing is dropped: the cache keeps serving SVIDs until
/// they expire, and a switch of server leaves the cache and the workloads' streams alone.
/// </summary>
public sealed class SyncClient(Func<AgentService.AgentServiceClient> client, Func<RpcException, AgentFatalException?> classify,
    Action<Writ.Spiffe.Bundles.TrustBundle> persistBundle, AgentState state, AgentOptions options, TimeProvider time, ILogger log, Random? jitter = null)
{
    private readonly Random _jitter = jitter ?? Random.Shared;

    public SyncClient(NodeIdentity node, AgentState state, AgentOptions options, TimeProvider time, ILogger log, Random? jitter = null)
        : this(() => node.Client, node.Classify, node.PersistBundle, state, options, time, log, jitter)
    {
        RecheckAttestor = node.Attestor as IContinuousNodeAttestorClient;
        Pool = node.Pool;
    }

    /// <summary>The servers the calls go through; null: one server, back off after every failure.</summary>
    public ServerPool? Pool { get; init; }

    /// <summary>
    /// The node attestor that answers the server's rechecks (<c>SyncUpdate.node_recheck</c>); null: the agent answers none
    /// (the server then counts them missing and the node drifts).
    /// </summary>
    public IContinuousNodeAttestorClient? RecheckAttestor { get; init; }

    public async Task RunAsync(CancellationToken ct)
    {
        var backoff = TimeSpan.FromMilliseconds(250);
        while (!ct.IsCancellationRequested)
        {
            var since = state.Synced ? state.Current.Revision : 0;
            try
            {
                using var call = client().Sync(new SyncRequest { SinceRevision = since }, cancellationToken: ct);
                AgentLog.SyncConnected(log, since);
                var connected = false;
                while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
                {
                    var update = call.ResponseStream.Current;
                    if (update.NodeRecheck is { } recheck)
                    {
                        // Answered beside the stream: a slow TPM must not hold back entries and revocations.
                        _ = AnswerRecheckAsync(recheck, ct);
                        if (update is { Upserts.Count: 0, DeletedEntryIds.Count: 0, Revocations.Count: 0, Bundle: null, CallPolicy: null, PageEnd: false, Reset: false })
                        {
                            continue;
                        }
                    }
                    if (update.Revocations.Count > 0)
                    {
                        // Revocations count at once, not at the end of the page: the cache drops them on the next wake.
                        var added = state.Revocations.Add(update.Revocations);
                        AgentLog.RevocationsReceived(log, added, state.Revocations.Count);
                        if (added > 0)
                        {
                            state.Changed.Raise();
                        }
                    }
                    if (update.CallPolicy is { } callPolicy)
                    {
                        // Kept apart from the entries' pages: a decision reads one whole policy version, old or new.
                        if (state.TrySetCallPolicy(callPolicy, out var policyError))
                        {
                            AgentLog.CallPolicyApplied(log, callPolicy.Version, callPolicy.Sha256);
                        }
                        else
                        {
                            AgentLog.CallPolicyRejected(log, callPolicy.Version, policyError, state.CallPolicy.Version);
                        }
                    }
                    if (state.Apply(update, options.TrustDomain) is { } snapshot)
                    {
                        AgentLog.SyncApplied(log, snapshot.Revision, snapshot.Entries.Count);
                        if (update.Bundle is not null)
                        {
                            persistBundle(snapshot.Bundle);
                        }
                        connected = true;
                    }
                    if (connected)
                    {
                        backoff = TimeSpan.FromMilliseconds(250);
                    }
                }
                AgentLog.SyncLost(log, "the server closed the stream", backoff);
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                if (classify(e) is { } fatal)
                {
                    throw fatal;
                }
                if (e.StatusCode == StatusCode.Unauthenticated && Writ.Protocol.Errors.WritStatus.Read(e).Code == "WRIT-AGENT-SUPERSEDED")
                {
                    continue;   // renewed meanwhile: the next attempt uses the new channel
                }
                if (SwitchesAtOnce(ServerPool.IsServerFailure(e)))
                {
                    continue;   // the pool logged the switch; resume from the same revision on the next server
                }
                AgentLog.SyncLost(log, e.Status.Detail.Length > 0 ? e.Status.Detail : e.StatusCode.ToString(), backoff);
            }
            catch (Exception e) when (e is IOException or HttpRequestException && !ct.IsCancellationRequested)
            {
                if (SwitchesAtOnce(ServerPool.IsServerFailure(e)))
                {
                    continue;
                }
                AgentLog.SyncLost(log, e.Message, backoff);
            }
            var jitter = TimeSpan.FromMilliseconds(_jitter.Next(0, (int)Math.Max(1, backoff.TotalMilliseconds / 4)));
            await Task.Delay(backoff + jitter, time, ct).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, options.MaxBackoff.Ticks));
        }
    }

    /// <summary>Whether the next attempt goes to another server without waiting: a server failure while the round is not over.</summary>
    private bool SwitchesAtOnce(bool serverFailed) => serverFailed && Pool is { RoundFailed: false, Endpoints.Count: > 1 };

    /// <summary>Answers one recheck with <see cref="RecheckAttestor"/> and sends it back; failures are logged, never thrown.</summary>
    private async Task AnswerRecheckAsync(NodeRecheck recheck, CancellationToken ct)
    {
        if (RecheckAttestor is not { } attestor)
        {
            AgentLog.RecheckIgnored(log, recheck.AttestationType);
            return;
        }
        try
        {
            var answer = await attestor.AnswerRecheckAsync(recheck.Payload.Memory, ct).ConfigureAwait(false);
            var r = await client().AnswerNodeRecheckAsync(new AnswerNodeRecheckRequest { Id = recheck.Id, Payload = Google.Protobuf.ByteString.CopyFrom(answer.Span) },
                cancellationToken: ct).ConfigureAwait(false);
            AgentLog.RecheckAnswered(log, recheck.Id, recheck.AttestationType, r.NodeStatus);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            AgentLog.RecheckFailed(log, recheck.Id, recheck.AttestationType, e.Status.Detail.Length > 0 ? e.Status.Detail : e.StatusCode.ToString());
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            // The agent is stopping (cancelled call or attestor): the answer is not needed any more.
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            // The attestor's own failure (e.g. the TPM is unreachable): the server decides what a missing answer means.
            AgentLog.RecheckFailed(log, recheck.Id, recheck.AttestationType, e.Message);
        }
    }
}
