using System.Net.Sockets;

namespace Writ.Agent.PeerTracking;

/// <summary>How pinning a connection's peer at accept ended.</summary>
public enum AcceptPinStatus
{
    Pinned,

    /// <summary>The agent is out of file descriptors or memory: refuse this caller for now (not a fact about it).</summary>
    Exhausted,

    /// <summary>The peer cannot be pinned (it exited, or is not visible to the agent).</summary>
    Failed,
}

/// <summary>
/// The peer of a Workload API connection as it was when the agent accepted the connection, before any call: the kernel's
/// credentials (SO_PEERCRED), the process pinned through a pidfd of the very process that connected (SO_PEERPIDFD: pid,
/// start time, boot id) and the executable it was running (statx of <c>/proc/&lt;pid&gt;/exe</c>: device, inode, size,
/// mtime, ctime). Every call on the connection is served only if its caller is still that process running that file
/// (<see cref="SameProgram"/>): a process that connects and then execs another binary — or forks a child that keeps the
/// socket while the parent execs — cannot have the connection attested as the new binary. No file descriptor is kept:
/// the pidfd is closed once the pin is proven.
/// </summary>
public sealed record AcceptedPeer(PeerCredentials Peer, ProcessPin Pin, FileIdentity? Executable)
{
    /// <summary>Pins the peer of a freshly accepted connection.</summary>
    public static AcceptPinStatus TryPin(Socket connection, IProcFs proc, out AcceptedPeer? accepted, out string? error)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(proc);
        accepted = null;
        if (!PeerCredentialReader.TryRead(connection, out var peer, out error))
        {
            return AcceptPinStatus.Failed;
        }
        if (!PeerProcessHandle.TryOpen(connection, out var pidfd, out var unsupported, out var exhausted, out error) && !unsupported)
        {
            return exhausted ? AcceptPinStatus.Exhausted : AcceptPinStatus.Failed;
        }
        using (pidfd)
        {
            // The executable is read before the pin is proven: ProcessPin.TryCreate checks, after its reads, that the
            // process that connected still holds the pid (with a pidfd) or still has the same start time (without one).
            var exeKnown = FileIdentity.TryGet(ProcFs.PidPath(proc, peer.Pid, "exe"), out var exe, out _);
            if (!ProcessPin.TryCreate(proc, peer.Pid, pidfd, out var pin, out error))
            {
                return ProcFile.LastFailureWasExhaustion ? AcceptPinStatus.Exhausted : AcceptPinStatus.Failed;
            }
            if (exeKnown != (pin!.Executable is not null) || exeKnown && exe.FileKey != pin.Executable)
            {
                error = $"process {peer.Pid} executed another program while its connection was being accepted; let the client reconnect";
                return AcceptPinStatus.Failed;
            }
            accepted = new AcceptedPeer(peer, pin, exeKnown ? exe : null);
            return AcceptPinStatus.Pinned;
        }
    }

    /// <summary>
    /// True if <paramref name="attested"/> — the pin a call's attestation made of the connection's peer — is of the same
    /// process running the same file as when the connection was accepted; else the reason. The executable is looked at
    /// once more (statx) so that a file changed in place is caught too, not only another file.
    /// </summary>
    public bool SameProgram(ProcessPin attested, IProcFs proc, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(attested);
        ArgumentNullException.ThrowIfNull(proc);
        if (attested.Pid != Pin.Pid || attested.StartTimeTicks != Pin.StartTimeTicks || !string.Equals(attested.BootId, Pin.BootId, StringComparison.Ordinal))
        {
            reason = $"the caller is not the process that opened this connection (pid {Pin.Pid}, start {Pin.StartTimeTicks})";
            return false;
        }
        if (!string.Equals(attested.Executable, Pin.Executable, StringComparison.Ordinal))
        {
            reason = $"process {Pin.Pid} runs another executable than when its connection was accepted";
            return false;
        }
        var now = FileIdentity.TryGet(ProcFs.PidPath(proc, Pin.Pid, "exe"), out var exe, out _) ? exe : (FileIdentity?)null;
        if (now != Executable)
        {
            reason = $"the executable of process {Pin.Pid} changed since its connection was accepted";
            return false;
        }
        reason = null;
        return true;
    }
}
