namespace Writ.Spiffe.X509;

/// <summary>
/// Certificate serial numbers as Writ compares them everywhere (agent revocation set, issued-credential index, the SDK's
/// revocation sources): hex, upper case, no leading zeros, no ':'.
/// </summary>
public static class X509Serial
{
    /// <summary>
    /// The canonical form of <paramref name="serialHex"/>: ':' and surrounding spaces removed, leading zeros dropped, upper
    /// case ("0" for zero); so "00:ab:01", "AB01" and "ab01" are one serial.
    /// </summary>
    public static string Normalize(string serialHex)
    {
        ArgumentNullException.ThrowIfNull(serialHex);
        var hex = serialHex.Replace(":", "", StringComparison.Ordinal).Trim().TrimStart('0');
        return hex.Length == 0 ? "0" : hex.ToUpperInvariant();
    }
}
