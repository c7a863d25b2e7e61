using System.Globalization;
using System.Text;
using Writ.Policy.Ast;

namespace Writ.Policy.Evaluation;

public enum ValueKind { Bool, Long, String, Entity, Set, Record, Extension }

/// <summary>A Cedar value. Values are immutable and compare by content (<see cref="Equals(Value?)"/> is Cedar's <c>==</c>).</summary>
public abstract class Value : IEquatable<Value>
{
    private protected Value() { }

    public abstract ValueKind Kind { get; }

    /// <summary>Cedar's name for this value's type, for error messages (e.g. <c>Long</c>, <c>Set</c>, <c>decimal</c>).</summary>
    public abstract string TypeName { get; }

    public abstract bool Equals(Value? other);

    public sealed override bool Equals(object? obj) => obj is Value v && Equals(v);

    public abstract override int GetHashCode();

    /// <summary>The value in Cedar syntax.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        Write(sb);
        return sb.ToString();
    }

    internal abstract void Write(StringBuilder sb);

    public static BoolValue Of(bool b) => b ? BoolValue.True : BoolValue.False;

    public static LongValue Of(long l) => new(l);

    public static StringValue Of(string s) => new(s);

    public static EntityValue Of(EntityUid uid) => new(uid);
}

public sealed class BoolValue : Value
{
    public static readonly BoolValue True = new(true);
    public static readonly BoolValue False = new(false);

    private BoolValue(bool value) => Value = value;

    public bool Value { get; }
    public override ValueKind Kind => ValueKind.Bool;
    public override string TypeName => "Bool";
    public override bool Equals(Value? other) => other is BoolValue b && b.Value == Value;
    public override int GetHashCode() => Value ? 1 : 2;
    internal override void Write(StringBuilder sb) => sb.Append(Value ? "true" : "false");
}

public sealed class LongValue(long value) : Value
{
    public long Value { get; } = value;
    public override ValueKind Kind => ValueKind.Long;
    public override string TypeName => "Long";
    public override bool Equals(Value? other) => other is LongValue l && l.Value == Value;
    public override int GetHashCode() => Value.GetHashCode();
    internal override void Write(StringBuilder sb) => sb.Append(Value.ToString(CultureInfo.InvariantCulture));
}

public sealed class StringValue(string value) : Value
{
    public string Value { get; } = value ?? throw new ArgumentNullException(nameof(value));
    public override ValueKind Kind => ValueKind.String;
    public override string TypeName => "String";
    public override bool Equals(Value? other) => other is StringValue s && string.Equals(s.Value, Value, StringComparison.Ordinal);
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Value);
    internal override void Write(StringBuilder sb) => sb.Append(EntityUid.Quote(Value));
}

public sealed class EntityValue(EntityUid uid) : Value
{
    public EntityUid Uid { get; } = uid ?? throw new ArgumentNullException(nameof(uid));
    public override ValueKind Kind => ValueKind.Entity;
    public override string TypeName => "(entity of type `" + Uid.Type + "`)";
    public override bool Equals(Value? other) => other is EntityValue e && e.Uid.Equals(Uid);
    public override int GetHashCode() => Uid.GetHashCode();
    internal override void Write(StringBuilder sb) => sb.Append(Uid.ToString());
}

/// <summary>A set of distinct values (duplicates are removed on construction).</summary>
public sealed class SetValue : Value
{
    public static readonly SetValue Empty = new([]);
    private readonly Value[] _items;
    private HashSet<Value>? _lookup;
    private int _hash;

    public SetValue(IEnumerable<Value> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        var list = new List<Value>();
        HashSet<Value>? seen = null;
        foreach (var v in items)
        {
            if (list.Count < 8)
            {
                var dup = false;
                foreach (var x in list)
                {
                    if (x.Equals(v)) { dup = true; break; }
                }

                if (!dup) list.Add(v);
            }
            else
            {
                seen ??= new HashSet<Value>(list);
                if (seen.Add(v)) list.Add(v);
            }
        }

        _items = [.. list];
        _lookup = seen;
    }

    public IReadOnlyList<Value> Items => _items;
    public int Count => _items.Length;
    public override ValueKind Kind => ValueKind.Set;
    public override string TypeName => "Set";

    public bool Contains(Value v)
    {
        if (_items.Length <= 8)
        {
            foreach (var x in _items)
            {
                if (x.Equals(v)) return true;
            }

            return false;
        }

        _lookup ??= new HashSet<Value>(_items);
        return _lookup.Contains(v);
    }

    public override bool Equals(Value? other)
    {
        if (other is not SetValue s || s._items.Length != _items.Length) return false;
        if (ReferenceEquals(this, s)) return true;
        if (GetHashCode() != s.GetHashCode()) return false;
        foreach (var x in _items)
        {
            if (!s.Contains(x)) return false;
        }

        return true;
    }

    public override int GetHashCode()
    {
        if (_hash == 0)
        {
            var h = 0x5e7;
            foreach (var x in _items) h += x.GetHashCode() * 31 + 7;
            _hash = h == 0 ? 1 : h;
        }

        return _hash;
    }

    internal override void Write(StringBuilder sb)
    {
        sb.Append('[');
        for (var i = 0; i < _items.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            _items[i].Write(sb);
        }

        sb.Append(']');
    }
}

/// <summary>A record: attribute names to values.</summary>
public sealed class RecordValue : Value
{
    public static readonly RecordValue Empty = new(new Dictionary<string, Value>(StringComparer.Ordinal));
    private readonly Dictionary<string, Value> _fields;
    private int _hash;

    /// <summary>Takes ownership of <paramref name="fields"/>; the caller must not change it afterwards.</summary>
    public RecordValue(Dictionary<string, Value> fields) => _fields = fields ?? throw new ArgumentNullException(nameof(fields));

    public IReadOnlyDictionary<string, Value> Fields => _fields;
    public override ValueKind Kind => ValueKind.Record;
    public override string TypeName => "Record";

    public bool TryGet(string key, out Value value) => _fields.TryGetValue(key, out value!);

    public override bool Equals(Value? other)
    {
        if (other is not RecordValue r || r._fields.Count != _fields.Count) return false;
        if (ReferenceEquals(this, r)) return true;
        foreach (var (k, v) in _fields)
        {
            if (!r._fields.TryGetValue(k, out var ov) || !ov.Equals(v)) return false;
        }

        return true;
    }

    public override int GetHashCode()
    {
        if (_hash == 0)
        {
            var h = 0x7ec;
            foreach (var (k, v) in _fields) h += StringComparer.Ordinal.GetHashCode(k) ^ (v.GetHashCode() * 17);
            _hash = h == 0 ? 1 : h;
        }

        return _hash;
    }

    internal override void Write(StringBuilder sb)
    {
        sb.Append('{');
        var first = true;
        foreach (var (k, v) in _fields.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (!first) sb.Append(", ");
            first = false;
            sb.Append(EntityUid.Quote(k)).Append(": ");
            v.Write(sb);
        }

        sb.Append('}');
    }
}

/// <summary>A value of an extension type (ipaddr, decimal, datetime, duration).</summary>
public abstract class ExtensionValue : Value
{
    public override ValueKind Kind => ValueKind.Extension;

    /// <summary>True if <c>&lt;</c>, <c>&lt;=</c>, <c>&gt;</c>, <c>&gt;=</c> apply to this type (datetime and duration).</summary>
    public virtual bool SupportsComparison => false;

    /// <summary>Orders two values of the same extension type (only when <see cref="SupportsComparison"/>).</summary>
    public virtual int CompareTo(ExtensionValue other) => throw new NotSupportedException("this extension type has no order");
}
