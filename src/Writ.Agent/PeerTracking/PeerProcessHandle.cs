using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Writ.Agent.PeerTracking;

/// <summary>
/// A pidfd for the exact process that connected to a Unix socket (SO_PEERPIDFD, Linux 6.5+).
/// SO_PEERCRED gives only a pid number, and a pid number can be reused once that process exits —
/// even before the agent accepts the connection (it may wait in the listen backlog). The pidfd
/// refers to the connecting process itself, so <see cref="CurrentPid"/> tells whether that process
/// is still alive and under which pid; if it is alive with the pinned pid when checked after
/// pinning, the pin is of the process that connected.
/// </summary>
public sealed class PeerProcessHandle : IDisposable
{
    private const int SolSocket = 1;
    private const int SoPeerPidFd = 77;
    private readonly SafeFileHandle _pidfd;

    private PeerProcessHandle(SafeFileHandle pidfd)
    {
        _pidfd = pidfd;
    }

    /// <summary>
    /// Opens a pidfd for the socket's peer. Fails on kernels without SO_PEERPIDFD (before 6.5)
    /// with <paramref name="unsupported"/> set, so the caller can fall back to pid + start time.
    /// </summary>
    public static bool TryOpen(Socket connectedUnixSocket, out PeerProcessHandle? handle, out bool unsupported, out string? error)
    {
        ArgumentNullException.ThrowIfNull(connectedUnixSocket);
        handle = null;
        unsupported = false;
        if (!OperatingSystem.IsLinux() || connectedUnixSocket.AddressFamily != AddressFamily.Unix)
        {
            unsupported = !OperatingSystem.IsLinux();
            error = "a peer pidfd needs a Unix-domain socket on Linux";
            return false;
        }

        Span<byte> buffer = stackalloc byte[sizeof(int)];
        int length;
        try
        {
            length = connectedUnixSocket.GetRawSocketOption(SolSocket, SoPeerPidFd, buffer);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ProtocolOption or SocketError.OperationNotSupported or SocketError.ProtocolNotSupported)
        {
            unsupported = true;
            error = "the kernel does not support SO_PEERPIDFD (Linux 6.5+); falling back to pid and start time";
            return false;
        }
        catch (SocketException ex)
        {
            error = $"could not read SO_PEERPIDFD ({ex.SocketErrorCode}); the peer may have exited, let the client reconnect";
            return false;
        }

        int fd = MemoryMarshal.Read<int>(buffer);
        if (length != sizeof(int) || fd < 0)
        {
            error = "SO_PEERPIDFD returned no file descriptor; let the client reconnect";
            return false;
        }

        handle = new PeerProcessHandle(new SafeFileHandle(fd, ownsHandle: true));
        error = null;
        return true;
    }

    /// <summary>
    /// The pid of the connecting process in the agent's pid namespace while it has not been reaped;
    /// null once it is gone (its pid number may then belong to someone else).
    /// </summary>
    public int? CurrentPid
    {
        get
        {
            bool added = false;
            try
            {
                _pidfd.DangerousAddRef(ref added);
                int fd = checked((int)_pidfd.DangerousGetHandle());
                string[] lines = File.ReadAllLines($"/proc/self/fdinfo/{fd.ToString(CultureInfo.InvariantCulture)}");
                foreach (string line in lines)
                {
                    if (line.StartsWith("Pid:", StringComparison.Ordinal) &&
                        int.TryParse(line.AsSpan(4).Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int pid))
                    {
                        return pid > 0 ? pid : null;
                    }
                }

                return null;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return null;
            }
            finally
            {
                if (added)
                {
                    _pidfd.DangerousRelease();
                }
            }
        }
    }

    public void Dispose() => _pidfd.Dispose();
}
