'use strict';
// The durable queue: bounded, oldest dropped first and counted, safe when storage is full or broken.
const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const sdk = require('../tailor.js');
const { MemoryStorage } = require('../testing/memory-storage.js');
const { nodeEnv } = require('../testing/node-env.js');
const { start } = require('../testing/start.js');

const running = [];
function started(config, env) {
  const result = start(Object.assign({ flushInterval: 60000 }, config), env);
  running.push(result.tailor);
  return result;
}
afterEach(() => { for (const tailor of running.splice(0)) tailor.destroy(); });

test('the queue keeps the newest maxQueue events and counts the ones it dropped', () => {
  const { tailor } = started({ maxQueue: 5 });
  const drops = [];
  tailor.on('dropped', (detail) => drops.push(detail.count));
  const tracked = [];
  for (let i = 0; i < 8; i++) tracked.push(tailor.track('click', { n: i }));
  assert.deepEqual(tailor.queue.list().map((entry) => entry.id), tracked.slice(3));
  assert.equal(tailor.status().queued, 5);
  assert.equal(tailor.status().dropped, 3);
  assert.deepEqual(drops, [1, 1, 1]);
});

test('each event has its own key, so two tabs sharing localStorage never overwrite each other', () => {
  const env = nodeEnv();
  const tabA = started({}, env).tailor;
  const tabB = started({}, nodeEnv({ localStorage: env.local })).tailor;
  const tracked = [];
  for (let i = 0; i < 10; i++) tracked.push((i % 2 ? tabA : tabB).track('click'));
  const keys = Array.from(env.local.items.keys()).filter((key) => key.startsWith(sdk.internals.QUEUE_PREFIX));
  assert.equal(keys.length, 10);
  assert.deepEqual(tabA.queue.list().map((entry) => entry.id).sort(), [...tracked].sort());
});

test('when storage is full the oldest events give way and every loss is counted', () => {
  const local = new MemoryStorage({ quota: 12000 });
  local.setItem('someone-else', 'x'.repeat(3000)); // the site's own data shares the quota
  const { tailor } = started({ maxQueue: 1000 }, nodeEnv({ localStorage: local }));
  const tracked = [];
  for (let i = 0; i < 60; i++) tracked.push(tailor.track('click', { n: i }));
  const kept = tailor.queue.list().map((entry) => entry.id);
  assert.ok(kept.length > 0 && kept.length < 60, `kept ${kept.length}`);
  assert.deepEqual(kept, tracked.slice(60 - kept.length), 'the newest are kept');
  assert.equal(tailor.status().dropped, 60 - kept.length, 'kept + dropped = tracked');
  assert.equal(local.getItem('someone-else').length, 3000, "the site's data is untouched");
});

test('unreadable queue entries are removed instead of blocking delivery', () => {
  const env = nodeEnv();
  env.local.setItem(`${sdk.internals.QUEUE_PREFIX}broken`, '{not json');
  env.local.setItem(`${sdk.internals.QUEUE_PREFIX}empty`, '{}');
  const { tailor } = started({}, env);
  const id = tailor.track('click');
  assert.deepEqual(tailor.queue.list().map((entry) => entry.id), [id]);
  assert.equal(env.local.getItem(`${sdk.internals.QUEUE_PREFIX}broken`), null);
});

test('without any usable storage the SDK still tracks, in memory', () => {
  const env = nodeEnv();
  env.localStorage = () => { throw new Error('SecurityError: storage is disabled'); };
  env.sessionStorage = () => null;
  const { tailor } = started({}, env);
  const id = tailor.track('click');
  assert.equal(tailor.store.durable, false);
  assert.deepEqual(tailor.queue.list().map((entry) => entry.id), [id]);
});

test('batches respect both the event count and the byte budget of keepalive requests', () => {
  const entries = Array.from({ length: 10 }, (_, i) => ({ id: String(i), event: { id: String(i), pad: 'x'.repeat(1000) } }));
  const byCount = sdk.internals.batches(entries, 4, 1e9);
  assert.deepEqual(byCount.map((batch) => batch.length), [4, 4, 2]);
  const byBytes = sdk.internals.batches(entries, 100, 3500);
  assert.ok(byBytes.every((batch) => JSON.stringify({ events: batch.map((e) => e.event) }).length <= 3500));
  assert.equal(byBytes.flat().length, 10);
  const oversized = sdk.internals.batches([{ id: 'big', event: { pad: 'x'.repeat(5000) } }], 100, 3500);
  assert.deepEqual(oversized.map((batch) => batch.length), [1], 'a single oversized event still goes, alone');
});
