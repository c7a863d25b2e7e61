using System.Globalization;

namespace Writ.Tpm.Device;

/// <summary>
/// Where the TPM is (<c>--tpm</c>): a character device such as the kernel resource manager <c>/dev/tpmrm0</c>, or
/// <c>tcp://HOST:PORT</c>, a TCP TPM speaking the raw command stream (<c>swtpm socket --server type=tcp</c>).
/// </summary>
public sealed record TpmAddress
{
    /// <summary>The kernel's TPM resource manager: each open gets its own view of transient objects and sessions.</summary>
    public const string DefaultDevice = "/dev/tpmrm0";

    private TpmAddress(string? devicePath, string? host, int port)
    {
        DevicePath = devicePath;
        Host = host;
        Port = port;
    }

    /// <summary>The character device's path; null for a TCP TPM.</summary>
    public string? DevicePath { get; }

    public string? Host { get; }

    public int Port { get; }

    public bool IsDevice => DevicePath is not null;

    public static TpmAddress Device(string path) => new(path, null, 0);

    public static TpmAddress Tcp(string host, int port) => new(null, host, port);

    /// <summary>Parses <c>/dev/…</c> (any absolute path) or <c>tcp://HOST:PORT</c>; false with a one-line reason otherwise.</summary>
    public static bool TryParse(string? text, out TpmAddress address, out string error)
    {
        address = null!;
        error = "";
        var s = text?.Trim() ?? "";
        if (s.Length == 0)
        {
            error = $"the TPM address is empty: use a device path such as {DefaultDevice} or tcp://HOST:PORT";
            return false;
        }
        if (s.StartsWith('/'))
        {
            address = Device(s);
            return true;
        }
        if (s.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase))
        {
            var rest = s["tcp://".Length..];
            var colon = rest.LastIndexOf(':');
            var host = colon > 0 ? rest[..colon].Trim('[', ']') : "";
            if (colon <= 0 || host.Length == 0 || rest.Contains('/', StringComparison.Ordinal)
                || !int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                error = $"the TPM address '{s}' is not tcp://HOST:PORT (a port from 1 to 65535)";
                return false;
            }
            address = Tcp(host, port);
            return true;
        }
        error = $"the TPM address '{s}' is neither a device path (such as {DefaultDevice}) nor tcp://HOST:PORT";
        return false;
    }

    public override string ToString() => DevicePath ?? $"tcp://{(Host!.Contains(':', StringComparison.Ordinal) ? $"[{Host}]" : Host)}:{Port}";
}
