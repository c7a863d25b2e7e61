using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Writ.Protocol.Errors;
using Writ.Protocol.Evidence;
using Writ.Protocol.X509Pop;
using Writ.Server.Storage;

namespace Writ.Server.NodeAttestation.X509Pop;

/// <summary>
/// <c>x509pop</c>: the node proves possession of the private key of a certificate from the fleet's machine PKI. The
/// evidence is the node's certificate chain (leaf first, DER); it must verify, at the server's time, to a CA of
/// <c>x509pop.ca_bundle</c> (intermediates only from the evidence, no downloads, no revocation check), and the leaf must
/// be an end-entity certificate allowed digitalSignature (and clientAuth when it has an EKU). The server then sends a
/// fresh nonce with the SHA-256 of the agent's CSR and requires the leaf key's signature over both
/// (<see cref="X509PopProof"/>). Agent ID from <see cref="X509PopAgentPath"/>; selectors <c>x509pop:subject:cn:CN</c>,
/// <c>x509pop:ca:SHA1-OF-THE-ANCHOR</c>, <c>x509pop:san:dns:NAME</c> per DNS SAN, <c>x509pop:serialnumber:HEX</c>.
/// The evidence is reusable (the key stays on the node), so the node may attest again and keep its ID.
/// </summary>
public sealed class X509PopNodeAttestor : INodeAttestor
{
    public const string TypeName = "x509pop";

    /// <summary>Certificates in one chain: the leaf and up to 7 intermediates.</summary>
    public const int MaxChainCertificates = 8;

    /// <summary>Bytes of one DER certificate.</summary>
    public const int MaxCertificateBytes = 16 * 1024;

    private const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";
    private const string CommonNameOid = "2.5.4.3";

    private readonly X509Certificate2Collection _cas;
    private readonly X509PopAgentPath _agentPath;

    /// <param name="cas">The trusted CAs (x509pop.ca_bundle); the attestor keeps them.</param>
    public X509PopNodeAttestor(X509Certificate2Collection cas, X509PopAgentPath agentPath)
    {
        ArgumentNullException.ThrowIfNull(cas);
        if (cas.Count == 0)
        {
            throw new ArgumentException("x509pop needs at least one trusted CA", nameof(cas));
        }
        _cas = cas;
        _agentPath = agentPath;
    }

    public string Type => TypeName;

    public bool Reattestable => true;

    /// <summary>
    /// A node attests again only under the CA it first attested under: a template of values that are unique per CA only
    /// (<c>{serialnumber}</c>, <c>{subject_cn}</c>) must not let a node of another CA of the bundle take over its agent ID.
    /// </summary>
    public string? ReattestConflict(AttestedNode node, AttestedNodeFacts facts)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(facts);
        static string? Ca(IEnumerable<Selector> selectors) =>
            selectors.FirstOrDefault(s => s.Type == TypeName && s.Value.StartsWith("ca:", StringComparison.Ordinal))?.Value;
        var before = Ca(node.Selectors);
        return before is not null && string.Equals(before, Ca(facts.Selectors), StringComparison.Ordinal) ? null
            : $"it was attested under x509pop {before ?? "another CA"}, this certificate chains to {Ca(facts.Selectors) ?? "another CA"}";
    }

    public async Task<AttestedNodeFacts> AttestAsync(NodeEvidence evidence, NodeChallenge challenge, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(evidence);
        ArgumentNullException.ThrowIfNull(challenge);
        if (evidence.Csr.IsEmpty)
        {
            throw new InvalidOperationException("x509pop needs the agent CSR in the node evidence to bind the proof to it");
        }
        var chain = ParseChain(evidence.Payload);
        try
        {
            var leaf = chain[0];
            CheckLeaf(leaf, evidence.Now);
            var anchor = VerifyChain(chain, evidence.Now);
            var agentId = _agentPath.For(evidence.TrustDomain, leaf, out var idError) ?? throw new WritException(X509PopCodes.AgentId, WritErrorKind.PermissionDenied,
                $"x509pop.agent_path_template '{_agentPath.Template}' makes no valid agent ID from this certificate ({idError}): use a template of values this certificate has");

            var nonce = RandomNumberGenerator.GetBytes(X509PopProof.NonceSize);
            var csrSha256 = SHA256.HashData(evidence.Csr.Span);
            var request = new X509PopChallenge { Nonce = ByteString.CopyFrom(nonce), CsrSha256 = ByteString.CopyFrom(csrSha256) };
            var answer = await challenge(request.ToByteArray(), ct).ConfigureAwait(false);
            X509PopAnswer parsed;
            try
            {
                parsed = X509PopAnswer.Parser.ParseFrom(answer.Span);
            }
            catch (InvalidProtocolBufferException)
            {
                throw new WritException(X509PopCodes.Malformed, WritErrorKind.InvalidArgument, "the x509pop challenge answer is not an X509PopAnswer: run a writ agent with --node-attestor x509pop");
            }
            if (!X509PopProof.Verify(leaf, X509PopProof.Message(nonce, csrSha256), parsed.Signature.ToByteArray()))
            {
                throw new WritException(X509PopCodes.BadSignature, WritErrorKind.PermissionDenied,
                    "the x509pop answer is not a signature by the node certificate's key over this attempt's nonce and agent CSR: the agent must hold the key of the certificate it sends (--x509pop-key)");
            }
            return new AttestedNodeFacts(TypeName, agentId, Selectors(leaf, anchor), [], null);
        }
        finally
        {
            foreach (var c in chain)
            {
                c.Dispose();
            }
        }
    }

    /// <summary>The selectors of an attested node (values a selector cannot hold, e.g. a CN with spaces, are left out).</summary>
    private static List<Selector> Selectors(X509Certificate2 leaf, X509Certificate2 anchor)
    {
        List<string> values = [];
        if (CommonName(leaf) is { } cn)
        {
            values.Add($"subject:cn:{cn}");
        }
        values.Add($"ca:{X509PopAgentPath.Fingerprint(anchor)}");
        if (leaf.Extensions["2.5.29.17"] is { } san)
        {
            values.AddRange(new X509SubjectAlternativeNameExtension(san.RawData, san.Critical).EnumerateDnsNames().Select(n => $"san:dns:{n}"));
        }
        values.Add($"serialnumber:{leaf.SerialNumber.ToLowerInvariant()}");
        return [.. values.Where(Selector.IsValidValue).Distinct(StringComparer.Ordinal).Select(v => new Selector(TypeName, v))];
    }

    /// <summary>The subject's common name (the first CN attribute), or null when it has none.</summary>
    public static string? CommonName(X509Certificate2 cert)
    {
        ArgumentNullException.ThrowIfNull(cert);
        foreach (var rdn in cert.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (!rdn.HasMultipleElements && rdn.GetSingleElementType().Value == CommonNameOid && rdn.GetSingleElementValue() is { Length: > 0 } cn)
            {
                return cn;
            }
        }
        return null;
    }

    private static List<X509Certificate2> ParseChain(ReadOnlyMemory<byte> payload)
    {
        X509PopEvidence parsed;
        try
        {
            parsed = X509PopEvidence.Parser.ParseFrom(payload.Span);
        }
        catch (InvalidProtocolBufferException)
        {
            throw Malformed("the x509pop evidence is not an X509PopEvidence message");
        }
        if (parsed.Chain.Count == 0)
        {
            throw Malformed("the x509pop evidence holds no certificate");
        }
        if (parsed.Chain.Count > MaxChainCertificates)
        {
            throw new WritException(X509PopCodes.ChainTooLarge, WritErrorKind.InvalidArgument,
                $"the x509pop chain has {parsed.Chain.Count} certificates, more than {MaxChainCertificates}: send the node certificate and only the intermediates up to a CA of the server's x509pop.ca_bundle");
        }
        if (parsed.Chain.FirstOrDefault(c => c.Length > MaxCertificateBytes) is { } big)
        {
            throw new WritException(X509PopCodes.ChainTooLarge, WritErrorKind.InvalidArgument,
                $"a certificate of the x509pop chain has {big.Length} bytes, more than {MaxCertificateBytes}");
        }
        List<X509Certificate2> chain = [];
        try
        {
            foreach (var der in parsed.Chain)
            {
                // DER only: a certificate is one ASN.1 SEQUENCE with nothing after it.
                AsnDecoder.ReadEncodedValue(der.Span, AsnEncodingRules.DER, out _, out _, out var consumed);
                if (consumed != der.Length)
                {
                    throw new CryptographicException("trailing bytes");
                }
                chain.Add(X509CertificateLoader.LoadCertificate(der.Span));
            }
        }
        catch (Exception e) when (e is CryptographicException or AsnContentException)
        {
            foreach (var c in chain)
            {
                c.Dispose();
            }
            throw Malformed("a certificate of the x509pop evidence is not a DER X.509 certificate");
        }
        return chain;
    }

    private static void CheckLeaf(X509Certificate2 leaf, DateTimeOffset now)
    {
        if (now.UtcDateTime < leaf.NotBefore.ToUniversalTime())
        {
            throw new WritException(X509PopCodes.NotYetValid, WritErrorKind.PermissionDenied,
                $"the node certificate is not valid before {leaf.NotBefore.ToUniversalTime():yyyy-MM-dd'T'HH:mm:ss'Z'}: check the node's and the server's clocks");
        }
        if (now.UtcDateTime > leaf.NotAfter.ToUniversalTime())
        {
            throw new WritException(X509PopCodes.Expired, WritErrorKind.PermissionDenied,
                $"the node certificate expired at {leaf.NotAfter.ToUniversalTime():yyyy-MM-dd'T'HH:mm:ss'Z'}: renew it from the machine PKI");
        }
        if (X509PopProof.UnsupportedKey(leaf) is { } why)
        {
            throw new WritException(X509PopCodes.KeyUnsupported, WritErrorKind.PermissionDenied,
                $"the node certificate cannot be used for x509pop: {why}; issue it for an ECDSA P-256/P-384 or RSA 2048+ key");
        }
        if (leaf.Extensions["2.5.29.19"] is { } bc && new X509BasicConstraintsExtension(bc, bc.Critical).CertificateAuthority)
        {
            throw LeafUsage("it is a CA certificate; a node proves itself with an end-entity certificate");
        }
        if (leaf.Extensions["2.5.29.15"] is not { } ku || !new X509KeyUsageExtension(ku, ku.Critical).KeyUsages.HasFlag(X509KeyUsageFlags.DigitalSignature))
        {
            throw LeafUsage("its key usage does not include digitalSignature");
        }
        if (leaf.Extensions["2.5.29.37"] is { } ekuExt)
        {
            if (!new X509EnhancedKeyUsageExtension(ekuExt, ekuExt.Critical).EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value == ClientAuthOid))
            {
                throw LeafUsage("its extended key usage does not include clientAuth");
            }
        }
    }

    /// <summary>Builds the chain to a configured CA at the server's time; returns the CA certificate it anchored to.</summary>
    private X509Certificate2 VerifyChain(List<X509Certificate2> certs, DateTimeOffset now)
    {
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.AddRange(_cas);
        policy.ExtraStore.AddRange(certs.Skip(1).ToArray());
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = now.UtcDateTime;
        policy.VerificationTimeIgnored = false;
        var built = chain.Build(certs[0]);
        var statuses = chain.ChainStatus.Select(s => s.Status).Aggregate(X509ChainStatusFlags.NoError, (a, b) => a | b);
        if (!built || statuses != X509ChainStatusFlags.NoError)
        {
            if ((statuses & X509ChainStatusFlags.NotTimeValid) != 0 && (statuses & ~X509ChainStatusFlags.NotTimeValid) == 0)
            {
                throw new WritException(X509PopCodes.Expired, WritErrorKind.PermissionDenied,
                    "a CA certificate of the node's chain is not valid now: renew the intermediate or the CA of the machine PKI");
            }
            throw new WritException(X509PopCodes.Untrusted, WritErrorKind.PermissionDenied,
                $"the node certificate does not verify to a CA of the server's x509pop.ca_bundle ({statuses}): issue it from a trusted CA and send its intermediates after it (--x509pop-cert)");
        }
        var anchor = chain.ChainElements[^1].Certificate;
        // CustomRootTrust anchors only in the custom store; the anchor is returned as our own copy, not the evidence's.
        return _cas.FirstOrDefault(c => c.RawData.AsSpan().SequenceEqual(anchor.RawData))
            ?? throw new WritException(X509PopCodes.Untrusted, WritErrorKind.PermissionDenied, "the node certificate's chain does not end at a CA of the server's x509pop.ca_bundle");
    }

    private static WritException LeafUsage(string why) => new(X509PopCodes.LeafUsage, WritErrorKind.PermissionDenied,
        $"the node certificate cannot be used for x509pop: {why}; issue it with keyUsage digitalSignature (and, with an extendedKeyUsage, clientAuth)");

    private static WritException Malformed(string what) => new(X509PopCodes.Malformed, WritErrorKind.InvalidArgument,
        $"{what}: run a writ agent with --node-attestor x509pop and a PEM certificate file (--x509pop-cert)");
}
