'use strict';
// What the tracker records: the v1 event fields, identities, sessions, properties, dataLayer.
const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const sdk = require('../tailor.js');
const { nodeEnv } = require('../testing/node-env.js');
const { start } = require('../testing/start.js');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const running = [];
function started(config, env) {
  // flushInterval of a minute: these tests look at the queue, nothing is delivered meanwhile.
  const result = start(Object.assign({ flushInterval: 60000 }, config), env);
  running.push(result.tailor);
  return result;
}
afterEach(() => { for (const tailor of running.splice(0)) tailor.destroy(); });

const queued = (tailor) => tailor.queue.list().map((entry) => entry.event);

test('every event carries the v1 fields and a fresh UUID as its id', () => {
  const { tailor, env } = started();
  const before = Date.now();
  const id = tailor.track('click', { category: 'shoes', productId: 'sku-1' });
  const [event] = queued(tailor);
  assert.equal(event.id, id);
  assert.match(event.id, UUID);
  assert.equal(event.type, 'click');
  assert.match(event.anonymousId, UUID);
  assert.match(event.sessionId, UUID);
  assert.equal(event.userId, undefined);
  const at = Date.parse(event.timestamp);
  assert.ok(at >= before - 1 && at <= Date.now() + 1, event.timestamp);
  assert.match(event.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(event.page, { url: env.location.href, referrer: null, title: null });
  assert.deepEqual(event.properties, { category: 'shoes', productId: 'sku-1' });
  assert.deepEqual(event.context, { device: 'desktop', locale: 'en-GB', userAgent: env.navigator.userAgent });

  const ids = new Set([id]);
  for (let i = 0; i < 300; i++) ids.add(tailor.track('click'));
  assert.equal(ids.size, 301, 'event ids are unique');
});

test('a UUID is made even where crypto.randomUUID is missing (insecure contexts)', () => {
  const made = new Set();
  const { webcrypto } = require('node:crypto');
  for (let i = 0; i < 200; i++) made.add(sdk.internals.uuid({ getRandomValues: (a) => webcrypto.getRandomValues(a) }));
  assert.equal(made.size, 200);
  for (const id of made) assert.match(id, UUID);
});

test('the anonymous id outlives the page; identify adds the user id; reset forgets both', () => {
  const env = nodeEnv();
  const first = started({}, env).tailor;
  first.track('click');
  const anonymousId = queued(first)[0].anonymousId;
  first.destroy();

  const second = started({}, nodeEnv({ localStorage: env.local })).tailor;
  second.track('page_view');
  const events = queued(second);
  assert.equal(events.at(-1).anonymousId, anonymousId, 'same browser, same anonymous id');
  assert.equal(second.identify('customer-42'), 'customer-42');
  second.track('click');
  const identified = queued(second).at(-1);
  assert.equal(identified.userId, 'customer-42');
  assert.equal(identified.anonymousId, anonymousId);
  assert.equal(second.identity().user, 'customer-42', 'decisions are asked for the user id');

  second.reset();
  second.track('click');
  const after = queued(second).at(-1);
  assert.equal(after.userId, undefined);
  assert.notEqual(after.anonymousId, anonymousId);
  assert.notEqual(after.sessionId, identified.sessionId);
});

test('identify refuses ids the collector would refuse', () => {
  const { tailor } = started();
  for (const bad of ['', 'with space', 'é', 'x'.repeat(129), null, undefined, 'alice\n', '{tag}', 'a/b', 'a#b', '-lead']) {
    assert.throws(() => tailor.identify(bad), TypeError, String(bad));
  }
  assert.equal(tailor.identify(12345), '12345');
});

test('a session ends after the inactivity timeout, and activity keeps it alive', () => {
  const { tailor, env } = started({ sessionTimeout: 30 * 60000 });
  const session = () => { tailor.track('click'); return queued(tailor).at(-1).sessionId; };
  const first = session();
  for (let i = 0; i < 4; i++) {
    env.clock.offset += 20 * 60000; // an event every 20 minutes, 80 minutes in all
    assert.equal(session(), first);
  }
  env.clock.offset += 31 * 60000;
  const second = session();
  assert.notEqual(second, first);
  env.clock.offset += 29 * 60000;
  assert.equal(session(), second);
});

test('properties are made to fit the schema instead of getting the event refused', () => {
  const clean = sdk.internals.cleanProperties;
  const input = {
    category: 'shoes', productId: 42, inStock: true, price: '19.90', value: 'not a number', quantity: '2',
    empty: '', blank: '   ', nested: { a: 1 }, list: [1], nothing: null, undef: undefined, nan: NaN,
    '9lives': 'x', 'has space': 'x', long: 'y'.repeat(300), query: 'q'.repeat(600),
  };
  assert.deepEqual(clean(input), {
    category: 'shoes', productId: 42, inStock: 'true', price: 19.9, quantity: 2,
    long: 'y'.repeat(256), query: 'q'.repeat(512),
  });
  const many = {};
  for (let i = 0; i < 40; i++) many[`p${i}`] = i;
  assert.equal(Object.keys(clean(many)).length, 32);
});

test('unknown event types are sent as custom with their name', () => {
  const { tailor } = started();
  tailor.track('newsletter_signup', { list: 'weekly' });
  assert.deepEqual(queued(tailor)[0].properties, { list: 'weekly', name: 'newsletter_signup' });
  assert.equal(queued(tailor)[0].type, 'custom');
});

test('dataLayer entries map to Tailor event types', () => {
  const map = sdk.internals.mapDataLayerEntry;
  const item = { item_id: 'sku-9', item_name: 'Trail runner', item_category: 'shoes', price: 89, quantity: 1 };
  assert.deepEqual(map({ event: 'view_item', ecommerce: { currency: 'EUR', value: 89, items: [item] } }), {
    type: 'page_view', properties: { productId: 'sku-9', category: 'shoes', value: 89, currency: 'EUR', quantity: 1, items: 1 },
  });
  assert.equal(map({ event: 'add_to_cart', ecommerce: { items: [item] } }).type, 'add_to_cart');
  assert.deepEqual(map({ event: 'search', search_term: 'red boots' }), { type: 'search', properties: { query: 'red boots' } });
  assert.deepEqual(map({ event: 'purchase', ecommerce: { transaction_id: 'T-1', value: 120.5, items: [item, item] } }).properties,
    { productId: 'sku-9', category: 'shoes', value: 120.5, transactionId: 'T-1', quantity: 1, items: 2 });
  assert.deepEqual(map({ event: 'view_item_list', ecommerce: { item_list_name: 'boots', items: [] } }),
    { type: 'page_view', properties: { category: 'boots' } });
  assert.equal(map({ event: 'select_promotion' }).type, 'click');
  assert.deepEqual(map({ event: 'sign_up', method: 'email' }), { type: 'custom', properties: { name: 'sign_up' } });
  // gtag('event', ...) pushes its arguments object.
  const args = (function () { return arguments; })('event', 'add_to_cart', { items: [item] });
  assert.equal(map(args).type, 'add_to_cart');
  assert.equal(map(args).properties.productId, 'sku-9');
  for (const ignored of [{ event: 'gtm.js' }, { event: 'gtm.click' }, { ecommerce: null }, ['config', 'G-1'], null, 'text']) {
    assert.equal(map(ignored), null, JSON.stringify(ignored));
  }
});

test('the dataLayer is replayed and every later push tracked, with GTM wrappers kept', () => {
  const env = nodeEnv();
  const gtmSaw = [];
  const layer = [{ event: 'gtm.js' }, { event: 'view_item', ecommerce: { items: [{ item_id: 'early' }] } }];
  const gtmPush = layer.push;
  layer.push = function (...entries) { gtmSaw.push(...entries); return gtmPush.apply(this, entries); }; // GTM first
  env.window.dataLayer = layer;
  const { tailor } = started({}, env);
  assert.deepEqual(queued(tailor).map((e) => [e.type, e.properties.productId]), [['page_view', 'early']]);

  const length = env.window.dataLayer.push({ event: 'add_to_cart', ecommerce: { items: [{ item_id: 'later' }] } });
  assert.equal(length, 3, 'push still returns the new length');
  assert.equal(gtmSaw.length, 1, 'the wrapper that was there before still runs');
  assert.deepEqual(queued(tailor).map((e) => [e.type, e.properties.productId]), [['page_view', 'early'], ['add_to_cart', 'later']]);

  tailor.destroy();
  env.window.dataLayer.push({ event: 'add_to_cart' });
  assert.equal(tailor.queue.size(), 2, 'a destroyed instance tracks nothing');
});

test('a missing dataLayer is created, so pushes before GTM loads are not lost', () => {
  const env = nodeEnv();
  const { tailor } = started({}, env);
  assert.ok(Array.isArray(env.window.dataLayer));
  env.window.dataLayer.push({ event: 'search', search_term: 'socks' });
  assert.equal(queued(tailor)[0].properties.query, 'socks');
});
