using System.Buffers.Binary;
using System.Formats.Asn1;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Writ.Protocol.Tpm;
using Writ.Server.NodeAttestation.Tpm;
using Writ.Spiffe.X509;
using Writ.Tests.Shared;

namespace Writ.Server.Tests.NodeAttestation.Tpm;

/// <summary>
/// The agent side of tpm attestation for the server's tests, on a real swtpm driven by tpm2-tools (the agent's own C#
/// client is another lane's; the integrator wires it end to end): an RSA EK (TCG default template, the one swtpm's EK
/// certificate at 0x01C00002 certifies), an ECC P-256 AK made under it with tpm2_createak, and the agent key, an
/// unrestricted ECDSA P-256 signing key generated in the TPM. It answers a <see cref="TpmChallenge"/> as the real agent
/// must: ActivateCredential, Quote, Certify (raw TPM2_Certify, since tpm2_certify 5.4 takes no qualifying data), Sign.
/// Each tool opens the TPM and closes it again; transient objects are flushed after every step.
/// </summary>
internal sealed partial class TpmTestAgent : IAsyncDisposable
{
    private readonly string _dir;
    private readonly ECDsa _sessionKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    private TpmTestAgent(Swtpm tpm, string dir)
    {
        Tpm = tpm;
        _dir = dir;
        Csr = Writ.Spiffe.X509.Csr.Create(_sessionKey);
    }

    public Swtpm Tpm { get; }

    /// <summary>The EK certificate from NV (trimmed to its DER length); empty for a TPM without one.</summary>
    public byte[] EkCertificate { get; private set; } = [];

    public byte[] EkPublic { get; private set; } = [];

    public byte[] AkPublic { get; private set; } = [];

    public byte[] AgentKeyPublic { get; private set; } = [];

    /// <summary>The CSR of this agent's in-memory session key (what the agent key vouches for).</summary>
    public byte[] Csr { get; }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<TpmTestAgent> StartAsync(SwtpmCa? ca)
    {
        var tpm = await Swtpm.StartAsync(ca, Ct);
        var agent = new TpmTestAgent(tpm, Directory.CreateTempSubdirectory("writ-tpm-agent-").FullName);
        try
        {
            await agent.ProvisionAsync();
            return agent;
        }
        catch
        {
            await agent.DisposeAsync();
            throw;
        }
    }

    private string F(string name) => Path.Combine(_dir, name);

    private async Task ToolAsync(string tool, params string[] args)
    {
        try
        {
            await Tpm.Tpm2Async(tool, args, Ct, _dir);
        }
        finally
        {
            await Tpm.Tpm2Async("tpm2_flushcontext", ["-t"], Ct, _dir);
        }
    }

    private async Task ProvisionAsync()
    {
        await ToolAsync("tpm2_createek", "-c", F("ek.ctx"), "-G", "rsa", "-u", F("ek.pub"));
        EkPublic = StripSize(await File.ReadAllBytesAsync(F("ek.pub"), Ct));
        var nv = await Tpm.Tpm2Async("tpm2_nvreadpublic", [], Ct, _dir);
        if (nv.Contains("0x1c00002", StringComparison.Ordinal))
        {
            await Tpm.Tpm2Async("tpm2_nvread", ["0x01c00002", "-o", F("ekcert.der")], Ct, _dir);
            var raw = await File.ReadAllBytesAsync(F("ekcert.der"), Ct);
            // The NV index may be larger than the certificate: keep exactly the DER SEQUENCE.
            AsnDecoder.ReadEncodedValue(raw, AsnEncodingRules.DER, out _, out _, out var length);
            EkCertificate = raw[..length];
        }
        await ToolAsync("tpm2_createak", "-C", F("ek.ctx"), "-c", F("ak.ctx"), "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", F("ak.pub"), "-n", F("ak.name"));
        await Tpm.Tpm2Async("tpm2_flushcontext", ["-s"], Ct, _dir);
        AkPublic = StripSize(await File.ReadAllBytesAsync(F("ak.pub"), Ct));
        await ToolAsync("tpm2_createprimary", "-C", "o", "-G", "ecc256:ecdsa-sha256", "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "-c", F("agent.ctx"));
        await ToolAsync("tpm2_readpublic", "-c", F("agent.ctx"), "-o", F("agent.pub"), "-f", "tss");
        AgentKeyPublic = StripSize(await File.ReadAllBytesAsync(F("agent.pub"), Ct));
    }

    /// <summary>This agent's evidence, optionally with parts replaced (an attacker mixing TPMs).</summary>
    public TpmEvidence Evidence(byte[]? ekCertificate = null, byte[]? ekPublic = null, byte[]? akPublic = null, byte[]? agentKeyPublic = null) => new()
    {
        EkCertificate = ByteString.CopyFrom(ekCertificate ?? EkCertificate),
        EkPublic = ByteString.CopyFrom(ekPublic ?? EkPublic),
        AkPublic = ByteString.CopyFrom(akPublic ?? AkPublic),
        AgentKeyPublic = ByteString.CopyFrom(agentKeyPublic ?? AgentKeyPublic),
    };

    /// <summary>The evidence and an honest answerer, for the conformance suite.</summary>
    public AgentEvidence ForConformance() =>
        new(Evidence().ToByteArray(), c => AnswerAsync(TpmChallenge.Parser.ParseFrom(c.Span)).GetAwaiter().GetResult().ToByteArray(), Csr);

    /// <summary>
    /// Answers a challenge as the agent does. An activation the TPM refuses (the credential was made for another TPM's
    /// EK, or over another AK) is answered with 32 zero bytes, as an attacker without the secret must guess.
    /// </summary>
    public async Task<TpmAnswer> AnswerAsync(TpmChallenge challenge, byte[]? csr = null)
    {
        var nonce = challenge.Nonce.ToByteArray();
        return new TpmAnswer
        {
            ActivatedSecret = ByteString.CopyFrom(await ActivateAsync(challenge)),
            Quote = await QuoteAsync(nonce, challenge.Pcrs),
            CertifyInfo = ByteString.Empty,
        }.With(await CertifyAsync(nonce)).With(await SignCsrAsync(nonce, csr ?? Csr));
    }

    public async Task<byte[]> ActivateAsync(TpmChallenge challenge)
    {
        var w = new List<byte>();
        w.AddRange([0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1]);
        AddSized(w, challenge.CredentialBlob.Span);
        AddSized(w, challenge.EncryptedSecret.Span);
        await File.WriteAllBytesAsync(F("cred.in"), [.. w], Ct);
        File.Delete(F("secret.out"));
        try
        {
            await Tpm.Tpm2Async("tpm2_startauthsession", ["--policy-session", "-S", F("session.ctx")], Ct, _dir);
            await Tpm.Tpm2Async("tpm2_policysecret", ["-S", F("session.ctx"), "-c", "e"], Ct, _dir);
            await Tpm.Tpm2Async("tpm2_activatecredential", ["-c", F("ak.ctx"), "-C", F("ek.ctx"), "-i", F("cred.in"), "-o", F("secret.out"), "-P", $"session:{F("session.ctx")}"], Ct, _dir);
            return await File.ReadAllBytesAsync(F("secret.out"), Ct);
        }
        catch (InvalidOperationException)
        {
            return new byte[32];
        }
        finally
        {
            await Tpm.Tpm2Async("tpm2_flushcontext", ["-t"], Ct, _dir);
            await Tpm.Tpm2Async("tpm2_flushcontext", ["-s"], Ct, _dir);
        }
    }

    /// <summary>TPM2_Quote by the AK over <paramref name="nonce"/> and <paramref name="pcrs"/>, with the values it quoted.</summary>
    public async Task<TpmQuote> QuoteAsync(byte[] nonce, PcrSelection pcrs)
    {
        var stdout = "";
        try
        {
            stdout = await Tpm.Tpm2Async("tpm2_quote", ["-c", F("ak.ctx"), "-l", $"{pcrs.Bank}:{string.Join(',', pcrs.Indices)}", "-q", Convert.ToHexStringLower(nonce),
                "-m", F("quote.msg"), "-s", F("quote.sig"), "-o", F("quote.pcrs"), "-g", "sha256"], Ct, _dir);
        }
        finally
        {
            await Tpm.Tpm2Async("tpm2_flushcontext", ["-t"], Ct, _dir);
        }
        var quote = new TpmQuote
        {
            Attest = ByteString.CopyFrom(await File.ReadAllBytesAsync(F("quote.msg"), Ct)),
            Signature = ByteString.CopyFrom(await File.ReadAllBytesAsync(F("quote.sig"), Ct)),
        };
        foreach (Match m in PcrLine().Matches(stdout[stdout.IndexOf("pcrs:", StringComparison.Ordinal)..]))
            quote.PcrValues.Add(new PcrValue { Bank = pcrs.Bank, Index = uint.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), Digest = ByteString.CopyFrom(Convert.FromHexString(m.Groups[2].Value)) });
        return quote;
    }

    /// <summary>The answer to a re-quote (<see cref="TpmRecheck"/> payload).</summary>
    public async Task<byte[]> RecheckAnswerAsync(ReadOnlyMemory<byte> payload)
    {
        var recheck = TpmRecheck.Parser.ParseFrom(payload.Span);
        return new TpmRecheckAnswer { Quote = await QuoteAsync(recheck.Nonce.ToByteArray(), recheck.Pcrs) }.ToByteArray();
    }

    /// <summary>TPM2_Certify of the agent key by the AK over the nonce (raw commands: the tools have no qualifying data).</summary>
    public async Task<(byte[] Attest, byte[] Signature)> CertifyAsync(byte[] nonce)
    {
        using var tpm = await RawTpm.ConnectAsync(Tpm.Port);
        var agent = await tpm.ContextLoadAsync(await File.ReadAllBytesAsync(F("agent.ctx"), Ct));
        var ak = await tpm.ContextLoadAsync(await File.ReadAllBytesAsync(F("ak.ctx"), Ct));
        try
        {
            return await tpm.CertifyAsync(agent, ak, nonce);
        }
        finally
        {
            await tpm.FlushAsync(agent);
            await tpm.FlushAsync(ak);
        }
    }

    /// <summary>TPM2_Sign by the agent key of SHA-256("writ-tpm-agent-key" || nonce || SHA-256(CSR)).</summary>
    public async Task<byte[]> SignCsrAsync(byte[] nonce, byte[] csr)
    {
        await File.WriteAllBytesAsync(F("csr.digest"), Writ.Tpm.Verification.TpmAgentKeyBinding.Digest(nonce, csr), Ct);
        await ToolAsync("tpm2_sign", "-c", F("agent.ctx"), "-g", "sha256", "-d", "-o", F("csr.sig"), F("csr.digest"));
        return await File.ReadAllBytesAsync(F("csr.sig"), Ct);
    }

    private static byte[] StripSize(byte[] tpm2b) => BinaryPrimitives.ReadUInt16BigEndian(tpm2b) == tpm2b.Length - 2
        ? tpm2b[2..]
        : throw new InvalidOperationException("not a TPM2B structure");

    private static void AddSized(List<byte> w, ReadOnlySpan<byte> data)
    {
        w.Add((byte)(data.Length >> 8));
        w.Add((byte)data.Length);
        w.AddRange(data);
    }

    [GeneratedRegex(@"^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$", RegexOptions.Multiline)]
    private static partial Regex PcrLine();

    public async ValueTask DisposeAsync()
    {
        _sessionKey.Dispose();
        await Tpm.DisposeAsync();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Just enough of the raw TPM command stream for Certify with qualifying data (swtpm's TCP server port).</summary>
    private sealed class RawTpm : IDisposable
    {
        private readonly Socket _socket;

        private RawTpm(Socket socket) => _socket = socket;

        public static async Task<RawTpm> ConnectAsync(int port)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await s.ConnectAsync(IPAddress.Loopback, port, Ct);
            return new RawTpm(s);
        }

        /// <summary>
        /// TPM2_ContextLoad of a tpm2-tools context file: magic, version, hierarchy, saved handle, sequence, then ESYS's
        /// blob (size, a reserved UINT32, the TPM's own TPM2B context blob, ESYS metadata).
        /// </summary>
        public async Task<uint> ContextLoadAsync(byte[] file)
        {
            var hierarchy = file.AsSpan(8, 4);
            var savedHandle = file.AsSpan(12, 4);
            var sequence = file.AsSpan(16, 8);
            var tpmBlob = file.AsSpan(30);
            var blob = tpmBlob[..(2 + BinaryPrimitives.ReadUInt16BigEndian(tpmBlob))];
            byte[] body = [.. sequence, .. savedHandle, .. hierarchy, .. blob];
            var r = await RunAsync(0x8001, 0x161, [], [], body);
            return BinaryPrimitives.ReadUInt32BigEndian(r);
        }

        public async Task<(byte[], byte[])> CertifyAsync(uint objectHandle, uint signHandle, byte[] nonce)
        {
            byte[] pw = [0x40, 0x00, 0x00, 0x09, 0, 0, 0, 0, 0];
            byte[] qualifying = [(byte)(nonce.Length >> 8), (byte)nonce.Length, .. nonce];
            var r = await RunAsync(0x8002, 0x148, [objectHandle, signHandle], [.. pw, .. pw], [.. qualifying, 0x00, 0x10]);
            // parameterSize, TPM2B_ATTEST, TPMT_SIGNATURE (the rest of the parameters)
            var paramSize = (int)BinaryPrimitives.ReadUInt32BigEndian(r);
            var p = r.AsSpan(4, paramSize);
            var attestSize = BinaryPrimitives.ReadUInt16BigEndian(p);
            return (p.Slice(2, attestSize).ToArray(), p[(2 + attestSize)..].ToArray());
        }

        public Task FlushAsync(uint handle) => RunAsync(0x8001, 0x165, [], [], BigEndian(handle));

        private async Task<byte[]> RunAsync(ushort tag, uint cc, uint[] handles, byte[] auth, byte[] parameters)
        {
            var body = new List<byte>();
            foreach (var h in handles)
                body.AddRange(BigEndian(h));
            if (tag == 0x8002)
            {
                body.AddRange(BigEndian((uint)auth.Length));
                body.AddRange(auth);
            }
            body.AddRange(parameters);
            var command = new byte[10 + body.Count];
            BinaryPrimitives.WriteUInt16BigEndian(command, tag);
            BinaryPrimitives.WriteUInt32BigEndian(command.AsSpan(2), (uint)command.Length);
            BinaryPrimitives.WriteUInt32BigEndian(command.AsSpan(6), cc);
            body.CopyTo(command, 10);
            await _socket.SendAsync(command, Ct);
            var header = await ReceiveAsync(10);
            var size = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2));
            var rc = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(6));
            var rest = await ReceiveAsync(size - 10);
            return rc == 0 ? rest : throw new InvalidOperationException($"TPM command 0x{cc:x} failed with 0x{rc:x}");
        }

        private async Task<byte[]> ReceiveAsync(int count)
        {
            var buffer = new byte[count];
            for (var read = 0; read < count;)
            {
                var n = await _socket.ReceiveAsync(buffer.AsMemory(read), Ct);
                if (n == 0)
                    throw new IOException("the TPM closed the connection");
                read += n;
            }
            return buffer;
        }

        private static byte[] BigEndian(uint v)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, v);
            return b;
        }

        public void Dispose() => _socket.Dispose();
    }
}

internal static class TpmAnswerExtensions
{
    public static TpmAnswer With(this TpmAnswer a, (byte[] Attest, byte[] Signature) certify)
    {
        a.CertifyInfo = ByteString.CopyFrom(certify.Attest);
        a.CertifySignature = ByteString.CopyFrom(certify.Signature);
        return a;
    }

    public static TpmAnswer With(this TpmAnswer a, byte[] csrSignature)
    {
        a.CsrSignature = ByteString.CopyFrom(csrSignature);
        return a;
    }
}
