using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Writ.IntegrationTests.Harness;

namespace Writ.IntegrationTests.RelyingParties;

/// <summary>
/// Debian's nginx (/usr/sbin/nginx) as a relying party that only reads files: mTLS on a free 127.0.0.1 port with its
/// certificate, key, client CA bundle and CRL from the directory `writ svid watch --write DIR --crl` keeps current,
/// proxying to "a small app" (a second, plain server block that echoes what the TLS front verified). Everything of its
/// own (config, pid, logs, temp paths) lives in a temp directory; it runs in the foreground (`daemon off`) so the test
/// owns its process tree.
/// </summary>
internal sealed class NginxServer : IAsyncDisposable
{
    public const string Binary = "/usr/sbin/nginx";

    private BackgroundProcess? _process;

    public NginxServer(string prefix, string credentials)
    {
        Prefix = prefix;
        Credentials = credentials;
        Port = FreePort();
        AppPort = FreePort();
        Directory.CreateDirectory(Path.Combine(prefix, "logs"));
        Directory.CreateDirectory(Path.Combine(prefix, "tmp"));
        File.WriteAllText(ConfigFile, Config(prefix, credentials, Port, AppPort));
    }

    public string Prefix { get; }
    public string Credentials { get; }
    public int Port { get; }
    public int AppPort { get; }
    public string ConfigFile => Path.Combine(Prefix, "nginx.conf");
    public string PidFile => Path.Combine(Prefix, "nginx.pid");
    public string Url => $"https://localhost:{Port.ToString(CultureInfo.InvariantCulture)}/";

    /// <summary>The `--on-change` command that reloads this nginx (gracefully: new workers with the new files, old ones finish their requests).</summary>
    public string ReloadCommand => $"test ! -f '{PidFile}' || {Binary} -p '{Prefix}' -c '{ConfigFile}' -e stderr -s reload";

    /// <summary>The config the docs show (docs/relying-parties.md), with this test's paths and ports.</summary>
    public static string Config(string prefix, string credentials, int port, int appPort) => $$"""
        daemon off;
        worker_processes 1;
        pid {{prefix}}/nginx.pid;
        error_log {{prefix}}/logs/error.log info;
        events { worker_connections 256; }
        http {
            access_log {{prefix}}/logs/access.log;
            client_body_temp_path {{prefix}}/tmp/body;
            proxy_temp_path {{prefix}}/tmp/proxy;
            fastcgi_temp_path {{prefix}}/tmp/fastcgi;
            uwsgi_temp_path {{prefix}}/tmp/uwsgi;
            scgi_temp_path {{prefix}}/tmp/scgi;

            server {
                listen 127.0.0.1:{{port}} ssl;
                server_name localhost;
                ssl_certificate         {{credentials}}/svid.pem;
                ssl_certificate_key     {{credentials}}/svid.key;
                ssl_client_certificate  {{credentials}}/bundle.pem;
                ssl_crl                 {{credentials}}/crl.pem;
                ssl_verify_client       on;
                ssl_verify_depth        2;
                location / {
                    proxy_pass http://127.0.0.1:{{appPort}};
                    proxy_set_header X-Client-Verify $ssl_client_verify;
                    proxy_set_header X-Client-Serial $ssl_client_serial;
                    proxy_set_header X-Client-Cert   $ssl_client_escaped_cert;
                }
            }

            server {
                listen 127.0.0.1:{{appPort}};
                location / {
                    return 200 "app: verify=$http_x_client_verify serial=$http_x_client_serial\n";
                }
            }
        }
        """;

    /// <summary>Starts nginx and waits (with a deadline) until its TLS port accepts connections.</summary>
    public async Task StartAsync()
    {
        var test = await Proc.RunAsync(Binary, ["-p", Prefix, "-c", ConfigFile, "-e", "stderr", "-t"]);
        Assert.True(test.ExitCode == 0, "nginx -t refused the config:\n" + test);
        _process = BackgroundProcess.Start(Binary, "-p", Prefix, "-c", ConfigFile, "-e", "stderr");
        var process = _process;
        await WorkloadTools.EventuallyAsync(async () =>
        {
            if (process.HasExited)
            {
                throw new Xunit.Sdk.XunitException($"nginx exited:\n{process.Stderr.Text}\n{ErrorLog}");
            }
            using var probe = new TcpClient();
            await probe.ConnectAsync(IPAddress.Loopback, Port);
            return File.Exists(PidFile) ? true : throw new InvalidOperationException("no pid file yet");
        }, TimeSpan.FromSeconds(30), "nginx listening");
    }

    public string ErrorLog => File.Exists(Path.Combine(Prefix, "logs", "error.log")) ? File.ReadAllText(Path.Combine(Prefix, "logs", "error.log")) : "";

    public bool HasExited => _process?.HasExited ?? true;

    /// <summary>
    /// One request with curl: the client certificate and key (or none), nginx's certificate checked against
    /// <paramref name="caFile"/> and the name localhost. Returns the HTTP status (0: no HTTP answer, e.g. a TLS failure), the
    /// body and the serial of the certificate nginx served (from curl's own view of the chain).
    /// </summary>
    public async Task<CurlResult> CurlAsync(string caFile, string? cert, string? key)
    {
        List<string> args = ["-sS", "--max-time", "10", "--resolve", $"localhost:{Port.ToString(CultureInfo.InvariantCulture)}:127.0.0.1",
            "--cacert", caFile, "-w", "\n%{http_code}\n%{certs}"];
        if (cert is not null)
        {
            args.AddRange(["--cert", cert]);
        }
        if (key is not null)
        {
            args.AddRange(["--key", key]);
        }
        args.Add(Url);
        var r = await Proc.RunAsync("curl", args);
        var parts = r.Stdout.Split('\n');
        var statusLine = Array.FindIndex(parts, p => p.Length == 3 && p.All(char.IsAsciiDigit));
        var status = statusLine >= 0 ? int.Parse(parts[statusLine], CultureInfo.InvariantCulture) : 0;
        var body = statusLine >= 0 ? string.Join('\n', parts[..statusLine]) : "";
        // %{certs}: each certificate with its fields, "Serial Number:" among them; the first is the leaf nginx served.
        var serialLine = parts.FirstOrDefault(p => p.StartsWith("Serial Number:", StringComparison.Ordinal));
        var serial = serialLine?["Serial Number:".Length..].Trim().Replace(":", "", StringComparison.Ordinal).ToUpperInvariant();
        return new CurlResult(r.ExitCode, status, body, serial, r.Stderr);
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            await _process.DisposeAsync();
        }
    }
}

internal sealed record CurlResult(int ExitCode, int Status, string Body, string? ServedSerial, string Stderr)
{
    public override string ToString() => $"curl exit {ExitCode}, HTTP {Status}, served serial {ServedSerial}\n{Body}\n{Stderr}";
}
