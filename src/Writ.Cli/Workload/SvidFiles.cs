using Writ.Cli.CommandLine;

namespace Writ.Cli.Workload;

/// <summary>
/// Writes SVID files (the private key among them) for `writ svid fetch --write` and `writ x509 mint --write`:
/// <see cref="Output.WriteFilesAtomically"/> (unguessable O_EXCL temp files with their final mode, renamed into place),
/// and a directory that other users may write to is refused unless it has the sticky bit (as /tmp has), since they
/// could otherwise replace the files.
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
        Output.WriteFilesAtomically(dir, files);
    }
}
