// Holds N FetchX509SVID streams open in one process (one workload instance, many streams: the chaos test's way to get
// hundreds of streaming workloads cheaply) and prints one JSON line per event:
//   {"pid":N}                                                   at start
//   {"s":I,"at":MS,"serial":HEX,"nb":MS,"na":MS}                per message on stream I (the first SVID's leaf)
//   {"s":I,"at":MS,"end":true,"code":..,"name":..,"details":..} when stream I ends (it should not)
// Exits when its stdin closes. Built only from @grpc/grpc-js, @grpc/proto-loader and Node's crypto, with the spec's proto.
// Usage: node chaos-streams.mjs SOCKET N
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = dirname(fileURLToPath(import.meta.url));
const protoPath = join(here, '..', '..', 'src', 'Writ.Protocol', 'Protos', 'workload.proto');
const definition = protoLoader.loadSync(protoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const { SpiffeWorkloadAPI } = grpc.loadPackageDefinition(definition);

const [socket, count] = process.argv.slice(2);
const n = Number.parseInt(count ?? '', 10);
if (!socket || !(n > 0)) {
  console.error('usage: node chaos-streams.mjs SOCKET N');
  process.exit(2);
}
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ pid: process.pid });

/** The first certificate of concatenated DER (the leaf of an X509SVID chain). */
function firstDer(buf) {
  let len = buf[1];
  let hdr = 2;
  if (len & 0x80) {
    const k = len & 0x7f;
    len = 0;
    for (let j = 0; j < k; j++) len = (len * 256) + buf[2 + j];
    hdr = 2 + k;
  }
  return buf.subarray(0, hdr + len);
}

// One channel per stream would be one connection each; streams share a connection per 100 (HTTP/2 stream limits).
const clients = [];
for (let i = 0; i < n; i++) {
  if (i % 100 === 0) {
    clients.push(new SpiffeWorkloadAPI(`unix://${socket}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  }
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  const call = clients[clients.length - 1].FetchX509SVID({}, md);
  call.on('data', (msg) => {
    const svid = msg.svids[0];
    if (!svid) {
      out({ s: i, at: Date.now(), serial: null });
      return;
    }
    const cert = new X509Certificate(firstDer(svid.x509_svid));
    out({ s: i, at: Date.now(), serial: cert.serialNumber, nb: Date.parse(cert.validFrom), na: Date.parse(cert.validTo) });
  });
  let failed = false;
  call.on('error', (e) => {
    failed = true;
    out({ s: i, at: Date.now(), end: true, code: e.code, name: grpc.status[e.code], details: e.details ?? e.message });
  });
  call.on('end', () => failed || out({ s: i, at: Date.now(), end: true, code: 0, name: 'OK', details: 'stream ended' }));
}
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
