namespace Writ.Tpm.Device;

/// <summary>One open connection to a TPM: sends one whole command, returns its whole response (bounded in size).</summary>
public interface ITpmTransport : IDisposable
{
    byte[] Execute(ReadOnlySpan<byte> command);
}

/// <summary>The TPM could not be reached or broke the command stream (not a TPM response code: see <c>TpmException</c>).</summary>
public sealed class TpmDeviceException(string message, Exception? inner = null) : Exception(message, inner);
