'use strict';
// The consent gate: with requireConsent nothing is stored or sent until the visitor agrees.
const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { RecordingServer, waitFor } = require('../testing/recording-server.js');
const { nodeEnv } = require('../testing/node-env.js');
const { start, sleep } = require('../testing/start.js');

let server;
const running = [];
function started(config, env) {
  const result = start(Object.assign({ endpoint: server.url, requireConsent: true }, config), env);
  running.push(result.tailor);
  return result;
}
beforeEach(async () => { server = await new RecordingServer().start(); });
afterEach(async () => {
  for (const tailor of running.splice(0)) tailor.destroy();
  await server.stop();
});

test('before consent nothing is written to storage and nothing is sent', async () => {
  const { tailor, env } = started({ autoPageView: true });
  tailor.track('click');
  assert.deepEqual(await tailor.renderer.decide(['hero']), new Map([['hero', null]]), 'no decision is asked for');
  env.window.dispatchEvent(new Event('pagehide'));
  await tailor.flush();
  await sleep(100);
  assert.equal(server.requests.length, 0);
  assert.equal(env.beacons.length, 0);
  assert.equal(env.local.writes, 0, 'localStorage untouched');
  assert.equal(env.session.writes, 0, 'sessionStorage untouched');
  assert.equal(tailor.consent(), 'unknown');
});

test('consent(true) keeps what was tracked while waiting, stores it and sends it', async () => {
  const { tailor, env } = started({ autoPageView: true });
  await tailor.ready;
  const click = tailor.track('click');
  assert.equal(tailor.consent(true), 'granted');
  await waitFor(() => server.keptEvents().length === 2, 2000, 'the held events');
  const kept = server.keptEvents();
  assert.deepEqual(kept.map((event) => event.type), ['page_view', 'click']);
  assert.equal(kept[1].id, click);
  assert.equal(env.local.getItem('tailor.consent'), 'granted');
  assert.equal(env.local.getItem('tailor.anonymousId'), kept[0].anonymousId, 'the id used before consent is kept');
});

test('the choice is remembered by the next page', async () => {
  const env = nodeEnv();
  started({}, env).tailor.consent(true);
  const next = started({}, nodeEnv({ localStorage: env.local })).tailor;
  next.track('page_view');
  await waitFor(() => server.keptEvents().length === 1, 2000, 'sending without asking again');
});

test('consent(false) forgets the visitor, drops the queue and tracks nothing more', async () => {
  const { tailor, env } = started({ requireConsent: false, flushInterval: 60000 });
  tailor.identify('customer-1');
  tailor.track('click');
  assert.ok(env.local.length > 1);
  assert.equal(tailor.consent(false), 'denied');
  assert.equal(tailor.track('click'), null);
  tailor.identify('customer-2');
  assert.deepEqual(Array.from(env.local.items.keys()), ['tailor.consent'], 'identify() stores nothing either');
  assert.equal(env.local.getItem('tailor.consent'), 'denied');
  await tailor.flush();
  env.window.dispatchEvent(new Event('pagehide'));
  assert.equal(server.requests.length, 0);
  assert.equal(env.beacons.length, 0);

  const next = started({ requireConsent: false }, nodeEnv({ localStorage: env.local })).tailor;
  assert.equal(next.track('click'), null, 'a refusal holds on the next page too');
});

test('a refusal before consent is asked for is remembered although nothing else is stored', () => {
  const { tailor, env } = started();
  tailor.track('click');
  tailor.consent(false);
  assert.deepEqual(Array.from(env.local.items.entries()), [['tailor.consent', 'denied']]);
});

test('consent given before init() applies at init', async () => {
  const env = nodeEnv();
  const sdk = require('../tailor.js');
  const tailor = sdk.createTailor(env);
  running.push(tailor);
  tailor.consent(true);
  tailor.init({ endpoint: server.url, requireConsent: true, autoRender: false, flushInterval: 10 });
  await waitFor(() => server.keptEvents().length === 1, 2000, 'the automatic page view');
});
