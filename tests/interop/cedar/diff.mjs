// Reference-engine bridge for Writ's differential Cedar tests.
// Long-lived: reads one JSON batch per stdin line, writes one JSON answer per stdout line.
//
// Batch:  { "id": any, "policies": { "<id>": "<cedar text>" }, "templates": { "<id>": "<cedar text>" },
//           "est": [ ids whose text above is Cedar's JSON policy format instead ],
//           "links": [ { "templateId", "newId", "values": { "?principal": {type,id}, ... } } ],
//           "entities": "<entities JSON text>", "schema": "<cedar schema text>" | null, "validate": bool,
//           "requests": [ { "principal": {type,id}, "action": {type,id}, "resource": {type,id}, "context": "<JSON text>",
//                           "validateRequest": bool (default false) } ] }
// (Or a parse-only batch { "parse": [texts] }, answered { "parsed": [bool] }.)
// Answer: { "id", "validation": { "passed": bool, "policies": [ids with errors], "failure": msg|null } | null,
//           "answers": [ { "decision": "allow"|"deny", "reason": [ids], "errors": [ids] } | { "failure": msg } ] }
//
// Entities and context arrive as JSON *text* and keep every number's exact digits (see `exact` below): JS numbers
// would lose 64-bit precision.
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const cedar = require('@cedar-policy/cedar-wasm/nodejs');

// Numbers in entity/context JSON must reach the engine digit for digit. The wasm module re-serialises its input
// with the global JSON.stringify, so each number is carried as a marked string and the marks are removed again
// in JSON.stringify's output. (JSON.rawJSON would do this too, but Node 20's flagged implementation corrupts
// some single-digit sources.)
const MARK = '@@writ-number@@';
const markRe = new RegExp(`"${MARK}(-?[0-9][0-9.eE+-]*)"`, 'g');
const stringify = JSON.stringify;
JSON.stringify = (...args) => {
  const s = stringify(...args);
  return typeof s === 'string' && s.includes(MARK) ? s.replace(markRe, '$1') : s;
};

function exact(text) {
  let out = '';
  let i = 0;
  let from = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      i++;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j])) j++;
      out += text.slice(from, i) + '"' + MARK + text.slice(i, j) + '"';
      from = i = j;
    } else {
      i++;
    }
  }
  return JSON.parse(out + text.slice(from));
}

const oneLine = (errors) => (errors ?? []).map((e) => e.message).join('; ').replace(/\s+/g, ' ');

function policySet(batch) {
  // Policies named in `est` are Cedar JSON policy format (EST) text, the others Cedar policy text.
  const est = new Set(batch.est ?? []);
  const read = (map) => Object.fromEntries(Object.entries(map ?? {}).map(([id, p]) => [id, est.has(id) ? exact(p) : p]));
  return {
    staticPolicies: read(batch.policies),
    templates: read(batch.templates),
    templateLinks: batch.links ?? [],
  };
}

function answer(batch) {
  if (Array.isArray(batch.parse)) {
    // Parse-only batch: does each text parse as a policy set? (Differential fuzzing of the parser.)
    return { id: batch.id ?? null, parsed: batch.parse.map((text) => cedar.checkParsePolicySet({ staticPolicies: text }).type === 'success') };
  }
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
  // Parse the policies and schema once per batch, not once per request.
  const parsed = cedar.preparsePolicySet('batch', policies);
  const schemaParsed = batch.schema != null ? cedar.preparseSchema('batch', batch.schema) : { type: 'success' };
  for (const r of batch.requests ?? []) {
    const call = {
      principal: r.principal, action: r.action, resource: r.resource,
      context: exact(r.context ?? '{}'), policies, entities, validateRequest: r.validateRequest === true,
    };
    if (batch.schema != null) call.schema = batch.schema;
    let a;
    if (parsed.type === 'success' && schemaParsed.type === 'success') {
      const stateful = { ...call, preparsedPolicySetId: 'batch', entities };
      delete stateful.policies;
      delete stateful.schema;
      if (batch.schema != null) stateful.preparsedSchemaName = 'batch';
      a = cedar.statefulIsAuthorized(stateful);
    } else {
      a = cedar.isAuthorized(call);   // reports the parse errors
    }
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
