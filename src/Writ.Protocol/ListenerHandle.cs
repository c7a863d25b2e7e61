using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Writ.Protocol.Interop;

namespace Writ.Protocol;

/// <summary>
/// A socket bound and listening before the host starts, handed to Kestrel as a descriptor (<c>ListenHandle</c>): a
/// start-up can then learn that its port or socket path is taken before it creates anything, and Kestrel never binds a
/// path itself (a socket .NET bound deletes its path when disposed, whoever's file is there by then).
/// </summary>
public static class ListenerHandle
{
    /// <summary>Binds and listens on <paramref name="endpoint"/> (TCP); returns the descriptor for Kestrel and the address bound (port 0 resolved).</summary>
    public static (ulong Handle, IPEndPoint Bound) ListenTcp(IPEndPoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(endpoint);
        socket.Listen(512);
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        return (Duplicate(socket), bound);
    }

    /// <summary>A duplicate of the socket's descriptor, owned by whoever takes it (Kestrel closes it when it stops).</summary>
    internal static ulong Duplicate(Socket socket)
    {
        var fd = Libc.Dup((int)socket.Handle);
        if (fd < 0)
        {
            throw new IOException($"cannot hand over the listening socket: dup failed with errno {Marshal.GetLastPInvokeError()}");
        }
        return (ulong)fd;
    }

    /// <summary>Closes a descriptor that Kestrel never took over (the start-up failed before the host started).</summary>
    public static void Close(ulong handle) => Libc.Close((int)handle);
}
