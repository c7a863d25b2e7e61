using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Writ.Protocol.Interop;

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
    public static bool TryOpen(Socket connectedUnixSocket, out PeerProcessHandle? handle, out bool unsupported, out string? error) =>
        TryOpen(connectedUnixSocket, out handle, out unsupported, out _, out error);

    /// <summary>
    /// Like <see cref="TryOpen(Socket, out PeerProcessHandle?, out bool, out string?)"/>; <paramref name="exhausted"/> is
    /// set when the pidfd could not be made because the agent is out of file descriptors or memory (EMFILE, ENFILE,
    /// ENOMEM): a refusal of this caller for now, not a fact about it.
    /// </summary>
    public static bool TryOpen(Socket connectedUnixSocket, out PeerProcessHandle? handle, out bool unsupported, out bool exhausted, out string? error)
    {
        ArgumentNullException.ThrowIfNull(connectedUnixSocket);
        handle = null;
        unsupported = false;
        exhausted = false;
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
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
        {
            exhausted = true;
            error = $"could not open a pidfd for the peer ({ex.SocketErrorCode}): the agent is out of file descriptors or memory";
            return false;
        }
        catch (SocketException ex)
        {
            error = $"could not read SO_PEERPIDFD ({ex.SocketErrorCode}); the peer may have exited, let the client reconnect";
            return false;
        }
        catch (ObjectDisposedException)
        {
            error = "could not read SO_PEERPIDFD: the connection is already closed";
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

    /// <summary>
    /// True while the connecting process has not been reaped, so that <paramref name="pid"/> — its pid when it
    /// connected (SO_PEERCRED and SO_PEERPIDFD name the same kernel pid) — is still its own and no other process's.
    /// One <c>pidfd_send_signal(fd, 0)</c> system call (no signal is sent): ESRCH once the process is reaped; EPERM
    /// (an agent without the right to signal it) still means it exists. Where that call is missing (glibc before
    /// 2.36, kernels before 5.1) this is <see cref="CurrentPid"/> == <paramref name="pid"/>, from /proc fdinfo.
    /// </summary>
    public bool StillHolds(int pid)
    {
        if (!s_noSignalCall)
        {
            bool added = false;
            try
            {
                _pidfd.DangerousAddRef(ref added);
                int fd = checked((int)_pidfd.DangerousGetHandle());
                if (Libc.PidfdSendSignal(fd, 0, 0, 0) == 0)
                {
                    return true;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == EPERM)
                {
                    return true;
                }

                if (errno != ENOSYS)
                {
                    return false;   // ESRCH: reaped; EBADF and anything else: cannot vouch for it
                }

                s_noSignalCall = true;
            }
            catch (EntryPointNotFoundException)
            {
                s_noSignalCall = true;
            }
            finally
            {
                if (added)
                {
                    _pidfd.DangerousRelease();
                }
            }
        }

        return CurrentPid == pid;
    }

    /// <summary>
    /// True once the connecting process has exited (a zombie or reaped): the pidfd polls readable then (Linux 5.3+).
    /// An error from poll counts as exited: nothing can be vouched for.
    /// </summary>
    public bool HasExited
    {
        get
        {
            bool added = false;
            try
            {
                _pidfd.DangerousAddRef(ref added);
                var pfd = new PollFd(checked((int)_pidfd.DangerousGetHandle()), PollIn, 0);
                int n;
                do
                {
                    n = Libc.Poll(ref pfd, 1, 0);
                }
                while (n < 0 && Marshal.GetLastPInvokeError() == EINTR);
                return n != 0;
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

    private const short PollIn = 1;
    private const int EINTR = 4;

    private const int EPERM = 1;
    private const int ENOSYS = 38;
    private static volatile bool s_noSignalCall;

    public void Dispose() => _pidfd.Dispose();
}
