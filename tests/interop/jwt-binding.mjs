// A relying party's check of a certificate-bound JWT-SVID (RFC 8705 cnf x5t#S256) with software nobody on the Writ
// project wrote: npm `jose` verifies the token against the trust domain's JWK Set, Node's crypto computes the
// certificate's SHA-256 fingerprint, and the two are compared in constant time.
//
// Usage:
//   node jwt-binding.mjs verify BUNDLE_JSON_FILE TOKEN AUDIENCE [CERT_PEM_FILE]
//       BUNDLE_JSON_FILE: a SPIFFE bundle (`writ bundle show`) or a JWK Set. Without CERT_PEM_FILE only the token is checked.
//       Prints {"ok":true,"sub":..,"jti":..,"bound":..} and exits 0, or {"ok":false,"reason":..} and exits 1.
//   node jwt-binding.mjs validate SOCKET AUDIENCE TOKEN
//       ValidateJWTSVID on a Workload API socket (grpc-js + the spec proto): {"ok":true,"spiffe_id":..} or the gRPC error.
//   node jwt-binding.mjs fetch SOCKET AUDIENCE OUTDIR [--hold]
//       One workload instance: FetchX509SVID (writes OUTDIR/svid.pem and svid.key) then FetchJWTSVID for its first identity,
//       from the same process: {"ok":true,"spiffe_id":..,"token":..}. The agent revokes an instance's credentials when it
//       exits: with --hold the process prints its result and stays alive until its stdin closes.
import { readFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate, timingSafeEqual } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';

const [command, ...args] = process.argv.slice(2);

/** x5t#S256 of a certificate from node's own fingerprint ("AB:CD:..." hex of SHA-256 over the DER). */
function x5tS256(certPem) {
  const fingerprint = new X509Certificate(certPem).fingerprint256;
  return Buffer.from(fingerprint.replaceAll(':', ''), 'hex').toString('base64url');
}

async function verify(bundleFile, token, audience, certFile) {
  const bundle = JSON.parse(readFileSync(bundleFile, 'utf8'));
  // A SPIFFE bundle marks JWT authorities with use "jwt-svid"; a generic JOSE library accepts "sig" or none.
  const keys = bundle.keys.filter((k) => k.use === undefined || k.use === 'jwt-svid').map(({ use, ...jwk }) => jwk);
  const { payload } = await jwtVerify(token, createLocalJWKSet({ keys }), {
    audience,
    algorithms: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
    requiredClaims: ['sub', 'aud', 'exp'],
  });
  if (!String(payload.sub).startsWith('spiffe://')) return { ok: false, reason: 'sub is not a SPIFFE ID' };
  const bound = payload.cnf?.['x5t#S256'];
  const result = { ok: true, sub: payload.sub, jti: payload.jti ?? null, iat: payload.iat ?? null, bound: bound ?? null };
  if (certFile === undefined) return result;
  if (typeof bound !== 'string') return { ok: false, reason: 'bearer token: no cnf x5t#S256 to check against the certificate' };
  const expected = Buffer.from(bound, 'base64url');
  const actual = Buffer.from(x5tS256(readFileSync(certFile, 'utf8')), 'base64url');
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
    return { ok: false, reason: 'cnf x5t#S256 does not match the certificate: the token is bound to another certificate' };
  }
  return { ...result, certificate_x5t_s256: actual.toString('base64url') };
}

async function workloadClient() {
  const grpc = (await import('@grpc/grpc-js')).default;
  const protoLoader = (await import('@grpc/proto-loader')).default;
  const here = dirname(fileURLToPath(import.meta.url));
  const besideMe = join(here, 'workloadapi.proto');
  const protoPath = existsSync(besideMe) ? besideMe : join(here, '..', '..', 'src', 'Writ.Protocol', 'Protos', 'workload.proto');
  const def = protoLoader.loadSync(protoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const { SpiffeWorkloadAPI } = grpc.loadPackageDefinition(def);
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return { grpc, md, make: (socket) => new SpiffeWorkloadAPI(`unix://${socket}`, grpc.credentials.createInsecure()) };
}

async function validate(socket, audience, token) {
  const { grpc, md, make } = await workloadClient();
  const client = make(socket);
  try {
    const r = await new Promise((resolve, reject) => client.ValidateJWTSVID({ audience, svid: token }, md,
      { deadline: Date.now() + 20000 }, (e, res) => (e ? reject(e) : resolve(res))));
    return { ok: true, spiffe_id: r.spiffe_id };
  } catch (e) {
    return { ok: false, code: e.code, name: grpc.status[e.code], reason: e.details ?? e.message };
  } finally {
    client.close();
  }
}

/** Splits concatenated DER certificates (the Workload API's chain encoding). */
function splitDer(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    let len = buf[i + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = (len * 256) + buf[i + 2 + k];
      hdr = 2 + n;
    }
    out.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
}

async function fetchBoth(socket, audience, outDir) {
  const { grpc, md, make } = await workloadClient();
  const client = make(socket);
  try {
    const x509 = await new Promise((resolve, reject) => {
      const call = client.FetchX509SVID({}, md, { deadline: Date.now() + 20000 });
      call.once('data', (m) => { resolve(m); call.cancel(); });
      call.once('error', (e) => { if (e.code !== grpc.status.CANCELLED) reject(e); });
    });
    const svid = x509.svids[0];
    const { createPrivateKey } = await import('node:crypto');
    const { writeFileSync, mkdirSync } = await import('node:fs');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'svid.pem'), splitDer(svid.x509_svid).map((d) => new X509Certificate(d).toString()).join(''));
    const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
    writeFileSync(join(outDir, 'svid.key'), key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    const jwt = await new Promise((resolve, reject) => client.FetchJWTSVID({ audience: [audience], spiffe_id: svid.spiffe_id }, md,
      { deadline: Date.now() + 20000 }, (e, res) => (e ? reject(e) : resolve(res))));
    return { ok: true, spiffe_id: svid.spiffe_id, token: jwt.svids[0].svid };
  } catch (e) {
    return { ok: false, code: e.code, name: grpc.status[e.code], reason: e.details ?? e.message };
  } finally {
    client.close();
  }
}

let out;
try {
  if (command === 'verify') out = await verify(...args);
  else if (command === 'validate') out = await validate(...args);
  else if (command === 'fetch') out = await fetchBoth(...args);
  else { console.error('usage: node jwt-binding.mjs verify|validate|fetch ...'); process.exit(2); }
} catch (e) {
  out = { ok: false, reason: `${e.code ?? e.name}: ${e.message}` };
}
console.log(JSON.stringify(out));
if (out.ok && command === 'fetch' && args[3] === '--hold') {
  // Keep this workload instance (and so its credentials) alive until whoever started it closes our stdin.
  process.stdin.on('data', () => {});
  await new Promise((resolve) => { process.stdin.once('end', resolve); process.stdin.once('close', resolve); });
}
process.exit(out.ok ? 0 : 1);
