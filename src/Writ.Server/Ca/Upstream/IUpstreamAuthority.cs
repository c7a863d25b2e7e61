using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe;

namespace Writ.Server.Ca.Upstream;

/// <summary>
/// The CA above the server's CA (SPIRE's UpstreamAuthority plugin family): it signs each X.509 authority the server
/// rotates in as an intermediate, and names the chain up to the root the bundle publishes. Today's implementation is
/// <see cref="DiskUpstreamAuthority"/> (a certificate and key in PEM files). A KMS, PKCS#11 or Vault upstream implements
/// this interface and is picked in <see cref="WritCa"/>'s constructor; nothing else in the CA changes, since the
/// upstream private key never leaves the implementation. Every failure an operator can fix is a <see cref="CaException"/>
/// with a <c>WRIT-CA-UPSTREAM-…</c> code that names what to fix.
/// </summary>
public interface IUpstreamAuthority
{
    /// <summary>Where the upstream is, for log lines and messages (a file path, a key URI); never a secret.</summary>
    string Name { get; }

    /// <summary>
    /// Checks that the upstream can sign now (certificates, key, lifetime) without signing anything. The CA calls it
    /// before it generates or writes anything at start-up, so a bad upstream changes nothing.
    /// </summary>
    Task VerifyAsync(DateTimeOffset now, CancellationToken ct);

    /// <summary>The upstream's certificate chain: its signing certificate first, then each issuer up to the self-signed root.</summary>
    Task<IReadOnlyList<X509Certificate2>> ChainAsync(CancellationToken ct);

    /// <summary>
    /// Signs an intermediate CA certificate for the trust domain and <paramref name="subjectKey"/>, valid from
    /// <paramref name="notBefore"/> to <paramref name="notAfter"/> at most (capped at the upstream's own expiry). Returns the
    /// intermediate followed by <see cref="ChainAsync"/>'s chain.
    /// </summary>
    Task<IReadOnlyList<X509Certificate2>> MintIntermediateAsync(TrustDomain td, PublicKey subjectKey, DateTimeOffset notBefore,
        DateTimeOffset notAfter, CancellationToken ct);
}
