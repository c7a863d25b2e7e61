// The reference side of bench.sh: a single-thread decision loop over @cedar-policy/cedar-wasm on the files that
// `CedarBench generate` wrote. The policy set is parsed once (preparsePolicySet + statefulIsAuthorized).
//
//   node wasm-bench.mjs DIR SIZE SECONDS WARMUP_SECONDS OUT.json [slice|full]
//
// Entities: cedar-wasm takes them as JSON on every call (it has no pre-parsed entity store), so by default each request
// carries only the entities it can reach (principal, resource, their ancestors and the entities their attributes
// reference), the way a caller of cedar-wasm would pass them. `full` passes the whole entities file on every call.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '../../tests/interop/package.json'));
const cedar = require('@cedar-policy/cedar-wasm/nodejs');

const [dir, sizeText, secondsText, warmupText, out, mode = 'slice'] = process.argv.slice(2);
if (!out || !['slice', 'full'].includes(mode)) {
  console.error('usage: node wasm-bench.mjs DIR SIZE SECONDS WARMUP_SECONDS OUT.json [slice|full]');
  process.exit(2);
}
const size = Number(sizeText);
const policyText = readFileSync(join(dir, `policies-${size}.cedar`), 'utf8');
const entities = JSON.parse(readFileSync(join(dir, `entities-${size}.json`), 'utf8'));
const requests = JSON.parse(readFileSync(join(dir, `requests-${size}.json`), 'utf8'));

const t0 = performance.now();
const parsed = cedar.preparsePolicySet(`bench-${size}`, { staticPolicies: policyText });
const parseMs = performance.now() - t0;
if (parsed.type !== 'success') {
  console.error(`cedar-wasm rejects policies-${size}.cedar: ${JSON.stringify(parsed.errors)}; regenerate the files`);
  process.exit(1);
}

const key = (uid) => `${uid.type}::${JSON.stringify(uid.id)}`;
const byUid = new Map(entities.map((e) => [key(e.uid), e]));

// Every entity a request can reach: the request's entities, their parents, and entity references inside attributes.
function slice(request) {
  const seen = new Map();
  const visitValue = (v) => {
    if (Array.isArray(v)) v.forEach(visitValue);
    else if (v && typeof v === 'object') {
      if (v.__entity) visit(v.__entity);
      else if (!v.__extn) Object.values(v).forEach(visitValue);
    }
  };
  const visit = (uid) => {
    const k = key(uid);
    if (seen.has(k) || !byUid.has(k)) return;
    const e = byUid.get(k);
    seen.set(k, e);
    e.parents.forEach(visit);
    visitValue(e.attrs);
  };
  [request.principal, request.action, request.resource].forEach(visit);
  visitValue(request.context);
  return [...seen.values()];
}

const calls = requests.map((r) => ({
  principal: r.principal,
  action: r.action,
  resource: r.resource,
  context: r.context,
  preparsedPolicySetId: `bench-${size}`,
  entities: mode === 'full' ? entities : slice(r),
}));

const decisions = calls.map((call) => {
  const answer = cedar.statefulIsAuthorized(call);
  if (answer.type !== 'success') return `failure|${answer.errors.map((e) => e.message).join('; ')}|`;
  const { decision, diagnostics } = answer.response;
  const reasons = [...diagnostics.reason].sort().join(',');
  const errored = [...new Set(diagnostics.errors.map((e) => e.policyId))].sort().join(',');
  return `${decision}|${reasons}|${errored}`;
});

// Decides the request mix round-robin for the given time; each decision timed on its own.
function loop(seconds, times) {
  const start = performance.now();
  const end = start + seconds * 1000;
  let count = 0;
  let i = 0;
  let now = start;
  while (now < end) {
    const t = performance.now();
    cedar.statefulIsAuthorized(calls[i]);
    now = performance.now();
    if (times) times.push(now - t);
    count++;
    if (++i === calls.length) i = 0;
  }
  return { count, seconds: (now - start) / 1000 };
}

loop(Number(warmupText), null);
const times = [];
const { count, seconds } = loop(Number(secondsText), times);
const sorted = Float64Array.from(times).sort();
const at = (q) => sorted[Math.floor(q * (sorted.length - 1))] * 1000; // ms -> µs

// For scale: the same calls against an empty policy set, i.e. what crossing into wasm with these entities and this
// context costs before any policy is evaluated.
cedar.preparsePolicySet('empty', { staticPolicies: '' });
calls.forEach((c) => { c.preparsedPolicySetId = 'empty'; });
const emptyTimes = [];
loop(Math.min(1, Number(warmupText)), null);
loop(Math.min(2, Number(secondsText)), emptyTimes);
const emptySorted = Float64Array.from(emptyTimes).sort();
const round = (x, d) => Math.round(x * 10 ** d) / 10 ** d;
writeFileSync(out, JSON.stringify({
  engine: mode === 'full' ? 'cedar-wasm-full' : 'cedar-wasm',
  runtime: `cedar-wasm ${cedar.getCedarVersion()} on Node ${process.version}`,
  size,
  policies: size,
  entities: entities.length,
  parseMs: round(parseMs, 2),
  decisions,
  count,
  seconds: round(seconds, 3),
  perSecond: Math.round(count / seconds),
  p50us: round(at(0.5), 2),
  p99us: round(at(0.99), 2),
  emptySetP50us: round(emptySorted[Math.floor(0.5 * (emptySorted.length - 1))] * 1000, 2),
}));
