using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Writ.Cli.CommandLine;

/// <summary>Tables for people, JSON for programs, and atomic file writes for credentials.</summary>
public static class Output
{
    /// <summary>
    /// Indented, and escaping only what JSON requires: output goes to terminals and programs, never into HTML, so
    /// `+` (in base64 keys, `--ttl` values, …) and non-ASCII names stay as they are instead of `\u002B`.
    /// </summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void Json(TextWriter w, object value) => w.WriteLine(JsonSerializer.Serialize(value, value.GetType(), JsonOptions));

    public static void Table(TextWriter w, IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = rows.ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, all.Count == 0 ? 0 : all.Max(r => r[i].Length))).ToArray();
        var sb = new StringBuilder();
        void Line(IReadOnlyList<string> cells)
        {
            for (var i = 0; i < cells.Count; i++)
            {
                sb.Append(i == cells.Count - 1 ? cells[i] : cells[i].PadRight(widths[i] + 2));
            }
            sb.AppendLine();
        }
        Line(headers);
        foreach (var r in all)
        {
            Line(r);
        }
        w.Write(sb.ToString());
    }

    public static string Time(long unix) => unix == 0 ? "never"
        : DateTimeOffset.FromUnixTimeSeconds(unix).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public static string Time(DateTimeOffset t) => t.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>
    /// Writes files so a reader never sees a half-written one and no other local user can read or swap them: each goes
    /// to a temp file in the same directory with an unguessable name, created with O_EXCL (never an existing file, never
    /// through a planted symlink) and its final mode set on the handle, then renamed into place (rename(2) replaces a
    /// planted symlink itself, never its target).
    /// </summary>
    public static void WriteFilesAtomically(string dir, IReadOnlyList<(string Name, string Content, UnixFileMode Mode)> files)
    {
        Directory.CreateDirectory(dir);
        var temps = new List<(string Tmp, string Final)>();
        try
        {
            foreach (var (name, content, mode) in files)
            {
                var tmp = Path.Combine(dir, $".{name}.{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(12))}.tmp");
                using (var s = new FileStream(tmp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = mode }))
                {
                    temps.Add((tmp, Path.Combine(dir, name)));
                    File.SetUnixFileMode(s.SafeFileHandle, mode);   // exactly this mode, whatever the umask
                    s.Write(Encoding.UTF8.GetBytes(content));
                    s.Flush(flushToDisk: true);
                }
            }
            foreach (var (tmp, final) in temps)
            {
                File.Move(tmp, final, overwrite: true);
            }
        }
        catch
        {
            foreach (var (tmp, _) in temps)
            {
                File.Delete(tmp);
            }
            throw;
        }
    }

    public const UnixFileMode PublicFile = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
    public const UnixFileMode SecretFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;
}
