'use strict';
// Delivery against a real HTTP server: batching, acknowledgement, rejection, retry, outage, beacons.
const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { RecordingServer, waitFor } = require('../testing/recording-server.js');
const { nodeEnv } = require('../testing/node-env.js');
const { start, sleep } = require('../testing/start.js');

let server;
const running = [];
function started(config, env) {
  const result = start(Object.assign({ endpoint: server.url }, config), env);
  running.push(result.tailor);
  return result;
}
beforeEach(async () => { server = await new RecordingServer().start(); });
afterEach(async () => {
  for (const tailor of running.splice(0)) tailor.destroy();
  await server.stop();
});

const ids = (events) => events.map((event) => event.id);

test('events are batched into POST /v1/events {"events": [...]} and leave the queue on 202', async () => {
  const { tailor } = started({ batchSize: 3, flushInterval: 50 });
  const tracked = [];
  for (let i = 0; i < 7; i++) tracked.push(tailor.track('click', { productId: `p${i}` }));
  await waitFor(() => server.keptEvents().length === 7, 3000, 'seven events');
  await waitFor(() => tailor.queue.size() === 0, 1000, 'an empty queue');
  const posts = server.posts();
  assert.ok(posts.every((post) => post.json.events.length <= 3), posts.map((p) => p.json.events.length).join());
  assert.ok(posts.every((post) => post.headers['content-type'] === 'application/json'));
  assert.deepEqual(Object.keys(posts[0].json), ['events']);
  assert.deepEqual(ids(server.eventsOnWire()), tracked, 'sent once each, oldest first');
  assert.equal(tailor.status().sent, 7);
});

test('an event waits up to flushInterval to be batched; a page view goes at once', async () => {
  const { tailor } = started({ flushInterval: 5000 });
  tailor.track('click');
  await sleep(150);
  assert.equal(server.posts().length, 0, 'the click waits for company');
  tailor.track('page_view');
  await waitFor(() => server.keptEvents().length === 2, 2500, 'the page view to take the click along');
});

test('events the server rejects in a 202 are dropped, not retried, and reported', async () => {
  server.respond = (request) => request.path === '/v1/events' && {
    status: 202,
    body: { accepted: request.json.events.length - 1, rejected: [{ index: 1, errors: [{ field: 'properties.value', message: 'must be a finite number' }] }] },
  };
  const { tailor } = started({ flushInterval: 10 });
  const reported = [];
  tailor.on('rejected', (detail) => reported.push(detail));
  const tracked = [tailor.track('click'), tailor.track('click'), tailor.track('click')];
  await waitFor(() => tailor.queue.size() === 0, 2000, 'the batch to be settled');
  server.respond = null;
  tailor.track('click');
  await waitFor(() => server.posts().length === 2 && tailor.queue.size() === 0, 2000, 'a second post');
  assert.equal(reported.length, 1);
  assert.equal(reported[0].event.id, tracked[1]);
  assert.equal(reported[0].errors[0].field, 'properties.value');
  assert.ok(!ids(server.posts()[1].json.events).includes(tracked[1]), 'the rejected event is not sent again');
  assert.equal(tailor.status().rejected, 1);
  assert.equal(tailor.status().sent, 3);
});

test('events accepted but too old to count leave the queue, are reported, and are never resent', async () => {
  server.respond = (request) => request.path === '/v1/events' && {
    status: 202,
    body: {
      accepted: request.json.events.length,
      rejected: [],
      notCounted: [{ index: 0, id: request.json.events[0].id, reason: 'late', message: 'stamped 2d before it was received' }],
    },
  };
  const { tailor } = started({ flushInterval: 10 });
  const reported = [];
  tailor.on('notCounted', (detail) => reported.push(detail));
  const tracked = [tailor.track('click'), tailor.track('click')];
  await waitFor(() => tailor.queue.size() === 0, 2000, 'the batch to be settled');
  server.respond = null;
  tailor.track('click');
  await waitFor(() => server.posts().length === 2 && tailor.queue.size() === 0, 2000, 'a second post');
  assert.deepEqual(reported.map((item) => [item.event.id, item.reason]), [[tracked[0], 'late']]);
  assert.ok(!ids(server.posts()[1].json.events).includes(tracked[0]), 'the uncounted event is not sent again');
  assert.equal(tailor.status().notCounted, 1);
  assert.equal(tailor.status().sent, 3, 'accepted all the same');
});

test('a 400 drops the batch: resending what the server refused would fail forever', async () => {
  server.respond = (request) => request.path === '/v1/events' && {
    status: 400,
    body: { accepted: 0, rejected: request.json.events.map((_, index) => ({ index, errors: [{ field: 'type', message: 'bad' }] })) },
  };
  const { tailor } = started();
  tailor.track('click');
  tailor.track('click');
  await waitFor(() => tailor.queue.size() === 0, 2000, 'the refused events to be dropped');
  await sleep(150);
  assert.equal(server.posts().length, 1);
  assert.equal(tailor.status().rejected, 2);
});

for (const status of [503, 429]) test(`a ${status} keeps the events and the retry honours Retry-After`, async () => {
  let outage = true;
  server.respond = (request) => request.path === '/v1/events' && outage && { status, headers: { 'Retry-After': '1' }, body: { title: 'unavailable or rate-limited' } };
  const { tailor } = started({ minBackoff: 10, maxBackoff: 50 });
  const id = tailor.track('page_view');
  await waitFor(() => server.posts().length === 1, 1000, 'the first attempt');
  const failedAt = Date.now();
  outage = false;
  await waitFor(() => server.keptEvents().length === 1, 3000, 'the retry');
  const waited = Date.now() - failedAt;
  await waitFor(() => tailor.queue.size() === 0, 1000, 'the 202 to be processed');
  assert.ok(waited >= 950, `retried after ${waited} ms, before Retry-After's second`);
  assert.equal(server.posts().length, 2, 'one retry, not a burst of them');
  assert.deepEqual(ids(server.eventsOnWire()), [id, id], 'the retry resends the same id, so the server dedups it');
});

test('Retry-After is a minimum: a long outage still backs off exponentially', async () => {
  server.respond = (request) => request.path === '/v1/events' && { status: 503, headers: { 'Retry-After': '0' }, body: {} };
  const { tailor } = started({ minBackoff: 40, maxBackoff: 10000 });
  tailor.track('page_view');
  await sleep(700);
  const attempts = server.posts().length;
  // 40 ms doubling: at most 20+40+80+160+320 ms of waits fit in 700 ms, a tight loop would make hundreds.
  assert.ok(attempts >= 3 && attempts <= 6, `${attempts} attempts in 700 ms`);
  assert.equal(tailor.queue.size(), 1);
});

test('5xx answers are retried with exponential backoff and jitter', async () => {
  let failures = 4;
  server.respond = (request) => request.path === '/v1/events' && failures-- > 0 && { status: 500, body: {} };
  const { tailor } = started({ minBackoff: 40, maxBackoff: 10000 });
  const id = tailor.track('page_view');
  await waitFor(() => server.keptEvents().length === 1, 5000, 'delivery after four failures');
  const times = server.posts().map((post) => post.at);
  assert.equal(times.length, 5);
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  // Attempt n waits between half and all of 40 ms * 2^n.
  gaps.forEach((gap, n) => assert.ok(gap >= 20 * 2 ** n - 5, `gap ${n} was ${gap} ms: ${gaps}`));
  assert.ok(gaps[3] > gaps[0], `backoff grows: ${gaps}`);
  assert.deepEqual(ids(server.keptEvents()), [id]);
  assert.equal(tailor.status().retries, 4);
});

test('while the collector is down nothing is lost, and once it is back each event arrives once', async () => {
  const port = server.port;
  await server.stop();
  const { tailor } = started({ minBackoff: 20, maxBackoff: 80, batchSize: 5 });
  const tracked = [];
  for (let i = 0; i < 12; i++) tracked.push(tailor.track(i % 3 ? 'click' : 'page_view', { productId: `p${i}` }));
  await sleep(300); // several failed attempts
  assert.equal(tailor.queue.size(), 12);
  assert.ok(tailor.status().retries >= 2, `retries: ${tailor.status().retries}`);
  server = await new RecordingServer().start(port);
  await waitFor(() => tailor.queue.size() === 0, 3000, 'the queue to drain');
  assert.deepEqual(ids(server.keptEvents()).sort(), [...tracked].sort());
  assert.equal(server.eventsOnWire().length, 12, 'and not one of them twice');
});

test('events queued by one page are sent by the next one', async () => {
  const env = nodeEnv();
  const first = started({ flushInterval: 60000 }, env).tailor;
  const tracked = [first.track('click'), first.track('add_to_cart', { productId: 'p1' })];
  first.destroy(); // the tab closed before the flush
  assert.equal(server.posts().length, 0);
  const second = started({}, nodeEnv({ localStorage: env.local })).tailor;
  await waitFor(() => second.queue.size() === 0, 2000, 'the next page to send them');
  assert.deepEqual(ids(server.keptEvents()), tracked);
});

test('a 413 halves the batch; an event too large alone is dropped', async () => {
  server.respond = (request) => {
    if (request.path !== '/v1/events') return undefined;
    if (request.json.events.length > 2) return { status: 413, body: {} };
    if (request.json.events.some((event) => event.properties.huge)) return { status: 413, body: {} };
    return undefined;
  };
  const { tailor } = started({ batchSize: 8, flushInterval: 30 });
  const tracked = [];
  for (let i = 0; i < 6; i++) tracked.push(tailor.track('click'));
  const huge = tailor.track('click', { huge: 'yes' });
  await waitFor(() => tailor.queue.size() === 0, 3000, 'the queue to drain');
  assert.deepEqual(ids(server.keptEvents()), tracked);
  assert.equal(tailor.status().rejected, 1);
  assert.ok(!ids(server.keptEvents()).includes(huge));
});

test('offline, nothing is attempted; the online event sends everything at once', async () => {
  const env = nodeEnv();
  env.navigator.onLine = false;
  const { tailor } = started({ minBackoff: 5000, maxBackoff: 5000 }, env);
  const tracked = [tailor.track('page_view'), tailor.track('click'), tailor.track('click')];
  await sleep(200);
  assert.equal(server.requests.length, 0);
  env.navigator.onLine = true;
  const back = Date.now();
  env.window.dispatchEvent(new Event('online'));
  await waitFor(() => tailor.queue.size() === 0, 1000, 'delivery after coming online');
  assert.ok(Date.now() - back < 900, 'without waiting for the backoff timer');
  assert.deepEqual(ids(server.keptEvents()), tracked);
  assert.equal(server.eventsOnWire().length, 3);
});

test('back online after the device slept ten minutes offline, everything goes at once', async () => {
  const env = nodeEnv();
  env.navigator.onLine = false;
  const { tailor } = started({ minBackoff: 5000, maxBackoff: 5000 }, env);
  const tracked = [tailor.track('click'), tailor.track('click')];
  await sleep(100); // the offline safety-net timer is set, 5 s ahead
  env.clock.offset += 600000; // asleep: the clock ran on ten minutes, the timer did not fire
  env.navigator.onLine = true;
  const back = Date.now();
  env.window.dispatchEvent(new Event('online'));
  await waitFor(() => tailor.queue.size() === 0, 1000, 'delivery after waking up online');
  assert.ok(Date.now() - back < 900, 'without waiting for the held-back timer');
  assert.deepEqual(ids(server.keptEvents()), tracked);
});

test('pagehide hands the queue to sendBeacon and keeps it until a 202 covers it', async () => {
  const env = nodeEnv();
  const { tailor } = started({ flushInterval: 60000, batchSize: 2 }, env);
  const tracked = [tailor.track('click'), tailor.track('click'), tailor.track('click')];
  env.window.dispatchEvent(new Event('pagehide'));
  assert.equal(env.beacons.length, 2, 'two beacons of at most two events');
  assert.equal(env.beacons[0].url, `${server.url}/v1/events`);
  assert.equal(env.beacons[0].blob.type, 'text/plain;charset=utf-8', 'cross-origin beacons must not need a preflight');
  const sent = [];
  for (const beacon of env.beacons) sent.push(...JSON.parse(await beacon.blob.text()).events);
  assert.deepEqual(ids(sent), tracked);
  assert.equal(tailor.queue.size(), 3, 'a beacon has no answer: the events stay queued');
});

test('a refused beacon (over the browser quota) leaves the events for the next page', () => {
  const env = nodeEnv({ beaconAccepts: false });
  const { tailor } = started({ flushInterval: 60000 }, env);
  tailor.track('click');
  assert.equal(tailor.sender.beacon(), 0);
  assert.equal(tailor.queue.size(), 1);
});
