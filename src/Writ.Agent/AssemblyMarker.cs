namespace Writ.Agent;

internal static class AssemblyMarker
{
}
