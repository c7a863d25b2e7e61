namespace Writ.Server.Sync;

/// <summary>
/// What a server announces to the others on the store (<see cref="Hosting.ServerContext.Announce"/>; the payload of the
/// store signal): changes the entry revision does not carry.
/// </summary>
public static class ChangeKinds
{
    /// <summary>A node was banned, evicted, drifted or readmitted: sync streams re-authenticate their agent.</summary>
    public const string Nodes = "nodes";

    /// <summary>Another policy version became active.</summary>
    public const string Policy = "policy";

    /// <summary>The trust bundle changed (a CA rotation on some server).</summary>
    public const string Bundle = "bundle";

    /// <summary>A server published new CRLs in the store (issue #16): the others read them and push them to their agents.</summary>
    public const string Crl = "crl";
}
