namespace Writ.Agent.NodeAttestation;

/// <summary>The agent's node attestor by name (<c>node_attestor</c>, <c>--node-attestor</c>).</summary>
public static class NodeAttestorClients
{
    public static readonly IReadOnlyList<string> Names = ["join_token", TpmAttestorClient.AttestationType, X509PopAttestorClient.TypeName, K8sPsatAttestorClient.TypeName];

    /// <summary>The attestor <paramref name="options"/> name; null for <c>join_token</c> (NodeIdentity takes the token from the options).</summary>
    public static INodeAttestorClient? FromOptions(AgentOptions options) => options.NodeAttestor switch
    {
        "join_token" => null,
        TpmAttestorClient.AttestationType => new TpmAttestorClient(options.Tpm, TpmAttestorClient.EventLogFor(options.Tpm, options.TpmEventLog)),
        X509PopAttestorClient.TypeName => X509PopAttestorClient.Load(options.X509PopCertPath!, options.X509PopKeyPath!),
        K8sPsatAttestorClient.TypeName => new K8sPsatAttestorClient(
            options.K8sPsatCluster ?? throw new ArgumentException("node attestor k8s_psat needs k8s_psat.cluster (--k8s-psat-cluster)", nameof(options)), options.K8sPsatTokenPath),
        _ => throw new ArgumentException($"unknown node attestor '{options.NodeAttestor}': use {string.Join(" or ", Names)}", nameof(options)),
    };
}
