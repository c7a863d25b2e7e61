// Records the reference engine's EST for a sample of corpus policies (input: JSONL of {file, text, est} from Writ's formatter).
import { createRequire } from 'module';
import fs from 'fs';
const require = createRequire(import.meta.url);
const cedar = require('@cedar-policy/cedar-wasm/nodejs');
const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(l => l.length);
const byFile = new Map();
for (const line of lines) { const c = JSON.parse(line); if (!byFile.has(c.file)) byFile.set(c.file, []); byFile.get(c.file).push(c); }
const files = [...byFile.keys()].filter(f => /^[0-9a-f]{40}\.cedar$/.test(f)).sort().filter((_, i) => i % 16 === 0);
const out = [];
for (const f of files) {
  const list = byFile.get(f);
  list.forEach((c, i) => {
    if (/\d{16,}/.test(c.est)) return;
    const ref = cedar.policyToJson(c.text);
    out.push(JSON.stringify({ file: f, index: i, est: ref.json }));
  });
}
process.stdout.write(out.join('\n') + '\n');
