using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Writ.Agent.PeerTracking;

/// <summary>Reads SO_PEERCRED from a connected Unix-domain socket.</summary>
public static class PeerCredentialReader
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;
    private const int UcredSize = 12; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }

    /// <summary>
    /// Reads the kernel-recorded credentials of the process that connected to this socket.
    /// Fails (with a one-line reason) for non-Unix sockets, sockets without a peer, and peers
    /// whose pid is not visible in the agent's pid namespace (pid 0).
    /// </summary>
    public static bool TryRead(Socket connectedUnixSocket, out PeerCredentials creds, out string? error)
    {
        ArgumentNullException.ThrowIfNull(connectedUnixSocket);
        creds = default;
        if (!OperatingSystem.IsLinux())
        {
            error = "peer credentials (SO_PEERCRED) are only supported on Linux; run the agent on Linux";
            return false;
        }

        if (connectedUnixSocket.AddressFamily != AddressFamily.Unix)
        {
            error = $"peer credentials need a Unix-domain socket but got {connectedUnixSocket.AddressFamily}; serve the Workload API on a Unix socket";
            return false;
        }

        Span<byte> buffer = stackalloc byte[UcredSize];
        int length;
        try
        {
            length = connectedUnixSocket.GetRawSocketOption(SolSocket, SoPeerCred, buffer);
        }
        catch (SocketException ex)
        {
            error = $"could not read SO_PEERCRED from the socket ({ex.SocketErrorCode}); the connection is unusable, let the client reconnect";
            return false;
        }
        catch (ObjectDisposedException)
        {
            error = "could not read SO_PEERCRED: the socket is already closed";
            return false;
        }

        if (length != UcredSize)
        {
            error = $"SO_PEERCRED returned {length} bytes instead of {UcredSize}; the kernel ABI is not the expected one";
            return false;
        }

        // struct ucred is in native byte order.
        int pid = MemoryMarshal.Read<int>(buffer);
        uint uid = MemoryMarshal.Read<uint>(buffer[4..]);
        uint gid = MemoryMarshal.Read<uint>(buffer[8..]);

        // An unconnected socket reports pid 0 and uid/gid (uid_t)-1; a peer in a pid namespace the
        // agent cannot see reports pid 0. Neither identifies a process.
        if (pid <= 0)
        {
            error = "the socket peer has no process id visible to the agent (not connected, or in another pid namespace); run the agent in the host pid namespace";
            return false;
        }

        if (uid > int.MaxValue || gid > int.MaxValue)
        {
            error = $"the socket peer (pid {pid}) has an unmapped uid or gid (overflow id); run the agent in the initial user namespace";
            return false;
        }

        creds = new PeerCredentials(pid, (int)uid, (int)gid);
        error = null;
        return true;
    }
}
