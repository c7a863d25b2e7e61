using System.Security.Cryptography;

namespace Writ.Spiffe.Jwt;

/// <summary>A JWT-SVID verification key in a trust bundle, identified by its <c>kid</c>.</summary>
public sealed record JwtAuthority(string Kid, AsymmetricAlgorithm PublicKey);

/// <summary>A JWT-SVID signing key. <see cref="KeyId"/> is the JWT <c>kid</c>; alg follows the key (P-256→ES256, P-384→ES384, P-521→ES512, RSA→RS256).</summary>
public sealed record JwtSigningKey(string KeyId, AsymmetricAlgorithm Key)
{
    /// <summary>The JOSE alg this key signs with.</summary>
    public string Algorithm => Key switch
    {
        ECDsa { KeySize: 256 } => "ES256",
        ECDsa { KeySize: 384 } => "ES384",
        ECDsa { KeySize: 521 } => "ES512",
        RSA => "RS256",
        _ => throw new InvalidOperationException($"JWT signing key type {Key?.GetType().Name} is not supported: use EC P-256/P-384/P-521 or RSA"),
    };
}
