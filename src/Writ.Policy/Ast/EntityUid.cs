using System.Text;

namespace Writ.Policy.Ast;

/// <summary>An entity identifier: a fully qualified entity type (e.g. <c>NS::User</c>) and an id string.</summary>
public sealed class EntityUid : IEquatable<EntityUid>
{
    private readonly int _hash;

    public EntityUid(string type, string id)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(id);
        Type = type;
        Id = id;
        _hash = HashCode.Combine(StringComparer.Ordinal.GetHashCode(type), StringComparer.Ordinal.GetHashCode(id));
    }

    /// <summary>Fully qualified entity type name, e.g. <c>NS::User</c>.</summary>
    public string Type { get; }

    public string Id { get; }

    public bool Equals(EntityUid? other) =>
        other is not null && (ReferenceEquals(this, other) ||
            (_hash == other._hash && string.Equals(Id, other.Id, StringComparison.Ordinal) && string.Equals(Type, other.Type, StringComparison.Ordinal)));

    public override bool Equals(object? obj) => obj is EntityUid other && Equals(other);

    public override int GetHashCode() => _hash;

    /// <summary>Cedar syntax, e.g. <c>NS::User::"alice"</c>.</summary>
    public override string ToString() => Type + "::" + Quote(Id);

    /// <summary>Quotes a string as a Cedar string literal.</summary>
    public static string Quote(string s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var sb = new StringBuilder(s.Length + 2);
        sb.Append('"');
        foreach (var r in s.EnumerateRunes())
        {
            switch (r.Value)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\0': sb.Append("\\0"); break;
                default:
                    if (Rune.IsControl(r) || r.Value == 0x2028 || r.Value == 0x2029)
                        sb.Append("\\u{").Append(r.Value.ToString("x", System.Globalization.CultureInfo.InvariantCulture)).Append('}');
                    else
                        sb.Append(r.ToString());
                    break;
            }
        }

        sb.Append('"');
        return sb.ToString();
    }
}
