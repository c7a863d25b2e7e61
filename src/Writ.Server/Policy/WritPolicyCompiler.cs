using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Writ.Policy.Ast;
using Writ.Policy.Schema;
using Writ.Policy.Validation;
using Writ.Server.Storage;

namespace Writ.Server.Policy;

/// <summary>A policy set ready for decisions: the parsed, schema-validated policies and each permit's <c>@max_ttl</c>.</summary>
public sealed record CompiledPolicySet(PolicySet Set, IReadOnlyDictionary<string, TimeSpan> MaxTtl, IReadOnlyList<PolicyFileRecord> Files, string Sha256)
{
    private PolicySet? _decisions;

    /// <summary>
    /// What decisions are made with: the pushed policies (<see cref="Set"/>) and Writ's built-in permits, which apply to
    /// admin-only actions (<see cref="WritPolicyCompiler.BuiltinAdminMintId"/>), so admin minting works with every set
    /// pushed before it was policy-gated, and a forbid of the identity team still wins.
    /// </summary>
    public PolicySet Decisions => _decisions ??= new PolicySet([.. Set.All, .. WritPolicyCompiler.Builtins]);
}

/// <summary>
/// Turns pushed policy files into a <see cref="CompiledPolicySet"/>: each file parsed (ids from <c>@id</c>, otherwise
/// <c>FILE#N</c> by position in its file, so unnamed policies of two files never clash), the whole set validated
/// against the Writ schema (strict Cedar validation), <c>@max_ttl</c> annotations checked. Errors are one line each,
/// <c>FILE:LINE:COL: message</c>.
/// </summary>
public static class WritPolicyCompiler
{
    public const string MaxTtlAnnotation = "max_ttl";

    private static readonly Lazy<CedarSchema> LazySchema = new(() =>
    {
        var text = Resource("Writ.Server.Policy.writ.cedarschema");
        return CedarSchema.TryParseCedar(text, out var schema, out var errors)
            ? schema!
            : throw new InvalidOperationException("the built-in Writ schema does not parse: " + string.Join("; ", errors));
    });

    /// <summary>The Writ schema (docs/policy.md lists every attribute).</summary>
    public static CedarSchema Schema => LazySchema.Value;

    public static string SchemaText { get; } = Resource("Writ.Server.Policy.writ.cedarschema");

    /// <summary>The default policy set (SPIRE's behaviour), installed as version 1 on first start.</summary>
    public static IReadOnlyList<PolicyFileRecord> DefaultFiles { get; } = [new("default.cedar", Resource("Writ.Server.Policy.default.cedar"))];

    /// <summary>The id of the built-in permit of <c>AdminMintX509Svid</c> and <c>AdminMintJwtSvid</c> (reserved: a pushed policy may not use it).</summary>
    public const string BuiltinAdminMintId = "writ-builtin-admin-mint";

    /// <summary>Policy ids of this prefix (any case, any padding) are Writ's own: a pushed policy may not take or mimic one.</summary>
    public const string BuiltinPrefix = "writ-builtin-";

    private static string WritStatusText(string id) => new([.. id.Select(c => char.IsControl(c) ? '?' : c)]);

    private static readonly Lazy<IReadOnlyList<CedarPolicy>> LazyBuiltins = new(() =>
    {
        const string text = $$"""
            @id("{{BuiltinAdminMintId}}")
            permit (
              principal,
              action in [Writ::Action::"AdminMintX509Svid", Writ::Action::"AdminMintJwtSvid"],
              resource
            );
            """;
        if (!PolicySet.TryParse(text, out var set, out var errors) || Validator.Validate(set!, Schema).Errors.Count > 0)
        {
            throw new InvalidOperationException("the built-in admin-mint permit does not compile: " + string.Join("; ", errors.Select(e => e.Message)));
        }
        return set!.All;
    });

    /// <summary>Writ's built-in permits, added to every set at decision time (<see cref="CompiledPolicySet.Decisions"/>).</summary>
    public static IReadOnlyList<CedarPolicy> Builtins => LazyBuiltins.Value;

    public static bool TryCompile(IReadOnlyList<PolicyFileRecord> files, out CompiledPolicySet? compiled, out IReadOnlyList<string> errors)
    {
        ArgumentNullException.ThrowIfNull(files);
        compiled = null;
        var errs = new List<string>();
        if (files.Count == 0)
        {
            errors = ["the policy set is empty: push at least one .cedar file (an empty set would deny every issuance)"];
            return false;
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        var policies = new List<CedarPolicy>();
        var origin = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var f in files)
        {
            if (string.IsNullOrWhiteSpace(f.Name) || f.Name.Any(char.IsControl) || !names.Add(f.Name))
            {
                errs.Add($"{f.Name}: file names must be unique, printable and non-empty");
                continue;
            }
            if (!PolicySet.TryParse(f.Text, out var set, out var parseErrors))
            {
                errs.AddRange(parseErrors.Count == 0
                    ? [$"{f.Name}: the policies do not parse; check the Cedar syntax"]
                    : parseErrors.Select(e => $"{f.Name}:{e.Line}:{e.Column}: {OneLine(e.Message)}"));
                continue;
            }
            var n = 0;
            foreach (var p in set!.All)
            {
                var named = p.Annotations.ContainsKey("id") ? p : p.WithId($"{f.Name}#{n.ToString(CultureInfo.InvariantCulture)}");
                n++;
                if (p.IsTemplate)
                {
                    errs.Add($"{f.Name}:{p.Span.Line}:{p.Span.Column}: policy {named.Id} is a template; Writ takes static policies only");
                    continue;
                }
                if (named.Id.Trim().StartsWith(BuiltinPrefix, StringComparison.OrdinalIgnoreCase) || named.Id.Any(c => char.IsControl(c) || char.IsWhiteSpace(c) && c != ' ')
                    || named.Id != named.Id.Trim())
                {
                    errs.Add($"{f.Name}:{p.Span.Line}:{p.Span.Column}: policy id '{WritStatusText(named.Id)}' is reserved or malformed: ids starting '{BuiltinPrefix}' are Writ's own (the built-in permit of admin minting), and an id has no surrounding spaces or control characters; restrict admin minting with a forbid policy of another id");
                    continue;
                }
                if (origin.TryGetValue(named.Id, out var other))
                {
                    errs.Add($"{f.Name}:{p.Span.Line}:{p.Span.Column}: policy id '{named.Id}' is also used in {other}; give each policy its own @id");
                    continue;
                }
                origin[named.Id] = f.Name;
                policies.Add(named);
            }
        }
        if (errs.Count > 0)
        {
            errors = errs;
            return false;
        }
        var all = new PolicySet(policies);
        var result = Validator.Validate(all, Schema);
        foreach (var e in result.Errors)
        {
            var file = origin.GetValueOrDefault(e.PolicyId, "?");
            errs.Add(e.Line > 0 ? $"{file}:{e.Line}:{e.Column}: policy {e.PolicyId}: {OneLine(e.Message)}" : $"{file}: policy {e.PolicyId}: {OneLine(e.Message)}");
        }
        var maxTtl = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        foreach (var p in policies)
        {
            if (!p.Annotations.TryGetValue(MaxTtlAnnotation, out var text))
                continue;
            if (!TryParseDuration(text, out var ttl))
                errs.Add($"{origin[p.Id]}:{p.Span.Line}:{p.Span.Column}: policy {p.Id}: @max_ttl(\"{OneLine(text)}\") is not a duration; write seconds or a number with s, m, h or d, e.g. @max_ttl(\"5m\")");
            else if (p.Effect != Effect.Permit)
                errs.Add($"{origin[p.Id]}:{p.Span.Line}:{p.Span.Column}: policy {p.Id}: @max_ttl applies to permit policies only; move it to the permit that allows the issuance");
            else
                maxTtl[p.Id] = ttl;
        }
        if (errs.Count > 0)
        {
            errors = errs;
            return false;
        }
        errors = [];
        compiled = new CompiledPolicySet(all, maxTtl, files, Sha256(files));
        return true;
    }

    /// <summary>Hex SHA-256 over the files (name and text, length-prefixed, in push order).</summary>
    public static string Sha256(IReadOnlyList<PolicyFileRecord> files)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in files)
        {
            foreach (var s in new[] { f.Name, f.Text })
            {
                var b = Encoding.UTF8.GetBytes(s);
                h.AppendData(BitConverter.GetBytes(b.Length));
                h.AppendData(b);
            }
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>"300", "300s", "5m", "1h", "1d": positive, at most 10 years.</summary>
    public static bool TryParseDuration(string text, out TimeSpan value)
    {
        value = default;
        var t = text.Trim();
        if (t.Length == 0)
            return false;
        var unit = char.IsDigit(t[^1]) ? 's' : t[^1];
        var digits = char.IsDigit(t[^1]) ? t : t[..^1];
        if (digits.Length is 0 or > 9 || !digits.All(char.IsAsciiDigit) || !long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n <= 0)
            return false;
        value = unit switch
        {
            's' => TimeSpan.FromSeconds(n),
            'm' => TimeSpan.FromMinutes(n),
            'h' => TimeSpan.FromHours(n),
            'd' => TimeSpan.FromDays(n),
            _ => TimeSpan.Zero,
        };
        return value > TimeSpan.Zero && value <= TimeSpan.FromDays(3650);
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");

    private static string Resource(string name)
    {
        using var stream = typeof(WritPolicyCompiler).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"embedded resource {name} is missing from the build");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}
