namespace Writ.Spiffe;

internal static class AssemblyMarker
{
}
