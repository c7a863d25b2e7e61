// A SPIFFE Workload API client built only from software nobody on the Writ project wrote: @grpc/grpc-js and
// @grpc/proto-loader with the spec's Workload API proto (src/Writ.Protocol/Protos/workload.proto), jose for JWT-SVIDs and Node's
// crypto for certificates. The integration tests run it against a real `writ agent run`.
//
// Usage: node workload-client.mjs COMMAND SOCKET [ARGS]
//   all SOCKET AUDIENCE OUTDIR  every Workload API call; writes svid.pem, svid.key, bundle.pem (from FetchX509Bundles)
//                               and svid-bundle.pem (from the X509SVIDResponse) to OUTDIR; prints a JSON summary.
//   x509 SOCKET                 the first FetchX509SVID message: {"ok":true,"svids":[ids]} or the gRPC error.
//   noheader SOCKET             every Workload API call without the workload.spiffe.io header: their errors.
// Exit 0 when the command succeeded, 1 on a gRPC error (printed as {"ok":false,"code":..,"name":..,"details":..}).
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { createLocalJWKSet, jwtVerify } from 'jose';

const here = dirname(fileURLToPath(import.meta.url));
// The spec proto as copied into the project (src/Writ.Protocol), or a copy beside this file when run from elsewhere.
const besideMe = join(here, 'workloadapi.proto');
const protoPath = existsSync(besideMe) ? besideMe : join(here, '..', '..', 'src', 'Writ.Protocol', 'Protos', 'workload.proto');
const definition = protoLoader.loadSync(protoPath, {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const { SpiffeWorkloadAPI } = grpc.loadPackageDefinition(definition);

const [command, socket, ...rest] = process.argv.slice(2);
if (!command || !socket) {
  console.error('usage: node workload-client.mjs all|x509|noheader SOCKET [ARGS]');
  process.exit(2);
}
const client = new SpiffeWorkloadAPI(`unix://${socket}`, grpc.credentials.createInsecure());
const header = () => {
  const m = new grpc.Metadata();
  m.set('workload.spiffe.io', 'true');
  return m;
};
const deadline = () => ({ deadline: Date.now() + 20000 });

/** The first message of a server stream (the Workload API sends the full state at once). */
function first(method, request, metadata) {
  return new Promise((resolve, reject) => {
    const call = metadata ? client[method](request, metadata, deadline()) : client[method](request, deadline());
    call.once('data', (msg) => { resolve(msg); call.cancel(); });
    call.once('error', (e) => { if (e.code !== grpc.status.CANCELLED) reject(e); });
    call.once('end', () => reject(new Error(`${method}: stream ended without a message`)));
  });
}

function unary(method, request, metadata) {
  return new Promise((resolve, reject) => {
    const cb = (e, r) => (e ? reject(e) : resolve(r));
    if (metadata) client[method](request, metadata, deadline(), cb); else client[method](request, deadline(), cb);
  });
}

/** Splits concatenated DER certificates (the Workload API's chain and bundle encoding). */
function splitDer(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    if (buf[i] !== 0x30) throw new Error(`not a DER SEQUENCE at offset ${i}`);
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

const pem = (ders) => ders.map((d) => new X509Certificate(d).toString()).join('');
const errorJson = (e) => ({ ok: false, code: e.code, name: grpc.status[e.code], details: e.details ?? e.message });

async function all(audience, outDir) {
  mkdirSync(outDir, { recursive: true });
  const x509 = await first('FetchX509SVID', {}, header());
  const svid = x509.svids[0];
  const chain = splitDer(svid.x509_svid);
  const leaf = new X509Certificate(chain[0]);
  const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
  if (!leaf.checkPrivateKey(key)) throw new Error('the X.509-SVID key does not belong to its certificate');
  writeFileSync(join(outDir, 'svid.pem'), pem(chain));
  writeFileSync(join(outDir, 'svid.key'), key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  writeFileSync(join(outDir, 'svid-bundle.pem'), pem(splitDer(svid.bundle)));

  const bundles = await first('FetchX509Bundles', {}, header());
  const tds = Object.keys(bundles.bundles);
  writeFileSync(join(outDir, 'bundle.pem'), pem(splitDer(bundles.bundles[tds[0]])));

  const jwtBundles = await first('FetchJWTBundles', {}, header());
  const jwks = JSON.parse(Buffer.from(jwtBundles.bundles[Object.keys(jwtBundles.bundles)[0]]).toString('utf8'));

  const jwt = await unary('FetchJWTSVID', { audience: [audience], spiffe_id: svid.spiffe_id }, header());
  const token = jwt.svids[0].svid;
  const validated = await unary('ValidateJWTSVID', { audience, svid: token }, header());
  let wrongAudience;
  try {
    await unary('ValidateJWTSVID', { audience: `${audience}/other`, svid: token }, header());
    wrongAudience = 'accepted';
  } catch (e) {
    wrongAudience = grpc.status[e.code];
  }
  // A relying party with jose: the JWT authorities of the bundle (SPIFFE marks them use=jwt-svid, which a generic
  // JOSE library does not know, so the SPIFFE-specific `use` is dropped; nothing else changes).
  const keys = createLocalJWKSet({ keys: jwks.keys.filter((k) => k.use === undefined || k.use === 'jwt-svid').map(({ use, ...k }) => k) });
  const { payload, protectedHeader } = await jwtVerify(token, keys, { audience });
  let joseWrongAudience;
  try {
    await jwtVerify(token, keys, { audience: `${audience}/other` });
    joseWrongAudience = 'accepted';
  } catch (e) {
    joseWrongAudience = e.code;
  }
  return {
    ok: true,
    x509_svids: x509.svids.map((s) => s.spiffe_id),
    x509_leaf_uri: leaf.subjectAltName,
    x509_chain_length: chain.length,
    x509_bundle_trust_domains: tds,
    jwt_bundle_trust_domains: Object.keys(jwtBundles.bundles),
    jwks_key_count: jwks.keys.length,
    jwt_svid_spiffe_id: jwt.svids[0].spiffe_id,
    validate_spiffe_id: validated.spiffe_id,
    validate_claims_sub: validated.claims?.fields?.sub?.stringValue ?? validated.claims?.fields?.sub?.kind?.stringValue
      ?? JSON.stringify(validated.claims?.fields?.sub),
    validate_wrong_audience: wrongAudience,
    jose_sub: payload.sub,
    jose_aud: payload.aud,
    jose_alg: protectedHeader.alg,
    jose_kid: protectedHeader.kid,
    jose_wrong_audience: joseWrongAudience,
  };
}

async function noHeader() {
  const out = {};
  const calls = {
    x509: () => first('FetchX509SVID', {}),
    x509_bundles: () => first('FetchX509Bundles', {}),
    jwt: () => unary('FetchJWTSVID', { audience: ['a'] }),
    jwt_bundles: () => first('FetchJWTBundles', {}),
    validate: () => unary('ValidateJWTSVID', { audience: 'a', svid: 'x.y.z' }),
  };
  for (const [name, call] of Object.entries(calls)) {
    try {
      await call();
      out[name] = 'answered';
    } catch (e) {
      out[name] = errorJson(e);
    }
  }
  return out;
}

try {
  let result;
  if (command === 'all') result = await all(rest[0], rest[1]);
  else if (command === 'x509') result = { ok: true, svids: (await first('FetchX509SVID', {}, header())).svids.map((s) => s.spiffe_id) };
  else if (command === 'noheader') result = await noHeader();
  else throw new Error(`unknown command ${command}`);
  console.log(JSON.stringify(result));
  client.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify(e.code !== undefined ? errorJson(e) : { ok: false, error: String(e.stack ?? e) }));
  client.close();
  process.exit(1);
}
