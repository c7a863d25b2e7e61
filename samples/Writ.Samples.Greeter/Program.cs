// Greeter: calls Quotes over mTLS with its own X.509-SVID and accepts the server only if it proves Quotes' SPIFFE ID (the
// host name is never what is trusted). Prints Quotes' answer and exits 0; prints the refusal and exits 1.
//
//   SPIFFE_ENDPOINT_SOCKET=unix:///run/writ/agent.sock ./Writ.Samples.Greeter https://127.0.0.1:8443 [spiffe://td/sample/quotes]
using Writ.Spiffe;
using Writ.Workload;
using Writ.Workload.Http;

if (args.Length is < 1 or > 2 || !Uri.TryCreate(args[0], UriKind.Absolute, out var quotesUrl))
{
    Console.Error.WriteLine("usage: Writ.Samples.Greeter https://HOST:PORT [QUOTES_SPIFFE_ID]");
    return 2;
}

X509Source source;
try
{
    source = await X509Source.CreateAsync();
}
catch (WorkloadApiException e)
{
    Console.Error.WriteLine($"greeter has no identity: {e.Message}");
    return 1;
}
await using var _ = source;
var self = source.GetX509Svid().Id;
var quotes = args.Length == 2 ? SpiffeId.Parse(args[1]) : SpiffeId.Parse(self.TrustDomain.IdString + "/sample/quotes");

using var http = new HttpClient(SpiffeMtls.CreateHandler(source, source, Authorize.Id(quotes))) { BaseAddress = quotesUrl };
try
{
    using var response = await http.GetAsync(new Uri("/quote", UriKind.Relative));
    var body = (await response.Content.ReadAsStringAsync()).TrimEnd('\n');
    if (!response.IsSuccessStatusCode)
    {
        Console.Error.WriteLine($"{self}: quotes refused the call: {(int)response.StatusCode} {body}");
        return 1;
    }
    Console.WriteLine(body);
    return 0;
}
catch (HttpRequestException e)
{
    Console.Error.WriteLine($"{self}: could not call {quotes} at {quotesUrl}: {e.Message}");
    return 1;
}
