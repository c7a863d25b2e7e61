using Writ.Server.Configuration;

namespace Writ.Server.Ci;

/// <summary>Agentless CI job identities (<c>writ ci login</c>, docs/ci.md): the <c>ci.*</c> keys.</summary>
public sealed record CiOptions
{
    public static CiOptions Default { get; } = new();

    public static readonly IReadOnlyList<ConfigKey> Keys = [];

    public static CiOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        return Default;   // the ci lane adds its keys
    }
}
