using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Bundles;

namespace Writ.Spiffe.Jwt;

/// <summary>
/// Who presented a token to a relying party. For a bound token the peer is its mTLS client certificate (the token must be
/// bound to exactly that certificate); for a bearer token, a caller-chosen id (e.g. the client's authenticated name)
/// when there is no certificate. The replay cache tells peers apart by <see cref="Key"/>.
/// </summary>
public sealed class JwtPeer
{
    private readonly byte[]? _certSha256;

    private JwtPeer(byte[]? certSha256, string? id)
    {
        _certSha256 = certSha256;
        Id = id;
        Key = certSha256 is not null ? "x5t#S256:" + CertificateBinding.Encode(certSha256)
            : id is not null ? "id:" + id
            : "anonymous";
    }

    /// <summary>A peer nothing is known about (no client certificate, no id): bound tokens are refused for it.</summary>
    public static JwtPeer Anonymous { get; } = new(null, null);

    /// <summary>A peer identified by the mTLS client certificate it presented (its leaf).</summary>
    public static JwtPeer FromCertificate(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return FromCertificateDer(certificate.RawData);
    }

    /// <summary>A peer identified by the DER of the mTLS client certificate it presented.</summary>
    public static JwtPeer FromCertificateDer(ReadOnlySpan<byte> der) => new(SHA256.HashData(der), null);

    /// <summary>A peer without a client certificate, identified by a name the caller trusts (for bearer tokens).</summary>
    public static JwtPeer FromId(string id)
    {
        ArgumentException.ThrowIfNullOrEmpty(id);
        return new JwtPeer(null, id);
    }

    /// <summary>The certificate's x5t#S256, or the id, or nothing.</summary>
    public bool HasCertificate => _certSha256 is not null;

    public string? Id { get; }

    /// <summary>How the replay cache names this peer: <c>x5t#S256:…</c>, <c>id:…</c> or <c>anonymous</c>.</summary>
    public string Key { get; }

    internal ReadOnlySpan<byte> CertificateSha256 => _certSha256;

    public override string ToString() => Key;
}

/// <summary>Why <see cref="JwtSvidVerifier.Verify(string, JwtPeer)"/> refused a token.</summary>
public enum JwtSvidVerificationFailure
{
    None,

    /// <summary>Signature, audience, expiry, claims: see <see cref="JwtSvidValidator"/>.</summary>
    Invalid,

    /// <summary>The token has no jti and <see cref="JwtSvidVerifierOptions.RequireJti"/> is on.</summary>
    MissingJti,

    /// <summary>The token's jti is on the deny list (revoked).</summary>
    Revoked,

    /// <summary>A bearer (unbound) token and <see cref="JwtSvidVerifierOptions.AllowBearer"/> is off.</summary>
    BearerNotAllowed,

    /// <summary>A bound token, but the peer presented no client certificate.</summary>
    NoPeerCertificate,

    /// <summary>A bound token presented with another certificate than the one it is bound to.</summary>
    BindingMismatch,

    /// <summary>The token was first presented by another peer.</summary>
    Replayed,
}

/// <summary>The outcome of <see cref="JwtSvidVerifier.Verify(string, JwtPeer)"/>: the SVID when accepted, else why not (one line).</summary>
public sealed record JwtSvidVerification(bool IsValid, JwtSvid? Svid, JwtSvidVerificationFailure Failure, string? Error)
{
    internal static JwtSvidVerification Fail(JwtSvidVerificationFailure failure, string error) => new(false, null, failure, error);
}

/// <summary>A token presented by a second peer (raise an audit event, revoke the jti).</summary>
public sealed record JwtReplay(string? Jti, string ReplayKey, SpiffeId Subject, IReadOnlyList<string> Audience, DateTimeOffset ExpiresAt,
    string FirstPeer, string SecondPeer);

/// <summary>What a relying party accepts. <see cref="Audiences"/> is required; the rest is secure by default.</summary>
public sealed record JwtSvidVerifierOptions
{
    /// <summary>The audiences this relying party answers to (the token's aud must contain one).</summary>
    public required IReadOnlyList<string> Audiences { get; init; }

    /// <summary>Accept unbound (bearer) tokens. Off: only tokens bound to the peer's certificate pass.</summary>
    public bool AllowBearer { get; init; }

    /// <summary>
    /// Refuse tokens without a jti (every token Writ mints has one). Turn off for foreign issuers that set none: their replay
    /// key is then the token's SHA-256, and the deny list cannot name them.
    /// </summary>
    public bool RequireJti { get; init; } = true;

    /// <summary>Revoked jtis (e.g. a set kept current from Writ's revocation feed). Checked together with <see cref="IsJtiDenied"/>.</summary>
    public IReadOnlySet<string>? DeniedJtis { get; init; }

    /// <summary>A deny-list lookup called for every token with a jti; must be thread-safe and fast.</summary>
    public Func<string, bool>? IsJtiDenied { get; init; }

    /// <summary>Record first use per token and refuse it from a second peer. On by default.</summary>
    public bool DetectReplay { get; init; } = true;

    /// <summary>Called (on the verifying thread, after the refusal is decided) when a token comes from a second peer. Must not throw.</summary>
    public Action<JwtReplay>? OnReplay { get; init; }

    /// <summary>Most tokens remembered at once (see <see cref="JwtReplayCache"/>). Default 100,000.</summary>
    public int ReplayCacheCapacity { get; init; } = 100_000;

    /// <summary>Signature/claim validation knobs (leeway, kid, size).</summary>
    public JwtSvidValidationOptions Validation { get; init; } = new();
}

/// <summary>
/// The relying-party check for JWT-SVIDs presented over mTLS, usable by any .NET service and thread-safe. In order:
/// the token is valid (signature against the bundle source, audience, expiry; <see cref="JwtSvidValidator"/>); its jti is
/// not denied; if bound (<c>cnf</c> <c>x5t#S256</c>) the peer's client certificate is the one it is bound to (SHA-256 of
/// the DER, compared in constant time), else bearer tokens must be allowed; and it was not first presented by another
/// peer (replay; reported through <see cref="JwtSvidVerifierOptions.OnReplay"/>). Expected failures are results, never
/// exceptions.
/// </summary>
public sealed class JwtSvidVerifier
{
    private readonly IBundleSource _bundles;
    private readonly JwtSvidVerifierOptions _options;
    private readonly TimeProvider _time;

    public JwtSvidVerifier(IBundleSource bundles, JwtSvidVerifierOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(bundles);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Audiences is null || options.Audiences.Count == 0 || options.Audiences.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("a JWT-SVID verifier needs at least one non-empty audience: set JwtSvidVerifierOptions.Audiences", nameof(options));
        }
        _bundles = bundles;
        _options = options;
        _time = time ?? TimeProvider.System;
        ReplayCache = new JwtReplayCache(options.ReplayCacheCapacity);
    }

    /// <summary>The tokens seen so far and by whom.</summary>
    public JwtReplayCache ReplayCache { get; }

    /// <summary>
    /// The binding check alone, for a token already validated elsewhere (e.g. by the agent's ValidateJWTSVID): a bound token
    /// must come with the certificate it is bound to (constant-time compare); a bearer token passes only when
    /// <paramref name="allowBearer"/>. Null when it passes, else the refusal.
    /// </summary>
    public static JwtSvidVerification? CheckBinding(JwtSvid svid, JwtPeer peer, bool allowBearer)
    {
        ArgumentNullException.ThrowIfNull(svid);
        ArgumentNullException.ThrowIfNull(peer);
        if (svid.IsBound)
        {
            if (!peer.HasCertificate)
            {
                return JwtSvidVerification.Fail(JwtSvidVerificationFailure.NoPeerCertificate,
                    "the JWT-SVID is bound to an X.509-SVID (cnf x5t#S256) but the peer presented no client certificate: present the bound SVID over mTLS");
            }
            if (!svid.IsBoundTo(peer))
            {
                return JwtSvidVerification.Fail(JwtSvidVerificationFailure.BindingMismatch,
                    "the JWT-SVID is bound to another certificate than the peer's client certificate (cnf x5t#S256 differs): a stolen token is refused");
            }
            return null;
        }
        return allowBearer ? null : JwtSvidVerification.Fail(JwtSvidVerificationFailure.BearerNotAllowed,
            "the JWT-SVID is a bearer token (no cnf x5t#S256) and this relying party accepts only certificate-bound tokens");
    }

    /// <summary>Verifies a token presented over a connection whose client certificate is <paramref name="peerCertificate"/> (null: none).</summary>
    public JwtSvidVerification Verify(string token, X509Certificate2? peerCertificate) =>
        Verify(token, peerCertificate is null ? JwtPeer.Anonymous : JwtPeer.FromCertificate(peerCertificate));

    /// <summary>Verifies a token presented by <paramref name="peer"/>.</summary>
    public JwtSvidVerification Verify(string token, JwtPeer peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var now = _time.GetUtcNow();
        var validation = JwtSvidValidator.Validate(token, _bundles, _options.Audiences, now, _options.Validation);
        if (!validation.IsValid || validation.Svid is not { } svid)
        {
            return JwtSvidVerification.Fail(JwtSvidVerificationFailure.Invalid, validation.Error ?? "the JWT-SVID is not valid");
        }
        if (svid.Jti is null && _options.RequireJti)
        {
            return JwtSvidVerification.Fail(JwtSvidVerificationFailure.MissingJti,
                "JWT has no jti claim, so it cannot be revoked or checked for replay: refused (set RequireJti=false to accept such tokens)");
        }
        if (svid.Jti is { } jti && (_options.DeniedJtis?.Contains(jti) == true || _options.IsJtiDenied?.Invoke(jti) == true))
        {
            return JwtSvidVerification.Fail(JwtSvidVerificationFailure.Revoked, $"the JWT-SVID (jti {jti}) was revoked: fetch a fresh one");
        }
        if (CheckBinding(svid, peer, _options.AllowBearer) is { } refused)
        {
            return refused;
        }
        if (_options.DetectReplay)
        {
            var key = JwtReplayCache.KeyOf(svid);
            var check = ReplayCache.Record(key, peer.Key, svid.ExpiresAt + _options.Validation.Leeway, now);
            // Anonymous presenters cannot be told apart, so "the same peer again" proves nothing for them: a second
            // use of a token by an anonymous peer counts as a replay (a stolen bearer token is refused, not waved through).
            if (check.IsReplay || (check.Outcome != JwtReplayOutcome.FirstUse && ReferenceEquals(peer, JwtPeer.Anonymous)))
            {
                _options.OnReplay?.Invoke(new JwtReplay(svid.Jti, key, svid.Id, svid.Audience, svid.ExpiresAt, check.FirstPeer, peer.Key));
                return JwtSvidVerification.Fail(JwtSvidVerificationFailure.Replayed,
                    $"the JWT-SVID{(svid.Jti is null ? "" : $" (jti {svid.Jti})")} was already presented by another peer: a replayed token is refused");
            }
        }
        return new JwtSvidVerification(true, svid, JwtSvidVerificationFailure.None, null);
    }
}
