using System.Formats.Asn1;

namespace Writ.Workload;

/// <summary>Certificate serial numbers as the agent compares them: hex, upper case, no leading zeros, no ':'.</summary>
public static class SerialNumbers
{
    /// <summary>
    /// The canonical form of <paramref name="serialHex"/>: ':' removed, leading zeros dropped, upper case ("0" for zero);
    /// so "00:ab:01", "AB01" and "ab01" are one serial.
    /// </summary>
    public static string Normalize(string serialHex) => Writ.Spiffe.X509.X509Serial.Normalize(serialHex);

    /// <summary>The canonical serial of a certificate's big-endian serial bytes (<c>X509Certificate2.SerialNumberBytes</c> reversed is little-endian; pass big-endian).</summary>
    public static string FromBigEndian(ReadOnlySpan<byte> serial) => Normalize(Convert.ToHexString(serial));

    /// <summary>
    /// Reads the revoked serials of a DER CRL (RFC 5280 §5.1) into <paramref name="into"/>; false with a reason when the
    /// DER is not a CRL. The signature is not checked here: the CRL comes from the local agent, this workload's authority.
    /// </summary>
    internal static bool TryReadCrl(ReadOnlyMemory<byte> der, ISet<string> into, out string? error)
    {
        error = null;
        try
        {
            var reader = new AsnReader(der, AsnEncodingRules.DER);
            var certList = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            var tbs = certList.ReadSequence();
            if (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Integer))
            {
                tbs.ReadInteger();                 // version
            }
            tbs.ReadSequence();                    // signature algorithm
            tbs.ReadSequence();                    // issuer
            ReadTime(tbs);                         // thisUpdate
            if (tbs.HasData && IsTime(tbs.PeekTag()))
            {
                ReadTime(tbs);                     // nextUpdate
            }
            if (tbs.HasData && tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence))
            {
                var revoked = tbs.ReadSequence();
                while (revoked.HasData)
                {
                    var entry = revoked.ReadSequence();
                    into.Add(FromBigEndian(entry.ReadIntegerBytes().Span));
                }
            }
            return true;
        }
        catch (AsnContentException)
        {
            error = "a CRL from the Workload API is not DER (RFC 5280 CertificateList): ignored";
            return false;
        }
    }

    private static bool IsTime(Asn1Tag tag) =>
        tag.HasSameClassAndValue(Asn1Tag.UtcTime) || tag.HasSameClassAndValue(Asn1Tag.GeneralizedTime);

    private static void ReadTime(AsnReader r)
    {
        if (r.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime))
        {
            r.ReadUtcTime();
        }
        else
        {
            r.ReadGeneralizedTime();
        }
    }
}
