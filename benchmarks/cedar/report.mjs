// Reads the result-ENGINE-SIZE-RUN.json files bench.sh left in DIR, checks that every engine gave the reference's
// decisions on every request, and prints one table: engine x set size, medians over the runs.
//
//   node report.mjs DIR
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node report.mjs DIR');
  process.exit(2);
}
const results = readdirSync(dir)
  .filter((f) => /^result-.+-\d+-\d+\.json$/.test(f))
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
if (results.length === 0) {
  console.error(`no result-*.json files in ${dir}; run bench.sh`);
  process.exit(1);
}

const reference = 'cedar-wasm';
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sizes = [...new Set(results.map((r) => r.size))].sort((a, b) => a - b);
const order = ['writ', 'writ-json-per-call', 'cedar-wasm', 'cedar-wasm-full'];
const rank = (e) => (order.includes(e) ? order.indexOf(e) : order.length);
const engines = [...new Set(results.map((r) => r.engine))].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

let mismatches = 0;
for (const size of sizes) {
  const ref = results.find((r) => r.engine === reference && r.size === size);
  if (!ref) {
    console.error(`no ${reference} result for ${size} policies: decisions cannot be checked`);
    mismatches++;
    continue;
  }
  for (const r of results.filter((x) => x.size === size && x !== ref)) {
    r.decisions.forEach((d, i) => {
      if (d !== ref.decisions[i]) {
        if (mismatches < 20) console.error(`MISMATCH ${size} policies, request #${i}: ${r.engine} ${d}, ${reference} ${ref.decisions[i]}`);
        mismatches++;
      }
    });
    if (r.decisions.length !== ref.decisions.length) mismatches++;
  }
  const allow = ref.decisions.filter((d) => d.startsWith('allow')).length;
  const errored = ref.decisions.filter((d) => !d.endsWith('|')).length;
  console.log(`${size} policies, ${ref.entities} entities: ${ref.decisions.length} requests in the mix (${allow} allow, ${ref.decisions.length - allow} deny, ${errored} with erroring policies)`);
}
console.log(mismatches === 0 ? 'decisions: identical across engines (decision, reasons, erroring policies) on every request' : `decisions: ${mismatches} MISMATCHES`);

const rows = [];
for (const size of sizes) {
  const refRate = median(results.filter((r) => r.engine === reference && r.size === size).map((r) => r.perSecond));
  for (const engine of engines) {
    const rs = results.filter((r) => r.engine === engine && r.size === size);
    if (rs.length === 0) continue;
    const rate = median(rs.map((r) => r.perSecond));
    rows.push([engine, String(size), String(rs.length), Math.round(rate).toLocaleString('en-US'),
      median(rs.map((r) => r.p50us)).toFixed(2), median(rs.map((r) => r.p99us)).toFixed(2),
      median(rs.map((r) => r.parseMs)).toFixed(1), refRate ? `${(rate / refRate).toFixed(2)}x` : '-']);
  }
}
const header = ['engine', 'policies', 'runs', 'decisions/s', 'p50 µs', 'p99 µs', 'set parse ms (cold)', 'vs cedar-wasm'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
console.log();
console.log(line(header));
console.log(`|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
rows.forEach((r) => console.log(line(r)));
console.log();
console.log([...new Set(results.map((r) => r.runtime))].join('; '));
for (const size of sizes) {
  const rs = results.filter((r) => r.engine === reference && r.size === size && r.emptySetP50us !== undefined);
  if (rs.length) console.log(`${reference}, ${size}-policy inputs against an EMPTY policy set (JS<->wasm crossing only): p50 ${median(rs.map((r) => r.emptySetP50us)).toFixed(2)} µs`);
}
process.exit(mismatches === 0 ? 0 : 1);
