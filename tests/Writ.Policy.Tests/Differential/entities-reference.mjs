// Adds the reference engine's verdict on entities-with-schema cases: node entities-reference.mjs < cases.jsonl
// Cases whose entities repeat a uid are left out (Writ rejects duplicates on purpose; the reference keeps one).
import { createRequire } from 'module';
import fs from 'fs';
const require = createRequire(import.meta.url);
const cedar = require('@cedar-policy/cedar-wasm/nodejs');
const lines = fs.readFileSync(0, 'utf8').split('\n').filter(l => l.length);
const out = [];
for (const line of lines) {
  const c = JSON.parse(line);
  const uids = c.entities.map(e => JSON.stringify([e.uid.type, e.uid.id]));
  if (new Set(uids).size !== uids.length) continue;
  const r = cedar.checkParseEntities({ entities: c.entities, schema: c.schema });
  c.expected = { ok: r.type === 'success' };
  out.push(JSON.stringify(c));
}
process.stdout.write(out.join('\n') + '\n');
