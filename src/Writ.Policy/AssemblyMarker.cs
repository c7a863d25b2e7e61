namespace Writ.Policy;

internal static class AssemblyMarker
{
}
