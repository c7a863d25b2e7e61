namespace Writ.Cli.CommandLine;

/// <summary>
/// The options and positional arguments of one command line, parsed against the command's declared options.
/// `--name value`, `--name=value`, repeated options and boolean flags are supported.
/// </summary>
public sealed class ParsedArgs
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);

    public IReadOnlyList<string> Positionals { get; }

    private ParsedArgs(Dictionary<string, List<string>> values, List<string> positionals)
    {
        _values = values;
        Positionals = positionals;
    }

    public static ParsedArgs Parse(IReadOnlyList<string> args, CommandSpec spec)
    {
        var values = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var positionals = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (a == "--")
            {
                positionals.AddRange(args.Skip(i + 1));
                break;
            }
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
            {
                positionals.Add(a);
                continue;
            }
            var name = a[2..];
            string? inline = null;
            var eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                inline = name[(eq + 1)..];
                name = name[..eq];
            }
            var opt = spec.FindOption(name)
                ?? throw new UsageException($"unknown option --{name} for 'writ {spec.Path}'; run 'writ {spec.Path} --help' for its options", CliErrors.UnknownOption);
            string value;
            if (opt.IsFlag)
            {
                value = inline ?? "true";
            }
            else if (inline is not null)
            {
                value = inline;
            }
            else if (i + 1 < args.Count)
            {
                value = args[++i];
            }
            else
            {
                throw new UsageException($"option --{name} needs a value; e.g. --{name} {opt.ValueName}");
            }
            if (opt is { Name: "output", ValueName: "FORMAT" } && value is not ("json" or "text" or "table"))
            {
                // Every output format option: an unknown format must not silently print the default one.
                var first = opt.Help.Split(' ')[0];
                var formats = first == "json" ? "json" : $"{first} or json";
                // A command that writes a file takes it with --file: --output is always the format.
                var hint = spec.FindOption("file") is { Help: var h } && h.StartsWith("write to", StringComparison.Ordinal) ? "; write to a file with --file FILE" : "";
                throw new UsageException($"--output must be {formats}, got '{value}'{hint}");
            }
            if (opt is { Name: "limit" } && !(int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) && n > 0))
            {
                // A limit of 0 (or less) would mean "the default" on the wire: say so rather than print something else.
                throw new UsageException($"--limit must be a whole number of at least 1, got '{value}'");
            }
            if (!values.TryGetValue(opt.Name, out var list))
            {
                values[opt.Name] = list = [];
            }
            if (!opt.Repeatable && list.Count > 0)
            {
                throw new UsageException($"option --{name} was given more than once; give it once");
            }
            list.Add(value);
        }
        foreach (var opt in spec.Options)
        {
            if (!values.ContainsKey(opt.Name) && opt.EnvVar is { } env && Environment.GetEnvironmentVariable(env) is { Length: > 0 } fromEnv)
            {
                values[opt.Name] = [fromEnv];
            }
            if (opt.Required && !values.ContainsKey(opt.Name))
            {
                throw new UsageException($"'writ {spec.Path}' needs --{opt.Name} {opt.ValueName}", CliErrors.MissingOption);
            }
        }
        return new ParsedArgs(values, positionals);
    }

    public bool Has(string name) => _values.ContainsKey(name);

    public string? Get(string name) => _values.TryGetValue(name, out var l) ? l[^1] : null;

    public string Require(string name) =>
        Get(name) ?? throw new UsageException($"missing --{name}", CliErrors.MissingOption);

    public IReadOnlyList<string> GetAll(string name) => _values.TryGetValue(name, out var l) ? l : [];

    public bool Flag(string name) => Get(name) is { } v && v is not ("false" or "0" or "no");

    public int? GetInt(string name)
    {
        var v = Get(name);
        if (v is null)
        {
            return null;
        }
        return int.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new UsageException($"--{name} must be a whole number, got '{v}'");
    }

    /// <summary>Parses a duration such as 90s, 15m, 1h, 2h30m, 7d, or a bare number of seconds.</summary>
    public TimeSpan? GetDuration(string name)
    {
        var v = Get(name);
        if (v is null)
        {
            return null;
        }
        return Writ.Server.Configuration.ConfigSources.TryParseDuration(v, out var d)
            ? d
            : throw new UsageException($"--{name} must be a duration like 90s, 15m, 1h or 2h30m, got '{v}'");
    }

    public bool JsonOutput => string.Equals(Get("output"), "json", StringComparison.Ordinal);
}

/// <summary>A command-line mistake: printed as one line with its code (<see cref="CliErrors.Usage"/> unless finer), exit code 2.</summary>
public sealed class UsageException(string message, string code = CliErrors.Usage) : Writ.Protocol.Errors.WritException(code, Writ.Protocol.Errors.WritErrorKind.InvalidArgument, message);
