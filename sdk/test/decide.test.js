'use strict';
// Decisions: one batched GET /v1/decide, the TTL cache, and fallback (null) on timeout or error.
const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { RecordingServer } = require('../testing/recording-server.js');
const { nodeEnv } = require('../testing/node-env.js');
const { start } = require('../testing/start.js');

let server;
const running = [];
function started(config, env) {
  const result = start(Object.assign({ endpoint: server.url, flushInterval: 60000 }, config), env);
  running.push(result.tailor);
  return result;
}
beforeEach(async () => {
  server = await new RecordingServer().start();
  server.decisions = {
    hero: { slot: 'hero', variant: 'hero-shoes', rule: 'shoe-lovers', content: { type: 'html', body: '<p>Shoes</p>' }, decisionId: 'd-1', rulesetVersion: 7 },
    recs: { slot: 'recs', variant: 'recs-default', rule: null, content: { type: 'json', data: { items: [1, 2] } }, decisionId: 'd-2', rulesetVersion: 7 },
  };
});
afterEach(async () => {
  for (const tailor of running.splice(0)) tailor.destroy();
  await server.stop();
});

test('all slots are decided in one GET /v1/decide?slot=A&slot=B&user=U&session=S', async () => {
  const { tailor } = started();
  tailor.track('page_view');
  const event = tailor.queue.list()[0].event;
  const decisions = await tailor.renderer.decide(['hero', 'recs', 'footer']);
  assert.equal(server.decides().length, 1);
  const query = server.decides()[0].query;
  assert.deepEqual(query.getAll('slot'), ['hero', 'recs', 'footer']);
  assert.equal(query.get('user'), event.anonymousId);
  assert.equal(query.get('session'), event.sessionId);
  assert.equal(decisions.get('hero').variant, 'hero-shoes');
  assert.deepEqual(decisions.get('recs').content.data, { items: [1, 2] });
  assert.equal(decisions.get('footer').variant, null, 'the server said: nothing matches, no fallback');
});

test('a known user is decided by user id', async () => {
  const { tailor } = started();
  tailor.identify('customer-7');
  await tailor.renderer.decide(['hero']);
  assert.equal(server.decides()[0].query.get('user'), 'customer-7');
});

test('decisions are reused within the TTL while no behaviour was tracked', async () => {
  const { tailor, env } = started({ cacheTtl: 30000 });
  const first = await tailor.renderer.decide(['hero', 'recs']);
  const again = await tailor.renderer.decide(['hero']);
  assert.equal(server.decides().length, 1, 'the second render needs no request');
  assert.deepEqual(again.get('hero'), first.get('hero'));

  await tailor.renderer.decide(['hero', 'banner']);
  assert.deepEqual(server.decides()[1].query.getAll('slot'), ['banner'], 'only what is not cached is asked for');

  env.clock.offset += 30001;
  await tailor.renderer.decide(['hero']);
  assert.equal(server.decides().length, 3, 'expired after the TTL');

  tailor.track('click', { category: 'shoes' });
  await tailor.renderer.decide(['hero']);
  assert.equal(server.decides().length, 4, 'new behaviour may change the decision');

  await tailor.renderer.decide(['hero'], { fresh: true });
  assert.equal(server.decides().length, 5, 'fresh skips the cache');
});

test('the cache lives in sessionStorage, for the same visitor only', async () => {
  const env = nodeEnv();
  const first = started({}, env).tailor;
  await first.renderer.decide(['hero']);
  first.destroy();
  const next = started({}, nodeEnv({ localStorage: env.local, sessionStorage: env.session })).tailor;
  await next.renderer.decide(['hero']);
  assert.equal(server.decides().length, 1, 'the next page load reuses it');
  next.identify('someone-else');
  await next.renderer.decide(['hero']);
  assert.equal(server.decides().length, 2, 'another user never sees it');
});

test('a slow decide times out and every slot keeps its fallback', async () => {
  server.respond = (request) => request.path === '/v1/decide' && { status: 200, delay: 2000, body: { decisions: [server.decisions.hero] } };
  const { tailor } = started({ decideTimeout: 100 });
  const began = Date.now();
  const decisions = await tailor.renderer.decide(['hero']);
  const took = Date.now() - began;
  assert.equal(decisions.get('hero'), null);
  assert.ok(took >= 90 && took < 1500, `gave up after ${took} ms, not when the answer came`);
  server.respond = null;
  tailor.config.decideTimeout = 10000; // the retry must not time out too on a loaded machine
  const retry = await tailor.renderer.decide(['hero']);
  assert.equal(retry.get('hero').variant, 'hero-shoes', 'a failure is not cached');
});

test('errors and unreadable answers mean fallback, never an exception', async () => {
  const { tailor } = started();
  for (const answer of [{ status: 500, body: { error: 'boom' } }, { status: 200, body: { nope: 1 } }, { status: 404, body: {} }]) {
    server.respond = () => answer;
    const decisions = await tailor.renderer.decide(['hero']);
    assert.equal(decisions.get('hero'), null, JSON.stringify(answer));
  }
  await server.stop();
  const decisions = await tailor.renderer.decide(['hero']);
  assert.equal(decisions.get('hero'), null, 'the content API is down');
  server = await new RecordingServer().start();
});

test('a 429 on decide is honoured: no decide before its Retry-After, fallbacks meanwhile', async () => {
  let limited = true;
  server.respond = (request) => request.path === '/v1/decide' && limited && { status: 429, headers: { 'Retry-After': '30' }, body: { title: 'Too many requests' } };
  const { tailor, env } = started();
  const first = await tailor.renderer.decide(['hero']);
  assert.equal(first.get('hero'), null, 'the fallback');
  limited = false;
  const during = await tailor.renderer.decide(['hero']);
  assert.equal(during.get('hero'), null);
  assert.equal(server.decides().length, 1, 'no second request within Retry-After');
  env.clock.offset += 30001;
  const after = await tailor.renderer.decide(['hero']);
  assert.equal(after.get('hero').variant, 'hero-shoes');
  assert.equal(server.decides().length, 2);
});
