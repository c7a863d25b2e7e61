using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Writ.Spiffe.Internal;

namespace Writ.Spiffe.X509;

/// <summary>
/// The fast X.509-SVID issuance path for ECDSA CA keys: the parts of a leaf's TBSCertificate that are the same for every
/// leaf a CA signs (version, signature algorithm, issuer, subject, BasicConstraints, KeyUsage, EKU, AKI) are DER-encoded
/// once per CA; each issuance writes only serial, validity, subject key, SKI and SAN around them and makes one ECDSA
/// signature. The output is byte-for-byte what <see cref="X509SvidMinter.SignLeafWithCertificateRequest"/> produces for the
/// same serial and times.
/// </summary>
internal sealed class X509LeafTemplate
{
    private static readonly ConditionalWeakTable<X509Certificate2, X509LeafTemplate> Cache = [];

    // ecdsa-with-SHA256/384/512 (RFC 5758 §3.2): OID only, parameters absent.
    private static readonly byte[] EcdsaSha256 = [0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
    private static readonly byte[] EcdsaSha384 = [0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03];
    private static readonly byte[] EcdsaSha512 = [0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x04];

    // Extension headers: SEQUENCE { OID subjectKeyIdentifier, OCTET STRING { OCTET STRING(20) } } and the SAN OID.
    private static readonly byte[] SkiPrefix = [0x30, 0x1D, 0x06, 0x03, 0x55, 0x1D, 0x0E, 0x04, 0x16, 0x04, 0x14];
    private static readonly byte[] SanOid = [0x06, 0x03, 0x55, 0x1D, 0x11];

    private readonly byte[] _head;          // [0] EXPLICIT version v3; the serial follows
    private readonly byte[] _algorithm;     // signature AlgorithmIdentifier (TBS and outer certificate)
    private readonly byte[] _issuer;        // issuer Name = CA subject
    private readonly byte[] _subject;       // leaf subject Name (O=Writ)
    private readonly byte[] _extsBefore;    // BasicConstraints, KeyUsage, EKU (encoded Extension SEQUENCEs)
    private readonly byte[] _aki;           // AuthorityKeyIdentifier Extension SEQUENCE
    private readonly HashAlgorithmName _hash;
    private readonly int _maxSignatureLength;

    private X509LeafTemplate(X509Certificate2 caCert, ECDsa caKey)
    {
        Key = caKey;
        _hash = KeyAlgorithms.HashFor(caKey);
        _algorithm = _hash == HashAlgorithmName.SHA256 ? EcdsaSha256 : _hash == HashAlgorithmName.SHA384 ? EcdsaSha384 : EcdsaSha512;
        _maxSignatureLength = caKey.GetMaxSignatureSize(DSASignatureFormat.Rfc3279DerSequence);
        _head = [0xA0, 0x03, 0x02, 0x01, 0x02];
        _issuer = caCert.SubjectName.RawData;
        _subject = X509SvidMinter.LeafSubject.RawData;
        _extsBefore =
        [
            .. ExtensionDer(new X509BasicConstraintsExtension(false, false, 0, true)),
            .. ExtensionDer(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true)),
            .. ExtensionDer(new X509EnhancedKeyUsageExtension([X509SvidMinter.ServerAuth, X509SvidMinter.ClientAuth], false)),
        ];
        _aki = ExtensionDer(X509Authorities.AuthorityKeyIdOf(caCert));
    }

    public ECDsa Key { get; }

    /// <summary>The template for this CA certificate and key, built on first use and kept as long as the certificate lives.</summary>
    public static X509LeafTemplate For(X509Certificate2 caCert, ECDsa caKey)
    {
        if (Cache.TryGetValue(caCert, out var t) && ReferenceEquals(t.Key, caKey))
        {
            return t;
        }
        t = new X509LeafTemplate(caCert, caKey);
        Cache.AddOrUpdate(caCert, t);
        return t;
    }

    /// <summary>Signs a leaf: the DER certificate, ready for <see cref="X509CertificateLoader.LoadCertificate(byte[])"/>.</summary>
    public byte[] Sign(ReadOnlySpan<byte> serial, DateTimeOffset notBefore, DateTimeOffset notAfter, ReadOnlySpan<byte> spki,
        ReadOnlySpan<byte> keyBits, string uri, IReadOnlyList<string>? dnsNames)
    {
        var tbsLength = TbsLength(serial.Length, notBefore, notAfter, spki.Length, uri, dnsNames, out var contentLength);
        var signatureRoom = _maxSignatureLength + 1;   // BIT STRING: unused-bits byte + DER signature
        var maxCertContent = tbsLength + _algorithm.Length + 1 + LengthOfLength(signatureRoom) + signatureRoom;
        var buffer = new byte[1 + LengthOfLength(maxCertContent) + maxCertContent];
        // Write TBS at the position it has when the outer length needs the most bytes; move later if it needs fewer.
        var tbsAt = 1 + LengthOfLength(maxCertContent);
        var written = WriteTbs(buffer.AsSpan(tbsAt), contentLength, serial, notBefore, notAfter, spki, keyBits, uri, dnsNames);
        if (written != tbsLength)
        {
            throw new InvalidOperationException($"TBSCertificate encoding wrote {written} bytes where {tbsLength} were computed: this is a bug");
        }
        var tbs = buffer.AsSpan(tbsAt, tbsLength);
        Span<byte> sig = stackalloc byte[_maxSignatureLength];
        int sigLength;
        // The CA key is shared by concurrent issuances; .NET does not promise key objects are thread-safe.
        lock (Key)
        {
            sigLength = Key.SignData(tbs, sig, _hash, DSASignatureFormat.Rfc3279DerSequence);
        }
        var bitStringContent = sigLength + 1;
        var certContent = tbsLength + _algorithm.Length + 1 + LengthOfLength(bitStringContent) + bitStringContent;
        var total = 1 + LengthOfLength(certContent) + certContent;
        var shift = tbsAt - (1 + LengthOfLength(certContent));
        if (shift > 0)
        {
            buffer.AsSpan(tbsAt, tbsLength).CopyTo(buffer.AsSpan(tbsAt - shift));
        }
        var p = 0;
        buffer[p++] = 0x30;
        p += WriteLength(buffer.AsSpan(p), certContent);
        p += tbsLength;
        _algorithm.CopyTo(buffer.AsSpan(p));
        p += _algorithm.Length;
        buffer[p++] = 0x03;
        p += WriteLength(buffer.AsSpan(p), bitStringContent);
        buffer[p++] = 0x00;
        sig[..sigLength].CopyTo(buffer.AsSpan(p));
        p += sigLength;
        return p == buffer.Length ? buffer : buffer.AsSpan(0, total).ToArray();
    }

    /// <summary>The TBSCertificate alone (for tests comparing it byte for byte with the reference encoder).</summary>
    internal byte[] Tbs(ReadOnlySpan<byte> serial, DateTimeOffset notBefore, DateTimeOffset notAfter, ReadOnlySpan<byte> spki,
        ReadOnlySpan<byte> keyBits, string uri, IReadOnlyList<string>? dnsNames)
    {
        var length = TbsLength(serial.Length, notBefore, notAfter, spki.Length, uri, dnsNames, out var content);
        var buffer = new byte[length];
        WriteTbs(buffer, content, serial, notBefore, notAfter, spki, keyBits, uri, dnsNames);
        return buffer;
    }

    private int TbsLength(int serialLength, DateTimeOffset notBefore, DateTimeOffset notAfter, int spkiLength, string uri,
        IReadOnlyList<string>? dnsNames, out int contentLength)
    {
        var validity = TimeLength(notBefore) + TimeLength(notAfter);
        var extensions = _extsBefore.Length + SkiPrefix.Length + 20 + _aki.Length + SanExtensionLength(uri, dnsNames);
        var extSeq = TagLength(extensions);
        contentLength = _head.Length + TagLength(serialLength) + _algorithm.Length + _issuer.Length + TagLength(validity)
            + _subject.Length + spkiLength + TagLength(extSeq);
        return TagLength(contentLength);
    }

    private int WriteTbs(Span<byte> d, int contentLength, ReadOnlySpan<byte> serial, DateTimeOffset notBefore, DateTimeOffset notAfter,
        ReadOnlySpan<byte> spki, ReadOnlySpan<byte> keyBits, string uri, IReadOnlyList<string>? dnsNames)
    {
        var p = 0;
        d[p++] = 0x30;
        p += WriteLength(d[p..], contentLength);
        p += Put(d[p..], _head);
        d[p++] = 0x02;
        p += WriteLength(d[p..], serial.Length);
        p += Put(d[p..], serial);
        p += Put(d[p..], _algorithm);
        p += Put(d[p..], _issuer);
        d[p++] = 0x30;
        p += WriteLength(d[p..], TimeLength(notBefore) + TimeLength(notAfter));
        p += WriteTime(d[p..], notBefore);
        p += WriteTime(d[p..], notAfter);
        p += Put(d[p..], _subject);
        p += Put(d[p..], spki);
        var san = SanExtensionLength(uri, dnsNames);
        var extensions = _extsBefore.Length + SkiPrefix.Length + 20 + _aki.Length + san;
        d[p++] = 0xA3;
        p += WriteLength(d[p..], TagLength(extensions));
        d[p++] = 0x30;
        p += WriteLength(d[p..], extensions);
        p += Put(d[p..], _extsBefore);
        p += Put(d[p..], SkiPrefix);
        SHA1.HashData(keyBits, d.Slice(p, 20));   // RFC 5280 §4.2.1.2 method (1), as X509SubjectKeyIdentifierExtension does
        p += 20;
        p += Put(d[p..], _aki);
        p += WriteSan(d[p..], uri, dnsNames);
        return p;
    }

    // Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }; SAN is not critical.
    private static int SanExtensionLength(string uri, IReadOnlyList<string>? dnsNames)
    {
        var names = GeneralNamesLength(uri, dnsNames);
        return TagLength(SanOid.Length + TagLength(TagLength(names)));
    }

    private static int GeneralNamesLength(string uri, IReadOnlyList<string>? dnsNames)
    {
        var names = TagLength(uri.Length);
        if (dnsNames is not null)
        {
            foreach (var dns in dnsNames)
            {
                names += TagLength(dns.Length);
            }
        }
        return names;
    }

    private static int WriteSan(Span<byte> d, string uri, IReadOnlyList<string>? dnsNames)
    {
        var names = GeneralNamesLength(uri, dnsNames);
        var p = 0;
        d[p++] = 0x30;
        p += WriteLength(d[p..], SanOid.Length + TagLength(TagLength(names)));
        p += Put(d[p..], SanOid);
        d[p++] = 0x04;
        p += WriteLength(d[p..], TagLength(names));
        d[p++] = 0x30;
        p += WriteLength(d[p..], names);
        p += WriteIa5(d[p..], 0x86, uri);   // [6] uniformResourceIdentifier
        if (dnsNames is not null)
        {
            foreach (var dns in dnsNames)
            {
                p += WriteIa5(d[p..], 0x82, dns);   // [2] dNSName
            }
        }
        return p;
    }

    private static int WriteIa5(Span<byte> d, byte tag, string s)
    {
        d[0] = tag;
        var p = 1 + WriteLength(d[1..], s.Length);
        foreach (var c in s)
        {
            if (c > 0x7F)
            {
                throw new ArgumentException("a SAN name has non-ASCII characters: it cannot be an IA5String");
            }
            d[p++] = (byte)c;
        }
        return p;
    }

    // Time ::= UTCTime for 1950–2049, else GeneralizedTime (RFC 5280 §4.1.2.5), whole seconds, 'Z'.
    private static bool IsUtcTime(DateTimeOffset t) => t.UtcDateTime.Year is >= 1950 and < 2050;

    private static int TimeLength(DateTimeOffset t) => IsUtcTime(t) ? 15 : 17;

    private static int WriteTime(Span<byte> d, DateTimeOffset t)
    {
        var u = t.UtcDateTime;
        var p = 0;
        if (IsUtcTime(t))
        {
            d[p++] = 0x17;
            d[p++] = 13;
            p += Two(d[p..], u.Year % 100);
        }
        else
        {
            d[p++] = 0x18;
            d[p++] = 15;
            p += Two(d[p..], u.Year / 100);
            p += Two(d[p..], u.Year % 100);
        }
        p += Two(d[p..], u.Month);
        p += Two(d[p..], u.Day);
        p += Two(d[p..], u.Hour);
        p += Two(d[p..], u.Minute);
        p += Two(d[p..], u.Second);
        d[p++] = (byte)'Z';
        return p;
    }

    private static int Two(Span<byte> d, int v)
    {
        d[0] = (byte)('0' + (v / 10));
        d[1] = (byte)('0' + (v % 10));
        return 2;
    }

    private static int Put(Span<byte> d, ReadOnlySpan<byte> s)
    {
        s.CopyTo(d);
        return s.Length;
    }

    /// <summary>Length of a TLV with a one-byte tag and <paramref name="content"/> bytes of content.</summary>
    private static int TagLength(int content) => 1 + LengthOfLength(content) + content;

    private static int LengthOfLength(int n) => n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1000000 ? 4 : 5;

    private static int WriteLength(Span<byte> d, int n)
    {
        switch (LengthOfLength(n))
        {
            case 1:
                d[0] = (byte)n;
                return 1;
            case 2:
                d[0] = 0x81;
                d[1] = (byte)n;
                return 2;
            case 3:
                d[0] = 0x82;
                BinaryPrimitives.WriteUInt16BigEndian(d[1..], (ushort)n);
                return 3;
            default:
                throw new ArgumentException("a leaf certificate field is larger than 64 KiB: give fewer or shorter DNS names");
        }
    }

    private static byte[] ExtensionDer(X509Extension e)
    {
        var w = new System.Formats.Asn1.AsnWriter(System.Formats.Asn1.AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            w.WriteObjectIdentifier(e.Oid!.Value!);
            if (e.Critical)
            {
                w.WriteBoolean(true);
            }
            w.WriteOctetString(e.RawData);
        }
        return w.Encode();
    }
}
