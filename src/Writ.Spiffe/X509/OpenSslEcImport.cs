using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Security.Cryptography;

namespace Writ.Spiffe.X509;

/// <summary>
/// Imports an EC public key (P-256/P-384, uncompressed point) straight into an OpenSSL 3 provider key with
/// <c>EVP_PKEY_fromdata</c>. .NET's own import goes through OpenSSL's legacy EC_KEY (full public-key check, then an
/// export to the provider on first use), which costs about twice the ECDSA verification a CSR check is there for.
/// <c>EVP_PKEY_fromdata</c> still refuses a point that is not on the curve. Used only when .NET itself runs on
/// OpenSSL 3 (so both use the same libcrypto); anything unexpected disables it and callers use .NET's import.
/// </summary>
internal static class OpenSslEcImport
{
    private const int EvpPkeyPublicKey = 0x86;   // OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS
    private const uint OsslParamUtf8String = 4;
    private const uint OsslParamOctetString = 5;
    private const string LibCrypto = "libcrypto.so.3";

    // Process-lifetime constants for OSSL_PARAM names and values (never freed).
    private static readonly IntPtr Ec = Marshal.StringToCoTaskMemUTF8("EC");
    private static readonly IntPtr GroupKey = Marshal.StringToCoTaskMemUTF8("group");
    private static readonly IntPtr PubKey = Marshal.StringToCoTaskMemUTF8("pub");
    private static readonly IntPtr P256 = Marshal.StringToCoTaskMemUTF8("prime256v1");
    private static readonly IntPtr P384 = Marshal.StringToCoTaskMemUTF8("secp384r1");

    private static volatile bool _disabled = !OperatingSystem.IsLinux() || !IsOpenSsl3();

    [StructLayout(LayoutKind.Sequential)]
    private struct OsslParam
    {
        public IntPtr Key;
        public uint DataType;
        public IntPtr Data;
        public nuint DataSize;
        public nuint ReturnSize;
    }

    /// <summary>
    /// The key as an <see cref="ECDsa"/>, or null when this path is unavailable (then use .NET's import). Throws
    /// <see cref="CryptographicException"/> when OpenSSL refuses the point (not on the curve).
    /// </summary>
    /// <param name="point">The uncompressed point 04‖X‖Y (65 bytes for P-256, 97 for P-384).</param>
    public static ECDsa? TryImport(ReadOnlySpan<byte> point, bool p384)
    {
        if (_disabled || !OperatingSystem.IsLinux())
        {
            return null;
        }
        if (point.Length != (p384 ? 97 : 65) || point[0] != 0x04)
        {
            return null;
        }
        try
        {
            return Import(point, p384);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            _disabled = true;   // not the libcrypto we expected: .NET's import from now on
            return null;
        }
    }

    [SupportedOSPlatform("linux")]
    private static ECDsa? Import(ReadOnlySpan<byte> point, bool p384)
    {
        var buffer = Marshal.AllocHGlobal(point.Length);
        var ctx = IntPtr.Zero;
        var pkey = IntPtr.Zero;
        try
        {
            Marshal.Copy(point.ToArray(), 0, buffer, point.Length);
            var curve = p384 ? P384 : P256;
            OsslParam[] ps =
            [
                new() { Key = GroupKey, DataType = OsslParamUtf8String, Data = curve, DataSize = (nuint)(p384 ? 9 : 10) },
                new() { Key = PubKey, DataType = OsslParamOctetString, Data = buffer, DataSize = (nuint)point.Length },
                default,
            ];
            ctx = EVP_PKEY_CTX_new_from_name(IntPtr.Zero, Ec, IntPtr.Zero);
            if (ctx == IntPtr.Zero || EVP_PKEY_fromdata_init(ctx) != 1)
            {
                ERR_clear_error();   // leave no error on this thread's queue for .NET's next OpenSSL call to report
                _disabled = true;    // this libcrypto cannot do it: .NET's import from now on
                return null;
            }
            if (EVP_PKEY_fromdata(ctx, out pkey, EvpPkeyPublicKey, ps) != 1 || pkey == IntPtr.Zero)
            {
                ERR_clear_error();
                throw new CryptographicException("the EC public key is not a point on its curve");
            }
            using var handle = new SafeEvpPKeyHandle(pkey, ownsHandle: true);
            pkey = IntPtr.Zero;
            return new ECDsaOpenSsl(handle);   // takes its own reference
        }
        finally
        {
            if (pkey != IntPtr.Zero)
            {
                EVP_PKEY_free(pkey);
            }
            if (ctx != IntPtr.Zero)
            {
                EVP_PKEY_CTX_free(ctx);
            }
            Marshal.FreeHGlobal(buffer);
        }
    }

    /// <summary>Stops using this path (OpenSSL refused a key .NET accepts: something is not as expected).</summary>
    public static void Disable() => _disabled = true;

    /// <summary>Whether keys are imported through this path (tests check that it is in use where expected).</summary>
    public static bool Enabled => !_disabled;

    private static bool IsOpenSsl3()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        try
        {
            return SafeEvpPKeyHandle.OpenSslVersion is >= 0x30000000 and < 0x40000000;
        }
        catch (Exception e) when (e is PlatformNotSupportedException or TypeInitializationException or DllNotFoundException)
        {
            return false;
        }
    }

    [DllImport(LibCrypto)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern IntPtr EVP_PKEY_CTX_new_from_name(IntPtr libctx, IntPtr name, IntPtr propq);

    [DllImport(LibCrypto)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int EVP_PKEY_fromdata_init(IntPtr ctx);

    [DllImport(LibCrypto)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int EVP_PKEY_fromdata(IntPtr ctx, out IntPtr pkey, int selection, [In] OsslParam[] parameters);

    [DllImport(LibCrypto)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern void EVP_PKEY_CTX_free(IntPtr ctx);

    [DllImport(LibCrypto)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern void EVP_PKEY_free(IntPtr pkey);

    [DllImport(LibCrypto)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern void ERR_clear_error();
}
