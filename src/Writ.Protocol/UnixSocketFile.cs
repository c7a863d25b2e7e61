using System.Buffers.Binary;
using System.Net.Sockets;
using Writ.Protocol.Interop;

namespace Writ.Protocol;

/// <summary>Shared by the server's admin socket and the agent's Workload API socket.</summary>
public static class UnixSocketFile
{
    /// <summary>
    /// Makes <paramref name="path"/> ready to listen on: creates its directory and removes a socket file left by a
    /// crash. Returns false (and touches nothing) when another live process is answering on it.
    /// </summary>
    public static bool TryPrepare(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (!File.Exists(path))
        {
            return true;
        }
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path);   // nobody listens: left over from a crash
            return true;
        }
        return false;
    }

    /// <summary>
    /// Binds and listens on <paramref name="path"/> (prepared with <see cref="TryPrepare"/>) with <paramref name="mode"/>
    /// set before the first connection can arrive; see <see cref="ListenerHandle"/> for why Kestrel gets a descriptor.
    /// </summary>
    public static OwnedUnixSocket Listen(string path, UnixFileMode mode)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            var identity = Identify(path) ?? throw new IOException($"the socket '{path}' vanished right after it was created");
            var owned = new OwnedUnixSocket(path, identity, 0);
            try
            {
                File.SetUnixFileMode(path, mode);
                socket.Listen(512);
                return new OwnedUnixSocket(path, identity, ListenerHandle.Duplicate(socket));
            }
            catch
            {
                owned.RemoveIfOwned();
                throw;
            }
        }
        finally
        {
            // Close our descriptor without Socket.Dispose, which would delete the path; the duplicate stays open.
            GC.SuppressFinalize(socket);
            socket.SafeHandle.Dispose();
        }
    }

    /// <summary>Device and inode of the file at <paramref name="path"/> (not following a symlink), or null when there is none.</summary>
    public static (ulong Device, ulong Inode)? Identify(string path)
    {
        // struct stat on 64-bit Linux (x86-64 and arm64) starts with st_dev and st_ino, 8 bytes each.
        var buffer = new byte[256];
        if (Libc.LStat(path, buffer) != 0)
        {
            return null;
        }
        return (BinaryPrimitives.ReadUInt64LittleEndian(buffer), BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(8)));
    }
}

/// <summary>A listening Unix socket this process created: its descriptor for Kestrel and the file it may remove.</summary>
public sealed class OwnedUnixSocket
{
    private readonly (ulong Device, ulong Inode) _identity;

    internal OwnedUnixSocket(string path, (ulong Device, ulong Inode) identity, ulong handle)
    {
        Path = path;
        _identity = identity;
        Handle = handle;
    }

    public string Path { get; }

    /// <summary>The listening descriptor, for <c>KestrelServerOptions.ListenHandle</c>; Kestrel closes it when it stops.</summary>
    public ulong Handle { get; }

    /// <summary>True while the file at <see cref="Path"/> is still the socket this process created.</summary>
    public bool StillOwned => UnixSocketFile.Identify(Path) == _identity;

    /// <summary>
    /// Deletes the socket file only when it is still ours: a process started meanwhile on the same path (after this one
    /// let it go, or after an operator replaced the file) keeps its socket.
    /// </summary>
    public bool RemoveIfOwned()
    {
        if (!StillOwned)
        {
            return false;
        }
        try
        {
            File.Delete(Path);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }
}
