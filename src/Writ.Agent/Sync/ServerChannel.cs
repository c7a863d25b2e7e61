using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using Writ.Spiffe;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.X509;

namespace Writ.Agent.Sync;

/// <summary>
/// A gRPC channel from an agent to the Writ server. The server is authenticated by its X.509-SVID: the chain must
/// validate against the trust bundle and carry exactly the server's SPIFFE ID (<c>spiffe://&lt;td&gt;/writ/server</c>);
/// host names play no part. The agent's own SVID, when it has one, is the TLS client certificate.
/// </summary>
public static class ServerChannel
{
    public static SpiffeId ServerId(TrustDomain td) => SpiffeId.FromSegments(td, "writ", "server");

    /// <param name="address">host:port of the server's agent API.</param>
    /// <param name="bundle">returns the current trust bundle (it rotates; the channel reads it on every handshake).</param>
    /// <param name="clientCertificate">returns the agent SVID with its private key, or null before attestation.</param>
    public static GrpcChannel Create(string address, TrustDomain td, Func<TrustBundle> bundle, Func<X509Certificate2?> clientCertificate,
        TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var expected = ServerId(td);
        var handler = new SocketsHttpHandler
        {
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            KeepAlivePingDelay = TimeSpan.FromSeconds(20),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            SslOptions = new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate()!,
                RemoteCertificateValidationCallback = (_, cert, chain, _) =>
                {
                    if (cert is null)
                    {
                        return false;
                    }
                    var leaf = cert as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(cert.GetRawCertData());
                    var presented = new List<X509Certificate2> { leaf };
                    if (chain is not null)
                    {
                        presented.AddRange(chain.ChainElements.Skip(1).Select(e => e.Certificate)
                            .Where(c => !c.SubjectName.RawData.AsSpan().SequenceEqual(c.IssuerName.RawData)));
                    }
                    var result = X509SvidValidator.Validate(presented, bundle(), time.GetUtcNow());
                    return result.IsValid && result.Id == expected;
                },
            },
        };
        return GrpcChannel.ForAddress($"https://{address}", new GrpcChannelOptions
        {
            HttpHandler = new Telemetry.TraceContextHandler(handler),
            MaxReceiveMessageSize = 64 << 20,
            DisposeHttpClient = true,
        });
    }
}
