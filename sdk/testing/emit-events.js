'use strict';
/**
 * Prints, as one JSON array, the events tailor.js makes from awkward input: every event type, odd
 * properties, GA4 dataLayer entries, an identified user, oversized page data. tests/unit/test_sdk_js.py
 * validates each with the collector's own schema (tailor.core.events): what the SDK sends must never be
 * refused, because refused events are dropped.
 */
const sdk = require('../tailor.js');
const { nodeEnv } = require('./node-env.js');

const env = nodeEnv({ userAgent: 'Mozilla/5.0 '.repeat(60) });
env.location = { href: 'https://shop.example/search?q=' + 'x'.repeat(3000), origin: 'https://shop.example' };
env.document = {
  title: 'A very long title '.repeat(30),
  referrer: 'https://referrer.example/' + 'r'.repeat(3000),
  readyState: 'complete',
  querySelectorAll: () => [],
};
env.window.dataLayer = [
  { event: 'view_item', ecommerce: { currency: 'EUR', value: 89.5, items: [{ item_id: 42, item_name: 'Trail Runner', item_category: 'shoes', price: 89.5, quantity: 1 }] } },
  { event: 'view_item_list', ecommerce: { item_list_name: 'Sale', items: [] } },
  { event: 'add_to_cart', ecommerce: { value: '19.90', items: [{ item_id: 'sku-1', quantity: '2' }] } },
  { event: 'search', search_term: 'q'.repeat(700) },
  { event: 'purchase', ecommerce: { transaction_id: 'T-1', value: 120, currency: 'EUR', items: [{ item_id: 'a' }, { item_id: 'b' }] } },
  { event: 'select_promotion', ecommerce: { items: [] } },
  { event: 'sign_up', method: 'email' },
  { event: 'gtm.js' },
  { ecommerce: null },
];

const tailor = sdk.createTailor(env);
tailor.init({ endpoint: 'http://127.0.0.1:9', autoRender: false, flushInterval: 600000 });
tailor.track('click', { category: 'shoes', productId: 'trail-runner', position: 3, inStock: false, empty: '', nested: { a: 1 } });
tailor.track('add_to_cart', { productId: 12345, value: '49.99', price: 'n/a', quantity: 1 });
tailor.track('search', { query: '  red boots  ' });
tailor.track('purchase', { value: 1e6, currency: 'EUR', transactionId: 'T-2' });
tailor.track('custom', { name: 'newsletter', 'bad name': 1, 'ok.name-with_chars': 'fine' });
tailor.track('some_new_event', Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`p${i}`, `v${i}`])));
tailor.track('click', { text: 'ünïcødé ✓ 🎉'.repeat(40), value: Infinity });
tailor.identify('customer-42@example.com');
tailor.track('page_view', { category: 'bags' });

tailor.ready.then(() => {
  const events = tailor.queue.list().map((entry) => entry.event);
  tailor.destroy();
  process.stdout.write(JSON.stringify(events));
});
