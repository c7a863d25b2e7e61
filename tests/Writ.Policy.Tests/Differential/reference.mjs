// Adds the reference engine's answer to each case: node reference.mjs < cases.jsonl > answered.jsonl
// Needs @cedar-policy/cedar-wasm@4.12.0 (npm install it next to this script; it is not committed).
import { createRequire } from 'module';
import fs from 'fs';
const require = createRequire(import.meta.url);
const cedar = require('@cedar-policy/cedar-wasm/nodejs');
const lines = fs.readFileSync(0, 'utf8').split('\n').filter(l => l.length);
const out = [];
for (const line of lines) {
  const c = JSON.parse(line);
  const parse = cedar.checkParsePolicySet({ staticPolicies: c.policies });
  if (parse.type !== 'success') {
    c.expected = { parse: false };
  } else {
    const ans = cedar.isAuthorized({ principal: c.principal, action: c.action, resource: c.resource, context: c.context,
      policies: { staticPolicies: c.policies }, entities: c.entities });
    if (ans.type !== 'success') throw new Error('reference failed: ' + JSON.stringify(ans.errors));
    const r = ans.response;
    c.expected = { parse: true, decision: r.decision, reason: r.diagnostics.reason.sort(), errors: r.diagnostics.errors.map(e => e.policyId).sort() };
  }
  out.push(JSON.stringify(c));
}
process.stdout.write(out.join('\n') + '\n');
