namespace Writ.Server;

internal static class AssemblyMarker
{
}
