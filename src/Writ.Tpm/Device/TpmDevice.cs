using System.Buffers.Binary;
using System.Net.Sockets;

namespace Writ.Tpm.Device;

/// <summary>Opens the transport an address names. Open per operation and dispose after, so other tools can use the TPM in between.</summary>
public static class TpmDevice
{
    /// <summary>The largest response accepted (TPM 2.0 responses are at most a few KiB; MAX_RESPONSE_SIZE is 4096 on most TPMs).</summary>
    public const int MaxResponseSize = 64 * 1024;

    /// <summary>The size of a response header: tag (2), size (4), response code (4).</summary>
    public const int HeaderSize = 10;

    public static ITpmTransport Open(TpmAddress address, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        var t = timeout ?? TimeSpan.FromSeconds(60);
        return address.IsDevice ? CharDeviceTransport.Open(address.DevicePath!) : TcpTransport.Open(address.Host!, address.Port, t);
    }

    /// <summary>The size a response header announces, checked against what a response may be.</summary>
    internal static int ResponseSize(ReadOnlySpan<byte> header, string where)
    {
        var size = BinaryPrimitives.ReadUInt32BigEndian(header[2..6]);
        if (size is < HeaderSize or > MaxResponseSize)
        {
            throw new TpmDeviceException($"the TPM at {where} sent a response of {size} bytes (allowed {HeaderSize} to {MaxResponseSize}): is it a TPM 2.0?");
        }
        return (int)size;
    }
}

/// <summary>A TPM character device (<c>/dev/tpmrm0</c>, <c>/dev/tpm0</c>): one write is one command, one read one response.</summary>
internal sealed class CharDeviceTransport : ITpmTransport
{
    private readonly FileStream _stream;
    private readonly string _path;

    private CharDeviceTransport(FileStream stream, string path)
    {
        _stream = stream;
        _path = path;
    }

    public static CharDeviceTransport Open(string path)
    {
        try
        {
            return new CharDeviceTransport(new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 0), path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var why = e switch
            {
                FileNotFoundException or DirectoryNotFoundException => "it does not exist (no TPM, or the tpm_tis/tpm_crb driver is not loaded)",
                UnauthorizedAccessException => "permission denied (run the agent as a user in the 'tss' group, or as root)",
                _ => e.Message,
            };
            throw new TpmDeviceException($"cannot open the TPM device {path}: {why}", e);
        }
    }

    public byte[] Execute(ReadOnlySpan<byte> command)
    {
        try
        {
            _stream.Write(command);
            var buffer = new byte[TpmDevice.MaxResponseSize];
            var n = _stream.Read(buffer);
            if (n < TpmDevice.HeaderSize)
            {
                throw new TpmDeviceException($"the TPM device {_path} returned {n} bytes, less than a response header");
            }
            var size = TpmDevice.ResponseSize(buffer, _path);
            if (size != n)
            {
                throw new TpmDeviceException($"the TPM device {_path} returned {n} bytes for a response of {size}");
            }
            return buffer.AsSpan(0, n).ToArray();
        }
        catch (IOException e)
        {
            throw new TpmDeviceException($"the TPM device {_path} failed: {e.Message}", e);
        }
    }

    public void Dispose() => _stream.Dispose();
}

/// <summary>A TCP TPM's raw command stream (swtpm <c>--server type=tcp</c>): write the command, read the header, then the rest by its size.</summary>
internal sealed class TcpTransport : ITpmTransport
{
    private readonly Socket _socket;
    private readonly string _where;

    private TcpTransport(Socket socket, string where)
    {
        _socket = socket;
        _where = where;
    }

    public static TcpTransport Open(string host, int port, TimeSpan timeout)
    {
        var where = $"tcp://{host}:{port}";
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            socket.SendTimeout = socket.ReceiveTimeout = (int)timeout.TotalMilliseconds;
            using var cts = new CancellationTokenSource(timeout);
            socket.ConnectAsync(host, port, cts.Token).AsTask().GetAwaiter().GetResult();
            return new TcpTransport(socket, where);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            var why = e is SocketException se ? se.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => "connection refused (is the TPM simulator running on that port?)",
                SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain => "unknown host",
                _ => se.SocketErrorCode.ToString(),
            } : "timed out";
            throw new TpmDeviceException($"cannot reach the TPM at {where}: {why}", e);
        }
    }

    public byte[] Execute(ReadOnlySpan<byte> command)
    {
        try
        {
            var sent = 0;
            while (sent < command.Length)
            {
                sent += _socket.Send(command[sent..]);
            }
            var header = new byte[TpmDevice.HeaderSize];
            ReadExactly(header);
            var size = TpmDevice.ResponseSize(header, _where);
            var response = new byte[size];
            header.CopyTo(response, 0);
            ReadExactly(response.AsSpan(TpmDevice.HeaderSize));
            return response;
        }
        catch (SocketException e)
        {
            throw new TpmDeviceException($"the TPM at {_where} failed: {e.SocketErrorCode}", e);
        }
    }

    private void ReadExactly(Span<byte> buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = _socket.Receive(buffer[read..]);
            if (n == 0)
            {
                throw new TpmDeviceException($"the TPM at {_where} closed the connection in the middle of a response");
            }
            read += n;
        }
    }

    public void Dispose() => _socket.Dispose();
}
