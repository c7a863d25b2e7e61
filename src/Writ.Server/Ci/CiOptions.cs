using System.Globalization;
using Writ.Server.Configuration;

namespace Writ.Server.Ci;

/// <summary>Agentless CI job identities (<c>writ ci login</c>, docs/ci.md): the <c>ci.*</c> keys.</summary>
public sealed record CiOptions
{
    public static CiOptions Default { get; } = new();

    /// <summary>At most this many audiences in one login (one JWT-SVID each).</summary>
    public int MaxJwtAudiences { get; init; } = 10;

    /// <summary>How often sessions whose job token expired are ended and old ones forgotten.</summary>
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromMinutes(1);

    public static readonly IReadOnlyList<ConfigKey> Keys =
    [
        new("ci.max_jwt_audiences", "10", "At most this many --audience values in one 'writ ci login' (one JWT-SVID each)."),
        new("ci.sweep_interval", "1m", "How often CI sessions whose job token expired are ended (ci.expired) and ones expired over an hour ago forgotten."),
    ];

    public static CiOptions Build(ConfigSources c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var v = c.Get("ci.max_jwt_audiences");
        if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var max) || max is < 1 or > 100)
        {
            c.Errors.Add($"{c.Describe("ci.max_jwt_audiences")} must be a whole number from 1 to 100, got '{v}'");
            max = Default.MaxJwtAudiences;
        }
        return new CiOptions
        {
            MaxJwtAudiences = max,
            SweepInterval = c.Duration("ci.sweep_interval", TimeSpan.FromSeconds(1), TimeSpan.FromHours(1)),
        };
    }
}
