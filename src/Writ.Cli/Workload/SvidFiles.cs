using System.Security.Cryptography;
using System.Text;
using Writ.Cli.CommandLine;

namespace Writ.Cli.Workload;

/// <summary>
/// Writes a workload's SVID files (the private key among them) so that no other local user can get the key or swap
/// the files: each temporary file gets an unguessable name and is created with O_EXCL (never an existing file, never
/// through a planted symlink) and its final mode, then renamed into place. A directory that other users may write to
/// is refused unless it has the sticky bit (as /tmp has), since they could otherwise replace the files.
/// </summary>
public static class SvidFiles
{
    public static void WriteAtomically(string dir, IReadOnlyList<(string Name, string Content, UnixFileMode Mode)> files)
    {
        dir = Path.GetFullPath(dir);
        Directory.CreateDirectory(dir);
        var mode = File.GetUnixFileMode(dir);
        if ((mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0 && (mode & UnixFileMode.StickyBit) == 0)
        {
            throw new CommandFailedException($"'{dir}' is writable by other users, who could replace the SVID files: " +
                "write to a directory only you can write to (e.g. chmod go-w), or one with the sticky bit");
        }
        var temps = new List<(string Tmp, string Final)>();
        try
        {
            foreach (var (name, content, fileMode) in files)
            {
                var tmp = Path.Combine(dir, $".{name}.{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12))}.tmp");
                using (var s = new FileStream(tmp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = fileMode }))
                {
                    temps.Add((tmp, Path.Combine(dir, name)));
                    File.SetUnixFileMode(s.SafeFileHandle, fileMode);   // exactly this mode, whatever the umask; on the handle, not a path
                    s.Write(Encoding.UTF8.GetBytes(content));
                    s.Flush(flushToDisk: true);
                }
            }
            foreach (var (tmp, final) in temps)
            {
                File.Move(tmp, final, overwrite: true);   // rename(2): replaces a planted symlink itself, never its target
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
}
