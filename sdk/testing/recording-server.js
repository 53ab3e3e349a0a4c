'use strict';
/**
 * A real HTTP server on 127.0.0.1 for the SDK's tests. It records every request and answers like the
 * content API's contract (docs/architecture.md §9) unless a test sets `respond` to answer otherwise (a 503 outage,
 * a 400 with per-index errors, a slow decide...). It deduplicates events by id, as the workers do,
 * so tests can count what the server would keep as well as what crossed the wire.
 */
const http = require('node:http');

class RecordingServer {
  constructor() {
    this.requests = [];      // {method, path, query, headers, body, json, at, status, answer}
    this.respond = null;     // (request) => {status, headers, body} | undefined for the default answer
    this.decisions = {};     // slot -> decision returned by the default /v1/decide answer
    this.server = null;
    this.port = 0;
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  async start(port) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port || 0, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
    return this;
  }

  async stop() {
    if (!this.server) return;
    const server = this.server;
    this.server = null;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  handle(req, res) {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url, 'http://127.0.0.1');
      const body = Buffer.concat(chunks).toString('utf8');
      let json = null;
      try { json = body ? JSON.parse(body) : null; } catch (_) { json = null; }
      const request = {
        method: req.method, path: url.pathname, query: url.searchParams, headers: req.headers, body, json, at: Date.now(),
      };
      this.requests.push(request);
      const answer = (this.respond && this.respond(request)) || this.defaultAnswer(request);
      request.status = answer.status;
      request.answer = answer.body;
      if (answer.delay) {
        setTimeout(() => this.write(res, answer), answer.delay);
      } else {
        this.write(res, answer);
      }
    });
  }

  write(res, answer) {
    if (res.destroyed) return;
    const headers = Object.assign({ 'Content-Type': 'application/json' }, answer.headers || {});
    res.writeHead(answer.status, headers);
    res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
  }

  defaultAnswer(request) {
    if (request.method === 'POST' && request.path === '/v1/events') {
      const events = request.json && Array.isArray(request.json.events) ? request.json.events : [];
      return { status: 202, body: { accepted: events.length, rejected: [] } };
    }
    if (request.method === 'GET' && request.path === '/v1/decide') {
      const decisions = request.query.getAll('slot').map((slot) => this.decisions[slot] || {
        slot, variant: null, rule: null, content: null, decisionId: null, rulesetVersion: 1,
      });
      return { status: 200, body: { decisions } };
    }
    if (request.method === 'POST' && request.path === '/v1/feedback') return { status: 202, body: {} };
    return { status: 404, body: { error: 'not found' } };
  }

  /** Every event posted to /v1/events, in arrival order, duplicates kept, whatever the answer. */
  eventsOnWire() {
    return this.requests
      .filter((r) => r.path === '/v1/events' && r.json && Array.isArray(r.json.events))
      .flatMap((r) => r.json.events);
  }

  /** What the server kept: events of 202-answered posts, deduplicated by id, in first-arrival order. */
  keptEvents() {
    const seen = new Map();
    for (const request of this.posts()) {
      if (request.status !== 202 || !request.json) continue;
      const refused = (request.answer && request.answer.rejected) || [];
      const rejected = new Set(refused.map((item) => item.index));
      request.json.events.forEach((event, index) => {
        if (!rejected.has(index) && !seen.has(event.id)) seen.set(event.id, event);
      });
    }
    return Array.from(seen.values());
  }

  posts() { return this.requests.filter((r) => r.path === '/v1/events'); }

  decides() { return this.requests.filter((r) => r.path === '/v1/decide'); }
}

/** Resolves once `predicate()` is true; fails after `timeout` ms with `message`. */
async function waitFor(predicate, timeout, message) {
  const deadline = Date.now() + (timeout || 3000);
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${message || 'a condition'}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

module.exports = { RecordingServer, waitFor };
