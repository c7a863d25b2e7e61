using System.Collections.Frozen;
using Writ.Protocol.Errors;

namespace Writ.Server.NodeAttestation;

/// <summary>The node attestors a server accepts, picked by the attestation type the agent names.</summary>
public sealed class NodeAttestorRegistry
{
    private readonly FrozenDictionary<string, INodeAttestor> _byType;

    public NodeAttestorRegistry(IEnumerable<INodeAttestor> attestors)
    {
        var byType = new Dictionary<string, INodeAttestor>(StringComparer.Ordinal);
        foreach (var a in attestors)
        {
            if (a.Type.Length == 0 || !a.Type.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_'))
                throw new ArgumentException($"node attestor type '{a.Type}' is not [a-z0-9_]+");
            if (!byType.TryAdd(a.Type, a))
                throw new ArgumentException($"two node attestors have type '{a.Type}': each type must be registered once");
        }
        _byType = byType.ToFrozenDictionary(StringComparer.Ordinal);
    }

    public IReadOnlyCollection<string> Types => _byType.Keys;

    /// <summary>The attestor for <paramref name="type"/>; an unknown type is <c>WRIT-ATTEST-UNKNOWN-TYPE</c>.</summary>
    public INodeAttestor Get(string type) =>
        _byType.TryGetValue(type, out var a) ? a : throw new WritException(NodeAttestationCodes.UnknownType, WritErrorKind.InvalidArgument,
            $"node attestation type '{Printable(type)}' is not enabled on this server: use one of {string.Join(", ", _byType.Keys.Order(StringComparer.Ordinal))}");

    /// <summary>At most 64 printable characters of what a client sent, for echoing in a message.</summary>
    internal static string Printable(string s) =>
        new([.. s.Take(64).Select(c => c is >= ' ' and <= '~' ? c : '?')]);
}
