using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Writ.Protocol;

namespace Writ.Server.Hosting;

/// <summary>
/// The server id (issue #16): stable per data dir, made at the first start (<c>s-</c> and 16 hex digits) and kept in
/// <c>&lt;data_dir&gt;/server-id</c> (0600). It names the server's CA journal (<c>ca/&lt;id&gt;</c>) and its row in the
/// servers table; a server started on another data dir is another server.
/// </summary>
public static partial class ServerIdFile
{
    public const string FileName = "server-id";

    /// <summary>The data dir's server id is not one this server wrote.</summary>
    public const string InvalidCode = "WRIT-HA-SERVER-ID-INVALID";

    [GeneratedRegex("^s-[0-9a-f]{16}$", RegexOptions.CultureInvariant)]
    private static partial Regex Shape();

    public static bool IsValid(string id) => Shape().IsMatch(id);

    /// <summary>
    /// Reads the data dir's server id, or draws a new one without writing it: <see cref="Persist"/> writes it once the
    /// start can no longer be refused, so a refused start leaves the data dir as it was.
    /// </summary>
    public static (string Id, bool Created) Load(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        if (File.Exists(path))
        {
            var text = File.ReadAllText(path).Trim();
            if (!IsValid(text))
            {
                throw new StartupRefusedException(InvalidCode,
                    $"{path} does not hold a server id (s- and 16 hex digits): restore it from backup, or delete it to make this a new server (its CA authorities are then another server's)");
            }
            return (text, false);
        }
        return ("s-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)), true);
    }

    /// <summary>Writes a new server id (to a temporary file, then moved into place; never over an existing one).</summary>
    public static void Persist(string dataDir, string id)
    {
        if (!IsValid(id))
            throw new ArgumentException("not a server id", nameof(id));
        var path = Path.Combine(dataDir, FileName);
        var tmp = path + ".tmp";
        using (var f = new FileStream(tmp, new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        using (var w = new StreamWriter(f))
        {
            w.WriteLine(id);
            w.Flush();
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: false);
    }
}
