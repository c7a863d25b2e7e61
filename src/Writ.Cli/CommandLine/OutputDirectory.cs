namespace Writ.Cli.CommandLine;

/// <summary>
/// The directories every `--write` (and `audit export --file`) writes into. Files there are credentials or records a
/// program trusts, so no other user may be able to replace them: the directory must be owned by the caller or root and
/// be writable by nobody else, and every directory above it must be owned by the caller or root and be writable by
/// nobody else unless it has the sticky bit (as /tmp has: others cannot rename or delete what they do not own). Both the
/// path as given and the path its symlinks resolve to are checked, and every symlink on the path as given (the last
/// component included) must be owned by the caller or root: another user's link could be pointed anywhere. Failures are one-line <see cref="CommandFailedException"/>s.
/// </summary>
public static class OutputDirectory
{
    private const UnixFileMode WritableByOthers = UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;
    private const UnixFileMode CreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    /// <summary>
    /// Checks <paramref name="dir"/> and its parents, creates what is missing (mode 0755, owned by the caller) unless
    /// <paramref name="create"/> is false, and returns the full path. Nothing is created when a check fails.
    /// </summary>
    public static string Prepare(string dir, bool create = true)
    {
        var full = Path.GetFullPath(dir);
        var existing = full;
        while (!Directory.Exists(existing))
        {
            if (File.Exists(existing) || IsDanglingLink(existing))
            {
                throw new CommandFailedException($"cannot write to '{full}': '{existing}' exists and is not a directory; choose a directory", code: CliErrors.File);
            }
            existing = Path.GetDirectoryName(existing) ?? "/";
        }
        CheckChain(full, existing);
        if (existing != full && create)
        {
            try
            {
                Directory.CreateDirectory(full, CreateMode);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw Failed(full, e);
            }
            CheckChain(full, full);
        }
        return full;
    }

    /// <summary>Checks the directory, then writes the files atomically (<see cref="Output.WriteFilesAtomically"/>).</summary>
    public static void WriteFiles(string dir, IReadOnlyList<(string Name, string Content, UnixFileMode Mode)> files)
    {
        var full = Prepare(dir);
        try
        {
            Output.WriteFilesAtomically(full, files);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Failed(full, e);
        }
    }

    /// <summary>A file system failure under <paramref name="dir"/> as one line that says what to do.</summary>
    public static CommandFailedException Failed(string dir, Exception e) => e is UnauthorizedAccessException
        ? new CommandFailedException($"cannot write to '{dir}': permission denied; run as a user who may write there, or choose another directory", code: CliErrors.File)
        : new CommandFailedException($"cannot write to '{dir}': {e.Message.Split('\n')[0].Trim().TrimEnd('.')}; choose another directory", code: CliErrors.File);

    /// <summary>Checks <paramref name="existing"/> (the deepest existing part of <paramref name="target"/>) and its parents, lexically and resolved.</summary>
    private static void CheckChain(string target, string existing)
    {
        for (var p = existing; p is not null; p = Path.GetDirectoryName(p))
        {
            CheckLink(target, p);
        }
        var resolved = UnixFile.RealPath(existing) ?? existing;
        foreach (var path in new[] { existing, resolved }.Distinct(StringComparer.Ordinal))
        {
            for (var p = path; p is not null; p = Path.GetDirectoryName(p))
            {
                Check(target, p, isTarget: p == path && existing == target);
            }
        }
    }

    /// <summary>
    /// A symlink (lstat, not followed) must be the caller's or root's: the owner of a link in a sticky directory can
    /// re-point it after the check (even with fs.protected_symlinks off, which would otherwise refuse to follow it).
    /// </summary>
    private static void CheckLink(string target, string path)
    {
        if (!UnixFile.TryLStat(path, out var uid, out var isLink, out var errno))
        {
            throw new CommandFailedException($"cannot write to '{target}': cannot inspect '{path}' ({UnixFile.Describe(errno)}); choose another directory", code: CliErrors.File);
        }
        var me = (uint)Writ.Server.Hosting.UnixPeer.EffectiveUid;
        if (isLink && uid != me && uid != 0)
        {
            throw new CommandFailedException($"refusing to write to '{target}': '{path}' is a symlink owned by uid {uid}, neither you nor root, " +
                "who could point it anywhere; write to a path without another user's symlinks", code: CliErrors.OutputUnsafe);
        }
    }

    private static void Check(string target, string path, bool isTarget)
    {
        if (!UnixFile.TryStat(path, out var uid, out var mode, out var errno))
        {
            throw new CommandFailedException($"cannot write to '{target}': cannot inspect '{path}' ({UnixFile.Describe(errno)}); choose another directory", code: CliErrors.File);
        }
        var me = (uint)Writ.Server.Hosting.UnixPeer.EffectiveUid;
        var what = isTarget ? $"'{path}'" : $"'{path}' (above '{target}')";
        if (uid != me && uid != 0)
        {
            throw new CommandFailedException($"refusing to write to '{target}': {what} is owned by uid {uid}, neither you nor root, " +
                "who could replace the files; write to a directory you or root own", code: CliErrors.OutputUnsafe);
        }
        if ((mode & WritableByOthers) != 0 && (isTarget || (mode & UnixFileMode.StickyBit) == 0))
        {
            throw new CommandFailedException($"refusing to write to '{target}': {what} is writable by other users, who could replace the files" +
                (isTarget ? " or plant new ones (even with the sticky bit)" : "") +
                "; write to a directory only you can write to (chmod go-w)", code: CliErrors.OutputUnsafe);
        }
    }

    private static bool IsDanglingLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget is not null;
        }
        catch (IOException)
        {
            return false;
        }
    }
}
