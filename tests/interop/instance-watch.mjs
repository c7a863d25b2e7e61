// Keeps one FetchX509SVID stream open and prints one JSON line per event, for the agent's instance tests:
//   {"pid":N}                                   at start (the process the agent sees as the workload)
//   {"ok":true,"ids":[...],"serials":[...]}      per stream message (serials: hex of each leaf)
//   {"ok":false,"code":..,"name":..,"details":..} when the stream ends with an error (then exit 1)
// Built only from @grpc/grpc-js, @grpc/proto-loader and Node's crypto, with the spec's Workload API proto.
// Usage: node instance-watch.mjs SOCKET
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = dirname(fileURLToPath(import.meta.url));
const protoPath = join(here, '..', '..', 'src', 'Writ.Protocol', 'Protos', 'workload.proto');
const definition = protoLoader.loadSync(protoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const { SpiffeWorkloadAPI } = grpc.loadPackageDefinition(definition);

const [socket] = process.argv.slice(2);
if (!socket) {
  console.error('usage: node instance-watch.mjs SOCKET');
  process.exit(2);
}
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ pid: process.pid });

/** The first certificate of concatenated DER (the leaf of an X509SVID chain). */
function firstDer(buf) {
  let len = buf[1];
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let k = 0; k < n; k++) len = (len * 256) + buf[2 + k];
    hdr = 2 + n;
  }
  return buf.subarray(0, hdr + len);
}

const client = new SpiffeWorkloadAPI(`unix://${socket}`, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
md.set('workload.spiffe.io', 'true');
const call = client.FetchX509SVID({}, md);
call.on('data', (msg) => {
  out({
    ok: true,
    ids: msg.svids.map((s) => s.spiffe_id),
    serials: msg.svids.map((s) => new X509Certificate(firstDer(s.x509_svid)).serialNumber),
  });
});
call.on('error', (e) => {
  out({ ok: false, code: e.code, name: grpc.status[e.code], details: e.details ?? e.message });
  process.exit(1);
});
call.on('end', () => process.exit(0));
