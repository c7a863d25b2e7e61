namespace Writ.Agent.PeerTracking;

/// <summary>
/// The credentials the kernel recorded for the peer of a Unix-domain socket when it called
/// <c>connect()</c> (SO_PEERCRED): process id (in the agent's pid namespace) and effective uid/gid.
/// The workload cannot choose these values.
/// </summary>
public readonly record struct PeerCredentials(int Pid, int Uid, int Gid)
{
    public override string ToString() => $"pid={Pid} uid={Uid} gid={Gid}";
}
