using System.Net.Sockets;

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
}
