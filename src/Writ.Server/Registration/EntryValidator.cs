using System.Globalization;
using Writ.Protocol.Errors;
using Writ.Server.Storage;
using Writ.Spiffe;
using Writ.Protocol.Evidence;

namespace Writ.Server.Registration;

/// <summary>
/// An invalid request from a caller (admin or agent): a one-line message saying what was wrong and what to do, under
/// <see cref="WritStatus.InvalidArgumentCode"/> unless a finer code is given.
/// </summary>
public sealed class ValidationException(string message, string code = WritStatus.InvalidArgumentCode)
    : WritException(code, WritErrorKind.InvalidArgument, message);

/// <summary>
/// Checks registration entries before anything is written: IDs inside the trust domain and outside the reserved
/// <c>/writ/</c> namespace, at least one well-formed selector, TTLs within the server's bounds, valid DNS names.
/// </summary>
public sealed class EntryValidator(TrustDomain td, TimeSpan maxTtl, TimeProvider time)
{
    public const int MinTtlSeconds = 10;
    public const int MaxSelectors = 64;
    public const int MaxDnsNames = 32;
    public const int MaxHintLength = 1024;

    /// <summary>
    /// The first problem with the entry, or null when it is valid. <paramref name="label"/> names it in the message.
    /// A selector type no built-in attestor emits (<see cref="SelectorTypes"/>) is a problem unless
    /// <paramref name="allowUnknownSelectorTypes"/>: such an entry could never match.
    /// </summary>
    public string? Check(RegistrationEntry e, string label, bool allowUnknownSelectorTypes = false)
    {
        if (!SpiffeId.TryParse(e.SpiffeId, out var id, out var idErr))
        {
            return $"{label}: spiffe_id '{e.SpiffeId}' is not a SPIFFE ID ({idErr}); use spiffe://{td.Name}/path";
        }
        if (!id.MemberOf(td))
        {
            return $"{label}: spiffe_id '{e.SpiffeId}' is outside this server's trust domain '{td.Name}'; use spiffe://{td.Name}/...";
        }
        if (id.Path.Length == 0)
        {
            return $"{label}: spiffe_id '{e.SpiffeId}' has no path; the trust domain ID itself names the CA, give a workload path such as spiffe://{td.Name}/app";
        }
        if (IsReserved(id))
        {
            return $"{label}: spiffe_id '{e.SpiffeId}' is in the reserved /writ/ namespace (agents and servers); choose another path";
        }
        if (!SpiffeId.TryParse(e.ParentId, out var parent, out var parentErr))
        {
            return $"{label}: parent_id '{e.ParentId}' is not a SPIFFE ID ({parentErr}); give an agent ID (writ agent list) or a node alias";
        }
        if (!parent.MemberOf(td))
        {
            return $"{label}: parent_id '{e.ParentId}' is outside this server's trust domain '{td.Name}'";
        }
        if (parent == id)
        {
            return $"{label}: parent_id equals spiffe_id; an entry is parented to the agent (or node alias) that serves it";
        }
        if (e.Selectors.Count == 0)
        {
            return $"{label}: at least one selector is required, e.g. --selector unix:uid:1000";
        }
        if (e.Selectors.Count > MaxSelectors)
        {
            return $"{label}: {e.Selectors.Count} selectors is more than the {MaxSelectors} allowed";
        }
        foreach (var s in e.Selectors)
        {
            if (!Selector.TryParse(s.ToString(), out _, out var selErr) || s.Type.Length == 0 || s.Value.Length == 0)
            {
                return $"{label}: selector '{s}' is invalid ({selErr ?? "type and value must be non-empty"}); write type:value, e.g. unix:uid:1000";
            }
            if (!allowUnknownSelectorTypes && !SelectorTypes.IsBuiltIn(s.Type, s.Value))
            {
                var type = SelectorTypes.TypeOf(s.Type, s.Value);
                var hint = SelectorTypes.Suggest(type) is { } near ? $"did you mean '{near}'? "
                    : $"known types: {string.Join(", ", SelectorTypes.BuiltIn.Order(StringComparer.Ordinal))}; ";
                return $"{label}: selector '{s}' has type '{type}', which no built-in attestor emits, so the entry could never match; " +
                    hint + "for an attestor plugin the server does not load, pass --allow-unknown-selector-type";
            }
        }
        if (parent.Path == "/writ/server" && !e.Selectors.Any(s => s.Type == "oidc" && (s.Value.StartsWith("sub:", StringComparison.Ordinal) || s.Value.StartsWith("claim:", StringComparison.Ordinal))))
        {
            // A CI entry with only oidc:iss: would give its identity to every job of every project the issuer signs
            // tokens for (with GitHub's issuer: every repository on github.com).
            return $"{label}: an entry parented to {e.ParentId} (CI jobs) needs an oidc:sub: or oidc:claim: selector: with only oidc:iss: it matches every job the issuer signs a token for, of any project; add e.g. --selector oidc:claim:repository:org/app --selector oidc:claim:ref:refs/heads/main";
        }
        if (TtlProblem(e.X509TtlSeconds, "x509_ttl") is { } x)
        {
            return $"{label}: {x}";
        }
        if (TtlProblem(e.JwtTtlSeconds, "jwt_ttl") is { } j)
        {
            return $"{label}: {j}";
        }
        if (e.DnsNames.Count > MaxDnsNames)
        {
            return $"{label}: {e.DnsNames.Count} DNS names is more than the {MaxDnsNames} allowed";
        }
        foreach (var d in e.DnsNames)
        {
            if (!IsDnsName(d))
            {
                return $"{label}: DNS name '{d}' is not a valid host name (letters, digits, '-', '.', optional leading '*.'; at most 253 characters)";
            }
        }
        if (e.Hint.Length > MaxHintLength || e.Hint.Any(char.IsControl))
        {
            return $"{label}: hint must be at most {MaxHintLength} printable characters";
        }
        if (e.ExpiresAt is { } exp && exp <= time.GetUtcNow())
        {
            return $"{label}: expires_at {exp.ToString("u", CultureInfo.InvariantCulture)} is in the past; give a future time or none";
        }
        return null;
    }

    /// <summary>Validates all entries; throws <see cref="ValidationException"/> for the first invalid one.</summary>
    public void CheckAll(IReadOnlyList<RegistrationEntry> entries, bool allowUnknownSelectorTypes = false)
    {
        if (entries.Count == 0)
        {
            throw new ValidationException("no entries given; pass --spiffe-id, --parent-id and --selector, or --file with a JSON list");
        }
        for (var i = 0; i < entries.Count; i++)
        {
            var label = entries.Count == 1 ? "entry" : $"entry {i + 1} of {entries.Count}";
            if (Check(entries[i], label, allowUnknownSelectorTypes) is { } problem)
            {
                throw new ValidationException(problem);
            }
        }
    }

    private string? TtlProblem(int seconds, string name)
    {
        if (seconds == 0)
        {
            return null;
        }
        if (seconds < MinTtlSeconds)
        {
            return $"{name} {seconds}s is below the minimum of {MinTtlSeconds}s (0 means the server default)";
        }
        if (seconds > maxTtl.TotalSeconds)
        {
            return $"{name} {seconds}s is above the server's max_ttl of {(long)maxTtl.TotalSeconds}s; lower it or raise max_ttl";
        }
        return null;
    }

    /// <summary>IDs under /writ/ belong to agents and servers; no registration entry may claim one.</summary>
    public static bool IsReserved(SpiffeId id) =>
        id.Path.StartsWith("/writ/", StringComparison.Ordinal) || id.Path == "/writ";

    public static bool IsDnsName(string name)
    {
        if (name.Length is 0 or > 253)
        {
            return false;
        }
        var n = name.StartsWith("*.", StringComparison.Ordinal) ? name[2..] : name;
        foreach (var label in n.Split('.'))
        {
            if (label.Length is 0 or > 63 || label[0] == '-' || label[^1] == '-'
                || !label.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
            {
                return false;
            }
        }
        return true;
    }
}
