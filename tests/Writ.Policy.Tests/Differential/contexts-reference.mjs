// Adds the reference engine's verdict on context-with-schema cases: node contexts-reference.mjs < cases.jsonl
import { createRequire } from 'module';
import fs from 'fs';
const require = createRequire(import.meta.url);
const cedar = require('@cedar-policy/cedar-wasm/nodejs');
const lines = fs.readFileSync(0, 'utf8').split('\n').filter(l => l.length);
process.stdout.write(lines.map(l => {
  const c = JSON.parse(l);
  const r = cedar.checkParseContext({ context: c.context, schema: c.schema, action: c.action });
  c.expected = { ok: r.type === 'success' };
  return JSON.stringify(c);
}).join('\n') + '\n');
