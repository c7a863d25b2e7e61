// Reference-engine bridge for Writ's differential Cedar tests.
// Long-lived: reads one JSON batch per stdin line, writes one JSON answer per stdout line.
//
// Batch:  { "id": any, "policies": { "<id>": "<cedar text>" }, "templates": { "<id>": "<cedar text>" },
//           "links": [ { "templateId", "newId", "values": { "?principal": {type,id}, ... } } ],
//           "entities": "<entities JSON text>", "schema": "<cedar schema text>" | null, "validate": bool,
//           "requests": [ { "principal": {type,id}, "action": {type,id}, "resource": {type,id}, "context": "<JSON text>" } ] }
// Answer: { "id", "validation": { "passed": bool, "policies": [ids with errors], "failure": msg|null } | null,
//           "answers": [ { "decision": "allow"|"deny", "reason": [ids], "errors": [ids] } | { "failure": msg } ] }
//
// Entities and context arrive as JSON *text* and are parsed here keeping every number's source text
// (JSON.rawJSON), because the wasm module re-serialises its input with JSON.stringify and JS numbers would
// lose 64-bit precision. Needs `node --harmony-json-parse-with-source` on Node 20 (built in from Node 22).
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const cedar = require('@cedar-policy/cedar-wasm/nodejs');

if (typeof JSON.rawJSON !== 'function') {
  process.stderr.write('diff.mjs: JSON.rawJSON is missing; run node with --harmony-json-parse-with-source (Node 20) or use Node 22+\n');
  process.exit(2);
}

const exact = (text) => JSON.parse(text, (key, value, ctx) =>
  typeof value === 'number' ? JSON.rawJSON(ctx.source) : value);

const oneLine = (errors) => (errors ?? []).map((e) => e.message).join('; ').replace(/\s+/g, ' ');

function policySet(batch) {
  return {
    staticPolicies: batch.policies ?? {},
    templates: batch.templates ?? {},
    templateLinks: batch.links ?? [],
  };
}

function answer(batch) {
  const out = { id: batch.id ?? null, validation: null, answers: [] };
  const policies = policySet(batch);
  if (batch.validate && batch.schema != null) {
    const v = cedar.validate({ schema: batch.schema, policies, validationSettings: { mode: 'strict' } });
    if (v.type === 'success') {
      const ids = [...new Set(v.validationErrors.map((e) => e.policyId))].sort();
      out.validation = { passed: v.validationErrors.length === 0, policies: ids, failure: null,
        messages: v.validationErrors.map((e) => `${e.policyId}: ${e.error.message}`) };
    } else {
      out.validation = { passed: false, policies: [], failure: oneLine(v.errors) };
    }
  }
  let entities;
  try {
    entities = exact(batch.entities ?? '[]');
  } catch (e) {
    out.answers = (batch.requests ?? []).map(() => ({ failure: `entities are not JSON: ${e.message}` }));
    return out;
  }
  for (const r of batch.requests ?? []) {
    const call = {
      principal: r.principal, action: r.action, resource: r.resource,
      context: exact(r.context ?? '{}'), policies, entities, validateRequest: false,
    };
    if (batch.schema != null) call.schema = batch.schema;
    const a = cedar.isAuthorized(call);
    if (a.type === 'success') {
      out.answers.push({
        decision: a.response.decision,
        reason: [...a.response.diagnostics.reason].sort(),
        errors: [...new Set(a.response.diagnostics.errors.map((e) => e.policyId))].sort(),
        messages: a.response.diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`),
      });
    } else {
      out.answers.push({ failure: oneLine(a.errors) });
    }
  }
  return out;
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim() === '') continue;
  let reply;
  try {
    reply = answer(JSON.parse(line));
  } catch (e) {
    reply = { id: null, fatal: String(e && e.message ? e.message : e).replace(/\s+/g, ' ') };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
