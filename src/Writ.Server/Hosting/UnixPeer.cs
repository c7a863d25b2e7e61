using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Writ.Protocol.Interop;

namespace Writ.Server.Hosting;

/// <summary>Kernel-reported credentials of the process at the other end of a Unix socket (SO_PEERCRED).</summary>
public static partial class UnixPeer
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    public static bool TryGetUid(Socket socket, out int pid, out int uid)
    {
        pid = uid = -1;
        Span<byte> cred = stackalloc byte[12];
        try
        {
            if (socket.GetRawSocketOption(SolSocket, SoPeerCred, cred) != 12)
            {
                return false;
            }
        }
        catch (SocketException)
        {
            return false;
        }
        pid = BinaryPrimitives.ReadInt32LittleEndian(cred);
        uid = BinaryPrimitives.ReadInt32LittleEndian(cred[4..]);
        return pid > 0;
    }

    public static int EffectiveUid => (int)Libc.GetEuid();
}
