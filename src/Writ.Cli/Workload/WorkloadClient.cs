using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Writ.Protocol;
using Writ.Cli.CommandLine;
using Writ.Protocol.Errors;

namespace Writ.Cli.Workload;

/// <summary>
/// A SPIFFE Workload API client over the agent's Unix socket, as any workload would use it: the socket comes from
/// <c>--socket</c> or <c>SPIFFE_ENDPOINT_SOCKET</c> (<c>unix:///path</c>), every call carries <c>workload.spiffe.io: true</c>.
/// </summary>
public sealed class WorkloadClient : IDisposable
{
    public const string EndpointEnvVar = "SPIFFE_ENDPOINT_SOCKET";
    private readonly GrpcChannel _channel;

    public WorkloadClient(string socketPath)
    {
        SocketPath = socketPath;
        _channel = WorkloadApiChannel.ForSocket(socketPath);
        Client = new SpiffeWorkloadAPI.SpiffeWorkloadAPIClient(_channel);
    }

    public string SocketPath { get; }

    public SpiffeWorkloadAPI.SpiffeWorkloadAPIClient Client { get; }

    public static Metadata Headers => WorkloadApiChannel.Headers;

    /// <summary>`--socket PATH`, else SPIFFE_ENDPOINT_SOCKET (unix:///abs/path or unix:path), else the agent's default.</summary>
    public static WorkloadClient FromArgs(ParsedArgs args)
    {
        var text = args.Get("socket") ?? Environment.GetEnvironmentVariable(EndpointEnvVar) ?? ".writ/agent/workload.sock";
        return new WorkloadClient(ParseEndpoint(text));
    }

    public static string ParseEndpoint(string text)
    {
        if (text.StartsWith("unix://", StringComparison.Ordinal))
        {
            var path = text["unix://".Length..];
            return path.StartsWith('/') ? path : throw new UsageException($"'{text}' must be unix:///absolute/path");
        }
        if (text.StartsWith("unix:", StringComparison.Ordinal))
        {
            return Path.GetFullPath(text["unix:".Length..]);
        }
        if (text.StartsWith("tcp:", StringComparison.Ordinal))
        {
            throw new UsageException("Writ agents serve the Workload API on a Unix socket only (identity comes from the kernel): use unix:///path");
        }
        return Path.GetFullPath(text);
    }

    /// <summary>The first X.509-SVID response (the stream's initial full state).</summary>
    public async Task<X509SVIDResponse> FetchX509Async(CancellationToken ct)
    {
        try
        {
            using var call = Client.FetchX509SVID(new X509SVIDRequest(), Headers, cancellationToken: ct);
            if (!await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
            {
                throw new CommandFailedException("the agent closed the stream without sending an SVID");
            }
            return call.ResponseStream.Current;
        }
        catch (RpcException e)
        {
            throw Translate(e);
        }
    }

    /// <summary>A failed Workload API call as one command error, under the agent's code when it sent one.</summary>
    public CommandFailedException Translate(RpcException e)
    {
        var (code, detail) = WritStatus.Read(e);
        return e.StatusCode switch
        {
            // Only "no identity issued" means no entry matched; a policy denial (with its decision id) or an instance that
            // is no longer served says what to do itself.
            StatusCode.PermissionDenied when detail is "no identity issued" or "" =>
                new CommandFailedException("the agent issued no identity to this process: check that a registration entry matches its selectors ('writ entry list')",
                    code: code ?? CliErrors.AgentError),
            StatusCode.PermissionDenied => new CommandFailedException($"the agent issued no identity to this process: {detail}", code: code ?? CliErrors.AgentError),
            StatusCode.Unavailable when !File.Exists(SocketPath) => new CommandFailedException(
                $"no Workload API socket at '{SocketPath}': is 'writ agent run' running? Pass --socket or set {EndpointEnvVar}=unix:///path", code: CliErrors.AgentUnreachable),
            StatusCode.Unavailable => new CommandFailedException($"the agent is unavailable: {detail}", code: code ?? CliErrors.AgentUnreachable),
            _ => new CommandFailedException(detail.Length > 0 ? detail : $"the agent answered {e.StatusCode}", code: code ?? CliErrors.AgentError),
        };
    }

    /// <summary>Splits concatenated DER certificates (the Workload API's chain and bundle encoding).</summary>
    public static List<X509Certificate2> ParseCertificates(ReadOnlySpan<byte> der)
    {
        var certs = new List<X509Certificate2>();
        while (der.Length > 0)
        {
            var reader = new System.Formats.Asn1.AsnReader(der.ToArray(), System.Formats.Asn1.AsnEncodingRules.DER);
            var one = reader.ReadEncodedValue();
            certs.Add(X509CertificateLoader.LoadCertificate(one.Span));
            der = der[one.Length..];
        }
        return certs;
    }

    public static string Pem(IEnumerable<X509Certificate2> certs) =>
        string.Concat(certs.Select(c => PemEncoding.WriteString("CERTIFICATE", c.RawData) + "\n"));

    public void Dispose() => _channel.Dispose();
}
