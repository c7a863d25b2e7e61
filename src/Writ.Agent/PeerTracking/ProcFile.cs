using System.Runtime.InteropServices;
using System.Text;
using Writ.Protocol.Interop;

namespace Writ.Agent.PeerTracking;

/// <summary>How a read of a /proc file ended.</summary>
internal enum ProcReadStatus
{
    Ok,

    /// <summary>The file (or the process) does not exist: ENOENT or ESRCH.</summary>
    Missing,

    /// <summary>Any other failure (permission, I/O); <see cref="ProcFile.ErrorName"/> names it.</summary>
    Failed,
}

/// <summary>
/// Reads whole small files from /proc (stat, status, cgroup, boot_id) with one open, as many reads as the file needs and
/// one close, into a per-thread buffer decoded as UTF-8 (what <see cref="File.ReadAllText(string)"/> does), without the
/// FileStream, StreamReader and string copies of the general API: these files are read several times per Workload API
/// call. The characters are valid only until the same thread's next read; callers parse them at once.
/// </summary>
internal static class ProcFile
{
    private const int ENOENT = 2;
    private const int ESRCH = 3;
    private const int EINTR = 4;
    // O_NONBLOCK: /proc files never block, but a FIFO put where one is expected (a fake or tampered proc root) would
    // block open() until a writer comes — on the Workload API's own thread. Non-blocking, it reads as empty or EAGAIN.
    private const int OReadOnlyCloexec = 0x80000 | 0x800; // O_RDONLY | O_CLOEXEC | O_NONBLOCK
    private const int MaxBytes = 1 << 22;

    [ThreadStatic]
    private static byte[]? t_bytes;

    [ThreadStatic]
    private static char[]? t_chars;

    /// <summary>The errno name of the last failed read on this thread, for messages ("EACCES").</summary>
    [ThreadStatic]
    private static string? t_error;

    public static string ErrorName => t_error ?? "error";

    [ThreadStatic]
    private static int t_errno;

    /// <summary>
    /// True when the last failed read on this thread failed for want of resources (EMFILE, ENFILE, ENOMEM): the agent is
    /// out of file descriptors or memory, which says nothing about the process being read.
    /// </summary>
    public static bool LastFailureWasExhaustion => t_errno is EMFILE or ENFILE or ENOMEM;

    private const int ENOMEM = 12;
    private const int ENFILE = 23;
    private const int EMFILE = 24;

    /// <summary>Reads <paramref name="path"/>; on <see cref="ProcReadStatus.Ok"/>, <paramref name="text"/> is its content.</summary>
    public static ProcReadStatus Read(string path, out ReadOnlySpan<char> text)
    {
        text = default;
        if (!OperatingSystem.IsLinux())
        {
            return Fallback(path, out text);
        }

        byte[] bytes = t_bytes ??= new byte[4096];
        int fd;
        do
        {
            fd = Libc.Open(path, OReadOnlyCloexec, 0);
        }
        while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);
        if (fd < 0)
        {
            return Fail(Marshal.GetLastPInvokeError());
        }

        int length = 0;
        try
        {
            while (true)
            {
                if (length == bytes.Length)
                {
                    if (bytes.Length >= MaxBytes)
                    {
                        t_error = "EFBIG";
                        t_errno = 27;
                        return ProcReadStatus.Failed;
                    }

                    Array.Resize(ref bytes, bytes.Length * 2);
                    t_bytes = bytes;
                }

                nint n = Libc.Read(fd, ref bytes[length], bytes.Length - length);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    return Fail(errno);
                }

                if (n == 0)
                {
                    break;
                }

                length += (int)n;
            }
        }
        finally
        {
            _ = Libc.Close(fd);
        }

        ReadOnlySpan<byte> content = bytes.AsSpan(0, length);
        if (content.StartsWith("\uFEFF"u8))
        {
            content = content[3..]; // as File.ReadAllText: a UTF-8 byte-order mark is not text
        }

        char[] chars = t_chars ??= new char[4096];
        int needed = Encoding.UTF8.GetMaxCharCount(content.Length);
        if (chars.Length < needed)
        {
            chars = t_chars = new char[Math.Max(needed, chars.Length * 2)];
        }

        int count = Encoding.UTF8.GetChars(content, chars);
        text = chars.AsSpan(0, count);
        return ProcReadStatus.Ok;
    }

    private static ProcReadStatus Fail(int errno)
    {
        t_errno = errno;
        t_error = errno switch
        {
            ENOENT => "ENOENT",
            ESRCH => "ESRCH",
            11 => "EAGAIN",
            1 => "EPERM",
            13 => "EACCES",
            5 => "EIO",
            ENOMEM => "ENOMEM",
            ENFILE => "ENFILE",
            EMFILE => "EMFILE",
            _ => $"errno {errno}",
        };
        return errno is ENOENT or ESRCH ? ProcReadStatus.Missing : ProcReadStatus.Failed;
    }

    private static ProcReadStatus Fallback(string path, out ReadOnlySpan<char> text)
    {
        try
        {
            text = File.ReadAllText(path);
            return ProcReadStatus.Ok;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            text = default;
            t_error = "ENOENT";
            return ProcReadStatus.Missing;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            text = default;
            t_error = ex.GetType().Name;
            return ProcReadStatus.Failed;
        }
    }
}
