/*!
 * tailor.js — Tailor's browser SDK: a tracker that loses no actions and a renderer that shifts nothing.
 * Plain JavaScript, no dependencies, no build step. Apache-2.0.
 *
 * Tracker:  page views, clicks declared with data-tailor-* attributes and window.dataLayer pushes become
 *           v1 events (docs/architecture.md §9), each with a client-made id (the server's dedup key). Events wait in a
 *           bounded localStorage queue and leave it only when a 202 from POST /v1/events covers them.
 * Renderer: elements with data-tailor-slot get their content from one batched GET /v1/decide per page
 *           view; the markup already in the slot is the fallback on timeout or error.
 *
 * Loaded as a classic <script>, it starts itself from the tag's data-* attributes and exposes
 * window.tailor. Under CommonJS (Node's test runner, and index.mjs, the npm package's ES module) it
 * only exports its factory, so every part can be tested against a real HTTP server without a browser.
 */
(function (root, factory) {
  'use strict';
  const sdk = factory();
  if (typeof module === 'object' && module && module.exports) {
    module.exports = sdk;
  } else if (root && root.document && !root.tailor) {
    root.tailor = sdk.autoStart(root);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  const VERSION = '1.0.0';
  const PREFIX = 'tailor.';
  const QUEUE_PREFIX = PREFIX + 'q.';
  const EVENT_TYPES = ['page_view', 'click', 'add_to_cart', 'search', 'purchase', 'custom'];
  const CONTENT_TYPES = ['html', 'text', 'json', 'image'];
  const SDK_PATH = '/sdk/tailor.js';

  // Limits of the v1 event schema (tailor/core/events.py): an event that breaks them is refused with a
  // 400 and then dropped, so the tracker trims and cleans everything it sends to fit them.
  const LIMITS = {
    id: 128, url: 2048, title: 256, text: 256, query: 512, properties: 32, propertyName: 64,
    device: 64, locale: 35, userAgent: 512,
  };
  // The collector's and the API's one id grammar (tailor.core.constants.ID_PATTERN), at most 128 long.
  const ID = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/;
  const PROPERTY_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

  const DEFAULTS = {
    endpoint: '',            // base URL of the content API; '' means this page's origin
    requireConsent: false,   // store and send nothing until tailor.consent(true)
    autoPageView: true,      // track a page view when started
    autoRender: true,        // fill the page's slots when started
    trackClicks: true,       // data-tailor-track on elements and forms
    dataLayer: 'dataLayer',  // name of the GTM-style array to listen to; '' to ignore it
    batchSize: 50,           // events per POST at most
    maxBatchBytes: 60000,    // keepalive requests and beacons are limited to 64 KiB in all
    flushInterval: 1000,     // ms an event may wait to be batched with others
    maxQueue: 1000,          // events kept while the collector is unreachable; the oldest go first
    sessionTimeout: 1800000, // ms of inactivity that end a session (the workers' default, 30 min)
    requestTimeout: 10000,   // ms before an unanswered POST counts as a network error
    minBackoff: 1000,        // ms, first retry delay; doubles per failure up to maxBackoff
    maxBackoff: 60000,
    decideTimeout: 1000,     // ms to wait for decisions before the slots keep their fallback markup
    cacheTtl: 30000,         // ms a decision may be reused while the visitor's behaviour is unchanged
    live: false,             // decide only once this page's view is counted, and again after later actions
    liveDelay: 150,          // ms between the collector's 202 and that decide (the workers' freshness)
    token: '',               // a signed identity token from the shop's backend (docs/identity.md); or identify({token})
    debug: false,
  };

  // GA4 / GTM event names and the Tailor event types they stand for. Names not listed become `custom`
  // with the original name in properties.name; GTM's own lifecycle events (gtm.*) are ignored.
  const DATALAYER_TYPES = {
    page_view: 'page_view',
    view_item: 'page_view',
    view_item_list: 'page_view',
    select_item: 'click',
    select_promotion: 'click',
    add_to_cart: 'add_to_cart',
    search: 'search',
    view_search_results: 'search',
    purchase: 'purchase',
  };

  // ---------------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------------

  function uuid(crypto) {
    if (crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    // randomUUID exists only in secure contexts; getRandomValues exists everywhere.
    const bytes = new Uint8Array(16);
    if (crypto && typeof crypto.getRandomValues === 'function') {
      crypto.getRandomValues(bytes);
    } else {
      for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function truncate(text, limit) {
    if (typeof text !== 'string') return text;
    return text.length > limit ? text.slice(0, limit) : text;
  }

  function parseJson(text, fallback) {
    if (typeof text !== 'string') return fallback;
    try { return JSON.parse(text); } catch (_) { return fallback; }
  }

  /** Exponential backoff with jitter: attempt 0 waits about `min`, each further one twice as long,
   *  never more than `max`; the random half spreads clients that failed together. */
  function backoffDelay(attempt, min, max, random) {
    const ceiling = Math.min(max, min * Math.pow(2, Math.max(0, attempt)));
    return Math.round(ceiling / 2 + (ceiling / 2) * random());
  }

  /** Retry-After as milliseconds (delta-seconds or an HTTP date), or null when absent or unreadable. */
  function parseRetryAfter(value, now) {
    if (value === null || value === undefined || value === '') return null;
    const text = String(value).trim();
    if (/^\d+$/.test(text)) return Number(text) * 1000;
    if (!/^[A-Za-z]{3}, /.test(text)) return null; // an IMF-fixdate: "Wed, 21 Oct 2015 07:28:00 GMT"
    const at = Date.parse(text);
    return Number.isNaN(at) ? null : Math.max(0, at - now);
  }

  /** One property value as the schema takes it: text of 1..256 characters or a finite number. */
  function propertyValue(name, value) {
    if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
    if (typeof value === 'boolean') return String(value);
    if (typeof value === 'bigint') return String(value);
    if (typeof value !== 'string') return undefined; // objects, arrays, null: nothing the schema counts
    const text = value.trim();
    if (!text) return undefined;
    if (name === 'value' || name === 'price' || name === 'quantity') {
      const number = Number(text);
      if (Number.isFinite(number)) return number;
      return name === 'value' ? undefined : truncate(text, LIMITS.text);
    }
    return truncate(text, name === 'query' ? LIMITS.query : LIMITS.text);
  }

  /** Properties cleaned to fit the schema: valid names, valid values, at most 32 of them. */
  function cleanProperties(input) {
    const result = {};
    if (!input || typeof input !== 'object') return result;
    let count = 0;
    for (const name of Object.keys(input)) {
      if (count >= LIMITS.properties) break;
      if (!PROPERTY_NAME.test(name)) continue;
      const value = propertyValue(name, input[name]);
      if (value === undefined) continue;
      result[name] = value;
      count++;
    }
    return result;
  }

  function deviceOf(navigator) {
    const hint = navigator && navigator.userAgentData;
    if (hint && typeof hint.mobile === 'boolean' && hint.mobile) return 'mobile';
    const agent = (navigator && navigator.userAgent) || '';
    if (/iPad|Tablet|PlayBook|Silk|Android(?!.*Mobile)/i.test(agent)) return 'tablet';
    if (/Mobi|iPhone|iPod|Android.*Mobile|Windows Phone/i.test(agent)) return 'mobile';
    return 'desktop';
  }

  /** The properties declared on an element: data-tailor-product-id="42" → {productId: "42"}. */
  const RESERVED_DATA = new Set(['track', 'slot', 'state', 'variant', 'decision', 'rule', 'queryField']);
  function dataProperties(element) {
    const result = {};
    const dataset = (element && element.dataset) || {};
    for (const key of Object.keys(dataset)) {
      if (!key.startsWith('tailor') || key.length <= 6) continue;
      const name = key.charAt(6).toLowerCase() + key.slice(7);
      if (!RESERVED_DATA.has(name)) result[name] = dataset[key];
    }
    return result;
  }

  /** A GTM/GA4 dataLayer entry as {type, properties}, or null for entries that are not events. Takes
   *  both `dataLayer.push({event: 'add_to_cart', ecommerce: {...}})` and gtag's
   *  `gtag('event', 'add_to_cart', {...})`, which pushes its arguments object. */
  function mapDataLayerEntry(entry) {
    if (!entry || typeof entry !== 'object') return null;
    let name;
    let params;
    if (typeof entry.length === 'number' && entry[0] === 'event' && typeof entry[1] === 'string') {
      name = entry[1];
      params = entry[2] || {};
    } else if (typeof entry.event === 'string') {
      name = entry.event;
      params = entry;
    } else {
      return null; // plain data (e.g. {ecommerce: null}) or a gtag 'config'/'set' command
    }
    if (!name || name.startsWith('gtm.') || name.startsWith('tailor.')) return null;
    const ecommerce = (params.ecommerce && typeof params.ecommerce === 'object') ? params.ecommerce : params;
    const items = Array.isArray(ecommerce.items) ? ecommerce.items : [];
    const first = items[0] || {};
    const properties = {
      productId: first.item_id !== undefined ? String(first.item_id) : undefined,
      category: first.item_category || ecommerce.item_list_name || ecommerce.item_list_id || undefined,
      query: params.search_term || ecommerce.search_term || undefined,
      value: ecommerce.value,
      currency: ecommerce.currency,
      transactionId: ecommerce.transaction_id,
      quantity: first.quantity,
      items: items.length || undefined,
    };
    const type = Object.prototype.hasOwnProperty.call(DATALAYER_TYPES, name) ? DATALAYER_TYPES[name] : 'custom';
    if (type === 'custom') properties.name = name;
    return { type, properties: cleanProperties(properties) };
  }

  // ---------------------------------------------------------------------------------------------
  // Storage: localStorage/sessionStorage that may be missing, disabled or full; and, until consent,
  // memory only (the consent gate: nothing is written to the browser before the visitor agrees)
  // ---------------------------------------------------------------------------------------------

  /** The storage, or null when it is missing or unusable (blocked third-party storage, a sandboxed
   *  frame, old Safari private mode with a zero quota). The test write is made only when writing is
   *  allowed: before consent, storage is only read. */
  function probe(getStorage, write) {
    try {
      const storage = getStorage();
      if (!storage) return null;
      storage.getItem(PREFIX + 'consent');
      if (write) {
        storage.setItem(PREFIX + 'probe', '1');
        storage.removeItem(PREFIX + 'probe');
      }
      return storage;
    } catch (_) {
      return null;
    }
  }

  class Store {
    constructor(storage, persistent) {
      this.storage = storage;
      this.persistent = persistent && storage !== null;
      this.memory = new Map();
    }

    get durable() { return this.persistent; }

    get(key) {
      if (!this.persistent) return this.memory.has(key) ? this.memory.get(key) : null;
      try { return this.storage.getItem(key); } catch (_) { return null; }
    }

    /** False when the browser refused the write (quota): the caller decides what to give up. */
    set(key, value) {
      if (!this.persistent) { this.memory.set(key, value); return true; }
      try { this.storage.setItem(key, value); return true; } catch (_) { return false; }
    }

    remove(key) {
      if (!this.persistent) { this.memory.delete(key); return; }
      try { this.storage.removeItem(key); } catch (_) { /* nothing to remove then */ }
    }

    keys(prefix) {
      if (!this.persistent) return Array.from(this.memory.keys()).filter((k) => k.startsWith(prefix));
      const result = [];
      try {
        for (let i = 0; i < this.storage.length; i++) {
          const key = this.storage.key(i);
          if (key !== null && key.startsWith(prefix)) result.push(key);
        }
      } catch (_) { /* unreadable storage holds nothing for us */ }
      return result;
    }

    /** Consent given: what was held in memory moves to the browser's storage (if it takes writes). */
    persist() {
      if (this.persistent || this.storage === null) return;
      if (probe(() => this.storage, true) === null) return;
      this.persistent = true;
      for (const [key, value] of this.memory) this.set(key, value);
      this.memory.clear();
    }

    /** Consent refused or withdrawn: forget everything of ours, keep only `keep`. */
    clear(keep) {
      for (const key of this.keys(PREFIX)) if (key !== keep) this.remove(key);
      this.memory.clear();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The durable queue: one storage key per event, so tabs that share localStorage never overwrite
  // each other's events (a shared array would lose one tab's write in a read-modify-write race)
  // ---------------------------------------------------------------------------------------------

  class EventQueue {
    constructor(store, maxEvents, now) {
      this.store = store;
      this.maxEvents = maxEvents;
      this.now = now;
      this.sequence = 0;
      // Counted in memory too: when storage is full, the counter's own write may be refused.
      this.droppedCount = Number(store.get(PREFIX + 'dropped')) || 0;
    }

    /** Adds an event; returns how many of the oldest events were dropped to stay within bounds. */
    push(event) {
      const record = JSON.stringify({ t: this.now(), s: this.sequence++, e: event });
      let dropped = this.size() >= this.maxEvents ? this.trim(this.maxEvents - 1) : 0;
      if (!this.store.set(QUEUE_PREFIX + event.id, record)) {
        // Storage is full (of others' data too): give up our oldest half and try once more.
        dropped += this.trim(Math.floor(this.size() / 2));
        if (!this.store.set(QUEUE_PREFIX + event.id, record)) dropped += 1;
      }
      if (dropped) this.addDropped(dropped);
      return dropped;
    }

    /** Queued events, oldest first: [{id, event}]. */
    list() {
      const entries = [];
      for (const key of this.store.keys(QUEUE_PREFIX)) {
        const record = parseJson(this.store.get(key), null);
        if (!record || !record.e || typeof record.e.id !== 'string') { this.store.remove(key); continue; }
        entries.push({ id: record.e.id, t: record.t || 0, s: record.s || 0, event: record.e });
      }
      entries.sort((a, b) => (a.t - b.t) || (a.s - b.s));
      return entries;
    }

    has(id) { return this.store.get(QUEUE_PREFIX + id) !== null; }

    remove(ids) { for (const id of ids) this.store.remove(QUEUE_PREFIX + id); }

    size() { return this.store.keys(QUEUE_PREFIX).length; }

    trim(limit) {
      const entries = this.list();
      const excess = entries.length - Math.max(0, limit);
      if (excess <= 0) return 0;
      this.remove(entries.slice(0, excess).map((entry) => entry.id));
      return excess;
    }

    dropped() { return Math.max(this.droppedCount, Number(this.store.get(PREFIX + 'dropped')) || 0); }

    addDropped(n) {
      this.droppedCount = this.dropped() + n;
      this.store.set(PREFIX + 'dropped', String(this.droppedCount));
    }
  }

  /** Splits queued entries into batches of at most `maxEvents` events and `maxBytes` of JSON. */
  function batches(entries, maxEvents, maxBytes) {
    const result = [];
    let current = [];
    let bytes = 12; // {"events":[]}
    for (const entry of entries) {
      const size = JSON.stringify(entry.event).length + 1;
      if (current.length && (current.length >= maxEvents || bytes + size > maxBytes)) {
        result.push(current);
        current = [];
        bytes = 12;
      }
      current.push(entry);
      bytes += size;
    }
    if (current.length) result.push(current);
    return result;
  }

  // ---------------------------------------------------------------------------------------------
  // Delivery
  // ---------------------------------------------------------------------------------------------

  /** What a POST /v1/events response means for the batch it carried. */
  function classifyResponse(status, body, batchLength) {
    if (status === 202 || status === 200) {
      const rejected = body && Array.isArray(body.rejected) ? body.rejected : [];
      // Accepted, but too old for any window (queued longer than the stack counts back): they leave
      // the queue like the rest, and are reported, never sent again.
      const notCounted = body && Array.isArray(body.notCounted) ? body.notCounted : [];
      return { outcome: 'accepted', rejected, notCounted };
    }
    if (status === 400) {
      // "400 when none valid": with per-index errors only those are bad, and the others are resent;
      // without them the body itself was refused, and resending it would fail the same way.
      const rejected = body && Array.isArray(body.rejected) && body.rejected.length
        ? body.rejected
        : Array.from({ length: batchLength }, (_, index) => ({ index, errors: body && body.errors }));
      return { outcome: 'rejected', rejected };
    }
    if (status === 413) return { outcome: 'too-large' };
    return { outcome: 'retry' }; // 5xx, 503, 429, 408, and 4xx that a fixed deployment will answer
  }

  class Sender {
    constructor(tailor) {
      this.t = tailor;
      this.timer = null;
      this.timerDue = 0;
      this.running = null;
      this.failures = 0;
      this.limit = tailor.config.batchSize; // halved when the collector answers 413
    }

    get retryAt() { return Number(this.t.store.get(PREFIX + 'retryAt')) || 0; }

    set retryAt(at) {
      if (at) this.t.store.set(PREFIX + 'retryAt', String(at));
      else this.t.store.remove(PREFIX + 'retryAt');
    }

    /** Flush in `delay` ms, unless a flush is already due sooner. */
    schedule(delay) {
      if (!this.t.started) return; // destroyed: no timer may outlive the instance
      const env = this.t.env;
      const now = this.t.now();
      const due = now + Math.max(0, delay);
      // A pending timer already past its due time was held back (a device asleep: timers stop while
      // the clock runs on) or the clock jumped: it no longer tells when it fires, so it is replaced.
      if (this.timer !== null && this.timerDue <= due && this.timerDue >= now) return;
      if (this.timer !== null) env.clearTimeout(this.timer);
      this.timerDue = due;
      this.timer = env.setTimeout(() => {
        this.timer = null;
        this.flush().catch((error) => this.t.log('flush failed', error));
      }, Math.max(0, delay));
    }

    cancel() {
      if (this.timer !== null) this.t.env.clearTimeout(this.timer);
      this.timer = null;
    }

    /** Sends queued events until the queue is empty or the collector asks us to wait; resolves with
     *  {sent, remaining, waiting} where waiting is null, 'consent', 'offline' or 'backoff'. */
    async flush() {
      while (this.running) await this.running;
      this.running = this.drain();
      try { return await this.running; } finally { this.running = null; }
    }

    async drain() {
      const t = this.t;
      const before = t.stats.sent;
      const outcome = (waiting) => ({ sent: t.stats.sent - before, remaining: t.queue.size(), waiting });
      // Bounded so that a storage which silently keeps removed keys cannot spin this loop forever.
      for (let round = 0; round < 1000; round++) {
        if (!t.canSend()) return outcome('consent');
        const navigator = t.env.navigator;
        if (navigator && navigator.onLine === false) {
          // The 'online' event flushes; the timer is a safety net for browsers that never send it.
          this.schedule(t.config.maxBackoff);
          return outcome('offline');
        }
        const wait = this.retryAt - t.now();
        if (wait > 0) {
          this.schedule(wait);
          return outcome('backoff');
        }
        const [batch] = batches(t.queue.list(), this.limit, t.config.maxBatchBytes);
        if (!batch) return outcome(null);
        if ((await this.send(batch)) === 'retry') return outcome('backoff');
      }
      this.schedule(t.config.flushInterval);
      return outcome('busy');
    }

    async send(batch) {
      const t = this.t;
      const body = JSON.stringify({ events: batch.map((entry) => entry.event) });
      let response;
      let payload = null;
      const controller = typeof AbortController === 'function' ? new AbortController() : null;
      const timeout = t.env.setTimeout(() => controller && controller.abort(), t.config.requestTimeout);
      try {
        response = await t.env.fetch(t.url('/v1/events'), {
          method: 'POST',
          // The token of now, not of when the events were tracked: a retried batch carries a fresh one.
          headers: Object.assign({ 'Content-Type': 'application/json' }, t.authorization()),
          body,
          keepalive: body.length <= t.config.maxBatchBytes,
          credentials: 'omit',
          cache: 'no-store',
          signal: controller ? controller.signal : undefined,
        });
        payload = parseJson(await response.text(), null);
      } catch (error) {
        t.log('collector unreachable', error);
        return this.backOff(null);
      } finally {
        t.env.clearTimeout(timeout);
      }
      t.stats.requests++;
      const verdict = classifyResponse(response.status, payload, batch.length);
      if (response.status === 401) t.unauthorized('/v1/events', response); // kept queued: retried with the next token
      if (verdict.outcome === 'retry') {
        return this.backOff(parseRetryAfter(response.headers.get('Retry-After'), t.now()));
      }
      if (verdict.outcome === 'too-large') {
        if (batch.length > 1) {
          this.limit = Math.max(1, Math.ceil(batch.length / 2));
          return 'split';
        }
        this.drop(batch, [{ index: 0, errors: [{ field: '(event)', message: 'event too large (413)' }] }]);
        return 'dropped';
      }
      this.failures = 0;
      this.retryAt = 0;
      if (verdict.outcome === 'accepted') {
        this.drop(batch, verdict.rejected);
        const accepted = batch.length - verdict.rejected.length;
        t.stats.sent += accepted;
        t.emit('sent', { events: batch.map((entry) => entry.event), accepted });
        if (accepted > 0) t.onAccepted(batch.map((entry) => entry.event));
        this.reportNotCounted(batch, verdict.notCounted);
        return 'accepted';
      }
      // 400: the rejected are dropped, the rest (if any) stay queued for the next batch.
      const bad = new Set(verdict.rejected.map((item) => item.index));
      t.queue.remove(batch.filter((_, index) => bad.has(index)).map((entry) => entry.id));
      this.reportRejected(batch, verdict.rejected);
      return 'rejected';
    }

    /** A 202 covers the whole batch: accepted events and refused ones both leave the queue. */
    drop(batch, rejected) {
      this.t.queue.remove(batch.map((entry) => entry.id));
      if (rejected.length) this.reportRejected(batch, rejected);
    }

    reportNotCounted(batch, notCounted) {
      for (const item of notCounted) {
        const entry = batch[item.index];
        if (!entry) continue;
        this.t.stats.notCounted++;
        this.t.log('event too old to count', entry.event, item.message);
        this.t.emit('notCounted', { event: entry.event, reason: item.reason, message: item.message });
      }
    }

    reportRejected(batch, rejected) {
      for (const item of rejected) {
        const entry = batch[item.index];
        if (!entry) continue;
        this.t.stats.rejected++;
        this.t.log('event rejected', entry.event, item.errors);
        this.t.emit('rejected', { event: entry.event, errors: item.errors });
      }
    }

    /** Retry later: after the exponential backoff, and never before the server's Retry-After (plus
     *  jitter). A long outage answered with "Retry-After: 1" thus still spreads clients out. */
    backOff(retryAfter) {
      const config = this.t.config;
      const random = this.t.env.random;
      let delay = backoffDelay(this.failures, config.minBackoff, config.maxBackoff, random);
      if (retryAfter !== null) delay = Math.max(delay, retryAfter + Math.round(retryAfter * 0.2 * random()));
      this.failures++;
      this.t.stats.retries++;
      this.retryAt = this.t.now() + delay;
      this.schedule(delay);
      return 'retry';
    }

    /** The page is going away: hand everything queued to the browser in beacons. The events stay
     *  queued (a beacon has no answer) and are sent again by the next page; the server's dedup by
     *  event id makes that harmless. */
    beacon() {
      const t = this.t;
      const navigator = t.env.navigator;
      if (!t.canSend() || !navigator || typeof navigator.sendBeacon !== 'function') return 0;
      // A beacon carries no Authorization header: with a token the events wait for the next page.
      if (t.token) return 0;
      let handed = 0;
      for (const batch of batches(t.queue.list(), this.limit, t.config.maxBatchBytes)) {
        const body = JSON.stringify({ events: batch.map((entry) => entry.event) });
        let ok = false;
        try {
          ok = navigator.sendBeacon(t.url('/v1/events'), new t.env.Blob([body], { type: t.beaconType() }));
        } catch (_) { ok = false; }
        if (!ok) break; // over the browser's beacon quota: the rest waits for the next page
        handed += batch.length;
      }
      return handed;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering
  // ---------------------------------------------------------------------------------------------

  // Elements that run code, load documents, restyle the page or (SVG animation) rewrite a link's href.
  const UNSAFE_ELEMENTS = new Set(['script', 'style', 'link', 'meta', 'base', 'iframe', 'frame', 'frameset',
    'object', 'embed', 'applet', 'noscript', 'template', 'form', 'animate', 'set', 'animatemotion',
    'animatetransform', 'use', 'foreignobject', 'handler', 'listener']);
  const URL_ATTRIBUTES = new Set(['href', 'src', 'xlink:href', 'action', 'formaction', 'poster', 'background', 'srcset']);
  const SAFE_URL = /^(?:https?:|mailto:|tel:|\/|\.|#|\?|[^:]*$)/i;

  function safeUrl(value) {
    const text = String(value || '').replace(/[\u0000-\u0020]/g, '');
    return SAFE_URL.test(text);
  }

  /** The second line of defence after the server's sanitizer: the HTML is parsed in an inert
   *  <template> (no script runs, no image loads) and anything able to run code, load a document or
   *  style the page under a strict CSP is removed before the fragment reaches the page. */
  function scrub(fragment) {
    for (const element of Array.from(fragment.querySelectorAll('*'))) {
      if (UNSAFE_ELEMENTS.has(element.localName.toLowerCase())) element.remove();
    }
    for (const element of Array.from(fragment.querySelectorAll('*'))) {
      for (const attribute of Array.from(element.attributes)) {
        const name = attribute.name.toLowerCase();
        if (name.startsWith('on') || name === 'style' || name === 'srcdoc' ||
            (URL_ATTRIBUTES.has(name) && !safeUrl(attribute.value))) {
          element.removeAttribute(attribute.name);
        }
      }
    }
    return fragment;
  }

  class Renderer {
    constructor(tailor) {
      this.t = tailor;
      this.decisions = new WeakMap(); // slot element -> the decision it shows
      this.clicked = new Set();       // decisionIds whose click feedback was sent
      this.policy = undefined;        // Trusted Types policy, created on first use
      this.refreshTimer = null;
    }

    cacheRead() {
      const cache = parseJson(this.t.session.get(PREFIX + 'decisions'), null);
      return cache && typeof cache === 'object' && cache.slots ? cache : { slots: {} };
    }

    /** Decisions for `slots`: Map slot -> decision (null when there is none). Decisions cached
     *  within `cacheTtl`, for the same visitor and with no behaviour tracked since, are reused;
     *  the others come from one GET /v1/decide. On timeout or error every uncached slot is null. */
    async decide(slots, options) {
      const t = this.t;
      const fresh = Boolean(options && options.fresh);
      const result = new Map();
      if (!t.canSend()) {
        for (const slot of slots) result.set(slot, null);
        return result;
      }
      const identity = t.identity();
      if (!identity.user) {
        for (const slot of slots) result.set(slot, null);
        return result;
      }
      const key = `${identity.user}|${identity.session}|${t.behaviourMark()}`;
      const cache = this.cacheRead();
      const now = t.now();
      const missing = [];
      for (const slot of slots) {
        const hit = !fresh && cache.key === key && cache.slots[slot];
        if (hit && now - hit.at < t.config.cacheTtl) {
          result.set(slot, hit.decision);
        } else {
          missing.push(slot);
        }
      }
      if (!missing.length) { t.stats.cacheHits += slots.length; return result; }
      t.stats.cacheHits += slots.length - missing.length;
      // Rate-limited (429): no decide before the server's Retry-After; the slots keep their
      // fallbacks meanwhile, as on any error. (A 503 is retried at once: the next page view's decide
      // must not wait for an outage that may already be over.)
      if (this.decideRetryAt && t.now() < this.decideRetryAt) {
        for (const slot of missing) result.set(slot, null);
        return result;
      }
      const query = new URLSearchParams();
      for (const slot of missing) query.append('slot', slot);
      query.append('user', identity.user);
      query.append('session', identity.session);
      const controller = typeof AbortController === 'function' ? new AbortController() : null;
      const timer = t.env.setTimeout(() => controller && controller.abort(), t.config.decideTimeout);
      let body = null;
      try {
        t.stats.decideCalls++;
        const response = await t.env.fetch(t.url('/v1/decide') + '?' + query.toString(), {
          method: 'GET',
          headers: t.authorization(),
          credentials: 'omit',
          cache: 'no-store',
          signal: controller ? controller.signal : undefined,
        });
        if (response.ok) body = parseJson(await response.text(), null);
        else if (response.status === 401) t.unauthorized('/v1/decide', response);
        else {
          t.log('decide answered', response.status);
          const wait = response.status === 429
            ? parseRetryAfter(response.headers.get('Retry-After'), t.now()) : null;
          if (wait !== null) this.decideRetryAt = t.now() + wait;
        }
      } catch (error) {
        t.log('decide failed or timed out', error);
      } finally {
        t.env.clearTimeout(timer);
      }
      const decisions = body && Array.isArray(body.decisions) ? body.decisions : null;
      for (const slot of missing) result.set(slot, null);
      if (!decisions) return result;
      const stored = cache.key === key ? cache : { key, slots: {} };
      for (const decision of decisions) {
        if (!decision || !missing.includes(decision.slot)) continue;
        result.set(decision.slot, decision);
        stored.slots[decision.slot] = { at: now, decision };
      }
      stored.key = key;
      t.session.set(PREFIX + 'decisions', JSON.stringify(stored));
      return result;
    }

    /** Fills every [data-tailor-slot] under `root` (default: the document). */
    async render(root, options) {
      const t = this.t;
      const document = t.env.document;
      if (!document) return [];
      const scope = root || document;
      const elements = Array.from(scope.querySelectorAll('[data-tailor-slot]'));
      if (scope !== document && scope.matches && scope.matches('[data-tailor-slot]')) elements.unshift(scope);
      const slots = Array.from(new Set(elements.map((el) => el.getAttribute('data-tailor-slot')).filter(Boolean)));
      if (!slots.length) return [];
      if (!t.canSend()) {
        for (const element of elements) this.markFallback(element, 'consent');
        return elements.map((element) => ({ slot: element.getAttribute('data-tailor-slot'), state: 'fallback' }));
      }
      for (const element of elements) if (!element.hasAttribute('data-tailor-state')) element.setAttribute('aria-busy', 'true');
      const decisions = await this.decide(slots, options);
      const results = [];
      for (const element of elements) {
        const slot = element.getAttribute('data-tailor-slot');
        const decision = decisions.get(slot);
        const onlyIfChanged = Boolean(options && options.onlyIfChanged);
        if (!decision) {
          if (!onlyIfChanged) this.markFallback(element, 'unavailable');
          results.push({ slot, state: element.getAttribute('data-tailor-state') });
          continue;
        }
        const shown = this.decisions.get(element);
        if (onlyIfChanged && shown && shown.variant === decision.variant && shown.rule === decision.rule) {
          this.decisions.set(element, decision); // same content; clicks now credit the newer decision
          element.setAttribute('data-tailor-decision', decision.decisionId || '');
          results.push({ slot, state: element.getAttribute('data-tailor-state'), decision });
          continue;
        }
        results.push({ slot, state: this.apply(element, decision), decision });
      }
      return results;
    }

    markFallback(element, reason) {
      element.removeAttribute('aria-busy');
      if (this.decisions.has(element)) return; // keeps what an earlier decision put there
      element.setAttribute('data-tailor-state', 'fallback');
      this.t.dispatch(element, 'tailor:rendered', { slot: element.getAttribute('data-tailor-slot'), state: 'fallback', reason });
    }

    /** Shows `decision` in `element`; returns the slot's state ('personalized' or 'fallback'). */
    apply(element, decision) {
      const content = decision.content;
      const slot = element.getAttribute('data-tailor-slot');
      element.removeAttribute('aria-busy');
      if (!content || !CONTENT_TYPES.includes(content.type)) {
        this.markFallback(element, 'no-content');
        return 'fallback';
      }
      try {
        if (content.type === 'text') {
          element.textContent = typeof content.body === 'string' ? content.body : '';
        } else if (content.type === 'html') {
          element.replaceChildren(this.parseHtml(typeof content.body === 'string' ? content.body : ''));
        } else if (content.type === 'image') {
          const image = this.image(content.data || {});
          if (!image) { this.markFallback(element, 'bad-image'); return 'fallback'; }
          element.replaceChildren(image);
        } else {
          // json: the page decides what it means; the markup stays as it is until a listener acts.
          this.t.dispatch(element, 'tailor:content', {
            slot, variant: decision.variant, rule: decision.rule, decisionId: decision.decisionId, data: content.data,
          });
        }
      } catch (error) {
        // e.g. Trusted Types enforced without our policy allowed: the fallback markup stays.
        this.t.log('could not render slot', slot, error);
        this.markFallback(element, 'render-error');
        return 'fallback';
      }
      this.decisions.set(element, decision);
      element.setAttribute('data-tailor-state', 'personalized');
      element.setAttribute('data-tailor-variant', decision.variant || '');
      element.setAttribute('data-tailor-decision', decision.decisionId || '');
      this.t.dispatch(element, 'tailor:rendered', { slot, state: 'personalized', variant: decision.variant, decision });
      return 'personalized';
    }

    parseHtml(html) {
      const document = this.t.env.document;
      const template = document.createElement('template');
      template.innerHTML = this.trusted(html);
      return scrub(template.content);
    }

    /** Under `require-trusted-types-for 'script'` a string cannot reach innerHTML; a policy named
     *  "tailor" (allow it with `trusted-types tailor`) vouches for the server-sanitized HTML, which
     *  is parsed inert and scrubbed before use. */
    trusted(html) {
      const trustedTypes = this.t.env.window && this.t.env.window.trustedTypes;
      if (!trustedTypes || typeof trustedTypes.createPolicy !== 'function') return html;
      if (this.policy === undefined) {
        try {
          this.policy = trustedTypes.createPolicy('tailor', { createHTML: (input) => input });
        } catch (_) {
          this.policy = null; // the page's CSP does not allow it; plain strings may still be allowed
        }
      }
      return this.policy ? this.policy.createHTML(html) : html;
    }

    image(data) {
      const document = this.t.env.document;
      if (typeof data.src !== 'string' || !data.src || !safeUrl(data.src)) return null;
      const image = document.createElement('img');
      image.src = data.src;
      image.alt = typeof data.alt === 'string' ? data.alt : '';
      image.className = 'tailor-image';
      image.decoding = 'async';
      if (Number.isFinite(data.width)) image.width = data.width;
      if (Number.isFinite(data.height)) image.height = data.height;
      if (typeof data.href !== 'string' || !data.href || !safeUrl(data.href)) return image;
      const link = document.createElement('a');
      link.href = data.href;
      link.className = 'tailor-image-link';
      link.appendChild(image);
      return link;
    }

    /** A click inside a personalized slot: POST /v1/feedback once per decision. */
    onClick(target) {
      const slot = target && typeof target.closest === 'function' ? target.closest('[data-tailor-slot]') : null;
      const decision = slot && this.decisions.get(slot);
      if (!decision || !decision.decisionId || this.clicked.has(decision.decisionId)) return;
      this.clicked.add(decision.decisionId);
      this.t.feedback(decision.decisionId, 'click');
    }

    /** Live mode: once the collector accepted actions taken on this page, decide again and swap the
     *  slots whose variant changed (their space is reserved, so nothing shifts). */
    scheduleRefresh() {
      if (this.refreshTimer !== null || !this.t.env.document || !this.t.started) return;
      this.refreshTimer = this.t.env.setTimeout(() => {
        this.refreshTimer = null;
        this.render(null, { fresh: true, onlyIfChanged: true }).catch((error) => this.t.log('refresh failed', error));
      }, this.t.config.liveDelay);
    }

    cancel() {
      if (this.refreshTimer !== null) this.t.env.clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The SDK instance
  // ---------------------------------------------------------------------------------------------

  function envFromWindow(w) {
    const bind = (fn, self) => (typeof fn === 'function' ? fn.bind(self) : undefined);
    return {
      window: w,
      document: w.document,
      location: w.location,
      navigator: w.navigator,
      crypto: w.crypto,
      fetch: bind(w.fetch, w),
      setTimeout: bind(w.setTimeout, w),
      clearTimeout: bind(w.clearTimeout, w),
      Blob: w.Blob,
      CustomEvent: w.CustomEvent,
      localStorage: () => w.localStorage,
      sessionStorage: () => w.sessionStorage,
      now: () => Date.now(),
      random: Math.random,
    };
  }

  class Tailor {
    /** `env` is the browser (see envFromWindow); tests pass Node's fetch and timers with in-memory
     *  Web Storage. Nothing happens until init(). */
    constructor(env) {
      this.env = Object.assign({ now: () => Date.now(), random: Math.random }, env);
      this.version = VERSION;
      this.config = Object.assign({}, DEFAULTS);
      this.started = false;
      this.listeners = new Map();
      this.cleanups = [];
      this.stats = { sent: 0, rejected: 0, notCounted: 0, retries: 0, requests: 0, decideCalls: 0, cacheHits: 0 };
      this.pendingConsent = undefined; // consent() called before init()
      this.liveArmed = false;          // live mode: the page's slots were decided; later actions refresh
      this.liveIds = new Set();        // ids of those later actions, until a 202 covers them
      this.readyResolve = null;
      this.ready = new Promise((resolve) => { this.readyResolve = resolve; });
    }

    now() { return this.env.now(); }

    /** Starts the SDK: `config` as in DEFAULTS. Tracks the page view and renders the slots unless
     *  told not to. Returns this. */
    init(config) {
      if (this.started) { this.log('already started; init() ignored'); return this; }
      this.started = true;
      Object.assign(this.config, config || {});
      this.config.endpoint = String(this.config.endpoint || '').replace(/\/+$/, '');
      const readable = probe(this.env.localStorage || (() => null), false);
      this.consentState = readable ? readable.getItem(PREFIX + 'consent') : null; // 'granted' | 'denied' | null
      const allowed = !this.config.requireConsent || this.consentState === 'granted';
      const local = probe(this.env.localStorage || (() => null), allowed);
      const session = probe(this.env.sessionStorage || (() => null), allowed);
      this.store = new Store(local, allowed);
      this.session = new Store(session, allowed);
      this.queue = new EventQueue(this.store, this.config.maxQueue, () => this.now());
      this.sender = new Sender(this);
      this.renderer = new Renderer(this);
      this.token = null;
      const token = this.config.token || this.session.get(PREFIX + 'token');
      if (token) {
        try { this.setToken(token); } catch (error) { this.log('identity token ignored', error); }
      }
      this.bindBrowser();
      if (this.pendingConsent !== undefined) this.consent(this.pendingConsent);
      // After the DOM is parsed: the title and <meta name="tailor:..."> are known, the slots exist.
      // The page view is recorded before deciding, so the decision cache knows behaviour moved on.
      // In live mode the one decide of this page view waits until the view itself is counted, so the
      // slots reflect it (no second call, no second swap); later actions re-decide as they are counted.
      const rendered = this.whenReady(async () => {
        const view = this.config.autoPageView && this.started ? this.page() : null;
        if (!this.config.autoRender || !this.started) return [];
        if (this.config.live && view && this.canSend()) await this.counted(view);
        const slots = await this.renderer.render();
        this.liveArmed = this.config.live;
        return slots;
      });
      rendered.then(
        (slots) => this.readyResolve({ slots }),
        (error) => { this.log('render failed', error); this.readyResolve({ slots: [] }); },
      );
      if (this.queue.size()) this.sender.schedule(0); // left over from an earlier page or outage
      return this;
    }

    // --- consent --------------------------------------------------------------------------------

    /** Whether events may be stored and sent now. */
    canSend() {
      if (this.consentState === 'denied') return false;
      return !this.config.requireConsent || this.consentState === 'granted';
    }

    /** consent(true): store and send from now on (events tracked while waiting are kept);
     *  consent(false): forget this visitor's ids and queued events, and track nothing.
     *  consent() returns 'granted', 'denied' or 'unknown'. */
    consent(granted) {
      if (granted === undefined) return this.consentState || 'unknown';
      if (!this.started) { this.pendingConsent = Boolean(granted); return granted ? 'granted' : 'denied'; }
      const local = probe(this.env.localStorage || (() => null), false);
      if (granted) {
        this.consentState = 'granted';
        this.store.persist();
        this.session.persist();
        this.store.set(PREFIX + 'consent', 'granted');
        this.sender.schedule(0);
        if (this.config.autoRender) this.renderer.render().catch((error) => this.log('render failed', error));
      } else {
        this.consentState = 'denied';
        this.sender.cancel();
        this.store.clear(PREFIX + 'consent');
        this.session.clear(null);
        this.store.set(PREFIX + 'consent', 'denied');
        // The refusal itself is remembered (strictly necessary), even while storage is memory-only.
        if (local && !this.store.durable) {
          try { local.setItem(PREFIX + 'consent', 'denied'); } catch (_) { /* remembered for this page only */ }
        }
      }
      return this.consentState;
    }

    // --- identity -------------------------------------------------------------------------------

    /** The ids events carry: {user: userId or anonymousId, userId, anonymousId, session}. */
    identity() {
      let anonymousId = this.store.get(PREFIX + 'anonymousId');
      if (!anonymousId || !ID.test(anonymousId)) {
        anonymousId = uuid(this.env.crypto);
        this.store.set(PREFIX + 'anonymousId', anonymousId);
      }
      if (this.token) {
        const { sub, sid } = this.token.claims;
        return { user: sub, userId: sub, anonymousId, session: sid };
      }
      const userId = this.store.get(PREFIX + 'userId') || null;
      return { user: userId || anonymousId, userId, anonymousId, session: this.sessionId(false) };
    }

    /** The Authorization header of a signed identity, when the page gave a token; {} otherwise. */
    authorization() {
      return this.token ? { Authorization: 'Bearer ' + this.token.raw } : {};
    }

    /** Keeps `raw`, a JWT from the shop's backend: its `sub` is the user and its `sid` the session of
     *  every request from now on. The signature is the server's to check; this reads the claims only. */
    setToken(raw) {
      const parts = String(raw).split('.');
      let claims = null;
      try {
        const text = parts[1].replace(/-/g, '+').replace(/_/g, '/');
        claims = JSON.parse(decodeURIComponent(Array.from(atob(text + '==='.slice((text.length + 3) % 4)),
          (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('')));
      } catch (_) { claims = null; }
      if (parts.length !== 3 || !claims || !ID.test(String(claims.sub)) || typeof claims.sid !== 'string') {
        throw new TypeError('tailor.identify: the token must be a JWT with `sub` (the user id) and `sid` (the session)');
      }
      this.token = { raw: String(raw), claims: { sub: String(claims.sub), sid: claims.sid } };
      if (this.consentState !== 'denied') {
        this.store.set(PREFIX + 'userId', this.token.claims.sub);
        this.session.set(PREFIX + 'token', this.token.raw);
      }
      // Events held back by a refused (expired) token go out now with the fresh one.
      if (this.sender && this.queue.size()) { this.sender.retryAt = 0; this.sender.failures = 0; this.sender.schedule(0); }
    }

    /** The session id; a new one after `sessionTimeout` of inactivity. `touch` marks activity. */
    sessionId(touch) {
      const now = this.now();
      const current = parseJson(this.store.get(PREFIX + 'session'), null);
      let id = current && typeof current.id === 'string' && now - current.last < this.config.sessionTimeout ? current.id : null;
      if (!id) id = uuid(this.env.crypto);
      if (touch || !current || current.id !== id) this.store.set(PREFIX + 'session', JSON.stringify({ id, last: now }));
      return id;
    }

    /** Ties this browser's events to a known user (1 to 128 letters, digits and . _ : @ + -). */
    identify(userId) {
      if (userId && typeof userId === 'object') {
        this.setToken(userId.token);
        return this.token.claims.sub;
      }
      const id = String(userId === undefined || userId === null ? '' : userId);
      if (!ID.test(id)) {
        throw new TypeError(
          'tailor.identify: the user id must be 1 to 128 letters, digits and . _ : @ + -, starting with a letter or digit'
        );
      }
      if (this.consentState !== 'denied') this.store.set(PREFIX + 'userId', id);
      return id;
    }

    /** Forgets the user and starts a new anonymous id and session (e.g. on logout). */
    reset() {
      for (const key of ['userId', 'anonymousId', 'session']) this.store.remove(PREFIX + key);
      this.session.remove(PREFIX + 'decisions');
      this.session.remove(PREFIX + 'token');
      this.token = null;
    }

    /** Changes whenever behaviour is tracked: cached decisions are valid only for the same mark. */
    behaviourMark() { return this.store.get(PREFIX + 'lastEvent') || ''; }

    // --- tracking -------------------------------------------------------------------------------

    /** Records one event; returns its id (null when consent was refused). */
    track(type, properties) {
      if (!this.started) throw new Error('tailor: call tailor.init() first');
      if (this.consentState === 'denied') return null;
      let eventType = String(type || '');
      const props = Object.assign({}, properties || {});
      if (!EVENT_TYPES.includes(eventType)) {
        props.name = props.name || eventType || 'unnamed';
        eventType = 'custom';
      }
      const event = this.buildEvent(eventType, props);
      const dropped = this.queue.push(event);
      if (dropped) this.emit('dropped', { count: dropped });
      this.store.set(PREFIX + 'lastEvent', event.id);
      if (this.liveArmed) this.liveIds.add(event.id);
      const full = this.queue.size() >= this.config.batchSize;
      this.sender.schedule(eventType === 'page_view' || full ? 0 : this.config.flushInterval);
      return event.id;
    }

    /** A page view; properties come from <meta name="tailor:NAME" content="..."> and `properties`. */
    page(properties) {
      return this.track('page_view', Object.assign(this.pageProperties(), properties || {}));
    }

    pageProperties() {
      const document = this.env.document;
      const result = {};
      if (!document || typeof document.querySelectorAll !== 'function') return result;
      for (const meta of Array.from(document.querySelectorAll('meta[name^="tailor:"]'))) {
        result[meta.getAttribute('name').slice(7)] = meta.getAttribute('content');
      }
      return result;
    }

    buildEvent(type, properties) {
      const identity = this.identity();
      const location = this.env.location;
      const document = this.env.document;
      const navigator = this.env.navigator || {};
      const event = {
        id: uuid(this.env.crypto),
        type,
        anonymousId: identity.anonymousId,
        sessionId: this.token ? this.token.claims.sid || this.sessionId(true) : this.sessionId(true),
        timestamp: new Date(this.now()).toISOString(),
        page: {
          url: truncate(String((location && location.href) || 'about:blank'), LIMITS.url),
          referrer: truncate((document && document.referrer) || '', LIMITS.url) || null,
          title: truncate((document && document.title) || '', LIMITS.title) || null,
        },
        properties: cleanProperties(properties),
        context: {
          device: deviceOf(navigator),
          locale: truncate(navigator.language || '', LIMITS.locale) || null,
          userAgent: truncate(navigator.userAgent || '', LIMITS.userAgent) || null,
        },
      };
      if (identity.userId) event.userId = identity.userId;
      return event;
    }

    /** Sends what is queued now (still honouring a collector's Retry-After); resolves with
     *  {sent, remaining, waiting}. */
    flush() {
      this.sender.cancel();
      return this.sender.flush();
    }

    /** Resolves `liveDelay` ms after a 202 covered event `id`, or after `decideTimeout` ms without
     *  one (the collector is slow or away: the slots are not held back longer than that). */
    counted(id) {
      return new Promise((resolve) => {
        let off = null;
        let timer = null;
        const done = (delay) => {
          off();
          this.env.clearTimeout(timer);
          this.env.setTimeout(resolve, delay);
        };
        off = this.on('sent', (detail) => {
          if (detail.events.some((event) => event.id === id)) done(this.config.liveDelay);
        });
        timer = this.env.setTimeout(() => done(0), this.config.decideTimeout);
      });
    }

    /** Live mode: actions tracked after the slots were decided, once counted, re-decide them. */
    onAccepted(events) {
      if (!this.liveArmed || !this.liveIds.size) return;
      let fresh = false;
      for (const event of events) fresh = this.liveIds.delete(event.id) || fresh;
      if (fresh) this.renderer.scheduleRefresh();
    }

    /** POST /v1/feedback; keepalive so it survives the navigation a click often starts. */
    feedback(decisionId, type) {
      if (!this.canSend()) return Promise.resolve(false);
      const body = JSON.stringify({ decisionId, type });
      return Promise.resolve()
        .then(() => this.env.fetch(this.url('/v1/feedback'), {
          method: 'POST', headers: Object.assign({ 'Content-Type': 'application/json' }, this.authorization()), body,
          keepalive: true, credentials: 'omit', cache: 'no-store',
        }))
        .then((response) => {
          if (response.status === 401) this.unauthorized('/v1/feedback', response);
          return response.status === 202 || response.ok;
        }, (error) => { this.log('feedback failed', error); return false; });
    }

    /** A 401: the identity token is missing, expired or refused; the page gets 'unauthorized' to
     *  fetch a fresh token and call identify({token}) again. */
    unauthorized(route, response) {
      this.log(route, 'refused the identity (401)');
      this.emit('unauthorized', { route, status: response.status });
    }

    /** Fills the slots under `root` again (e.g. after a single-page app changed the view). */
    render(root) { return this.renderer.render(root || null); }

    /** Decisions for `slots` without touching the page (for frameworks that render themselves, e.g.
     *  the React bindings): one GET /v1/decide for all the uncached ones, the same cache, timeout and
     *  consent rules as render(). Resolves with {slot: decision or null}; null keeps the fallback. */
    async decide(slots) {
      const names = Array.from(new Set(Array.from(slots || [], String))).filter(Boolean);
      const decisions = names.length ? await this.renderer.decide(names) : new Map();
      const result = {};
      for (const name of names) result[name] = decisions.get(name) || null;
      return result;
    }

    /** Server-sanitized HTML as inert DOM nodes, scrubbed again (see scrub): parsed in a <template>,
     *  never re-serialized, so a framework can move the nodes into its slot without ever handing a
     *  string to innerHTML. Throws when Trusted Types are enforced without the `tailor` policy. */
    fragment(html) { return this.renderer.parseHtml(typeof html === 'string' ? html : ''); }

    /** Click feedback for a decision shown by the page itself: POST /v1/feedback, once per decision. */
    clicked(decisionId) {
      if (!decisionId || this.renderer.clicked.has(decisionId)) return Promise.resolve(false);
      this.renderer.clicked.add(decisionId);
      return this.feedback(decisionId, 'click');
    }

    url(path) { return this.config.endpoint + path; }

    /** Beacons cross origins without a CORS preflight only with a "simple" content type. */
    beaconType() {
      const location = this.env.location;
      try {
        const target = new URL(this.url('/v1/events'), location && location.href);
        if (location && target.origin === location.origin) return 'application/json';
      } catch (_) { /* fall through */ }
      return 'text/plain;charset=UTF-8';
    }

    // --- browser wiring -------------------------------------------------------------------------

    whenReady(fn) {
      const document = this.env.document;
      if (!document || document.readyState !== 'loading') return Promise.resolve().then(fn);
      return new Promise((resolve, reject) => {
        this.listen(document, 'DOMContentLoaded', () => Promise.resolve().then(fn).then(resolve, reject), { once: true });
      });
    }

    listen(target, type, handler, options) {
      if (!target || typeof target.addEventListener !== 'function') return;
      target.addEventListener(type, handler, options);
      this.cleanups.push(() => target.removeEventListener(type, handler, options));
    }

    bindBrowser() {
      const { window, document } = this.env;
      this.listen(window, 'online', () => { this.sender.retryAt = 0; this.sender.failures = 0; this.sender.schedule(0); });
      this.listen(window, 'pagehide', () => this.sender.beacon());
      this.listen(window, 'pageshow', (event) => {
        if (event.persisted && this.config.autoPageView) this.page(); // back/forward cache restore
      });
      this.listen(document, 'visibilitychange', () => {
        if (document.visibilityState === 'hidden') this.flush().catch((error) => this.log('flush failed', error));
        else if (this.queue.size()) this.sender.schedule(0);
      });
      this.listen(document, 'click', (event) => {
        const target = event.target;
        this.renderer.onClick(target);
        if (!this.config.trackClicks || !target || typeof target.closest !== 'function') return;
        const element = target.closest('[data-tailor-track]');
        if (!element || element.tagName === 'FORM') return;
        this.track(element.getAttribute('data-tailor-track') || 'click', dataProperties(element));
      }, true);
      this.listen(document, 'submit', (event) => {
        const form = event.target;
        if (!this.config.trackClicks || !form || !form.hasAttribute || !form.hasAttribute('data-tailor-track')) return;
        const properties = dataProperties(form);
        const field = form.getAttribute('data-tailor-query-field');
        const input = field ? form.elements.namedItem(field) : form.querySelector('input[type="search"], input[name="q"]');
        if (input && typeof input.value === 'string') properties.query = input.value;
        this.track(form.getAttribute('data-tailor-track') || 'search', properties);
      }, true);
      if (this.config.dataLayer && window) this.bindDataLayer(window, this.config.dataLayer);
    }

    /** Replays what the page already pushed, then sees every later push (GTM's own wrapper, if it
     *  loads later, calls ours; if it loaded earlier, ours calls it). */
    bindDataLayer(window, name) {
      const layer = window[name] = Array.isArray(window[name]) ? window[name] : [];
      const handle = (entry) => {
        const mapped = mapDataLayerEntry(entry);
        if (mapped) this.track(mapped.type, mapped.properties);
      };
      for (const entry of layer.slice()) handle(entry);
      const original = layer.push;
      const tailor = this;
      layer.push = function push(...entries) {
        const result = original.apply(this, entries);
        if (tailor.started) entries.forEach(handle);
        return result;
      };
      this.cleanups.push(() => { if (layer.push !== original) layer.push = original; });
    }

    // --- events for the page and for tests ------------------------------------------------------

    /** on('sent' | 'rejected' | 'notCounted' | 'dropped' | 'unauthorized', handler): returns a function that unsubscribes. */
    on(name, handler) {
      if (!this.listeners.has(name)) this.listeners.set(name, new Set());
      this.listeners.get(name).add(handler);
      return () => this.listeners.get(name).delete(handler);
    }

    emit(name, detail) {
      for (const handler of this.listeners.get(name) || []) {
        try { handler(detail); } catch (error) { this.log('listener failed', error); }
      }
    }

    dispatch(element, type, detail) {
      const CustomEvent = this.env.CustomEvent;
      if (typeof CustomEvent !== 'function' || !element || !element.dispatchEvent) return;
      element.dispatchEvent(new CustomEvent(type, { detail, bubbles: true }));
    }

    /** Counters for monitoring and tests: queued, dropped, sent, rejected, retries, ... */
    status() {
      return Object.assign({ queued: this.queue ? this.queue.size() : 0, dropped: this.queue ? this.queue.dropped() : 0 }, this.stats);
    }

    log(...args) {
      if (this.config.debug && typeof console !== 'undefined') console.debug('[tailor]', ...args); // eslint-disable-line no-console
    }

    /** Removes listeners and timers (tests; single-page apps tearing down). */
    destroy() {
      for (const cleanup of this.cleanups.splice(0)) cleanup();
      if (this.sender) this.sender.cancel();
      if (this.renderer) this.renderer.cancel();
      this.started = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Configuration from the script tag and automatic start
  // ---------------------------------------------------------------------------------------------

  const NUMERIC_OPTIONS = ['batchSize', 'maxBatchBytes', 'flushInterval', 'maxQueue', 'sessionTimeout', 'requestTimeout',
    'minBackoff', 'maxBackoff', 'decideTimeout', 'cacheTtl', 'liveDelay'];
  const BOOLEAN_OPTIONS = ['requireConsent', 'autoPageView', 'autoRender', 'trackClicks', 'live', 'debug'];

  /** Options from <script src=".../sdk/tailor.js" data-endpoint=... data-require-consent ...>:
   *  a boolean attribute is true when present (unless "false"); numbers are milliseconds or counts.
   *  Without data-endpoint, a script served by the content API at /sdk/tailor.js points at it. */
  function configFromScript(script, baseUrl) {
    const config = {};
    if (!script) return config;
    const data = script.dataset || {};
    for (const name of BOOLEAN_OPTIONS) {
      if (data[name] !== undefined) config[name] = data[name] !== 'false';
    }
    for (const name of NUMERIC_OPTIONS) {
      if (data[name] !== undefined && Number.isFinite(Number(data[name]))) config[name] = Number(data[name]);
    }
    if (data.dataLayer !== undefined) config.dataLayer = data.dataLayer === 'false' ? '' : data.dataLayer;
    if (data.token !== undefined) config.token = data.token; // <script data-token="<JWT>">: docs/identity.md
    if (data.endpoint !== undefined) {
      config.endpoint = data.endpoint;
    } else if (script.src) {
      try {
        const src = new URL(script.src, baseUrl);
        config.endpoint = src.pathname.endsWith(SDK_PATH)
          ? src.origin + src.pathname.slice(0, -SDK_PATH.length)
          : src.origin;
      } catch (_) { /* an unreadable src leaves the page's own origin */ }
    }
    return config;
  }

  /** Creates window.tailor; starts it from the script tag unless the tag says data-manual (then the
   *  page calls tailor.init({...}) from its own script). */
  function autoStart(window) {
    const tailor = new Tailor(envFromWindow(window));
    const script = window.document.currentScript;
    const config = configFromScript(script, window.location.href);
    if (script && script.dataset && script.dataset.manual !== undefined) {
      const init = tailor.init.bind(tailor);
      tailor.init = (options) => init(Object.assign({}, config, options || {}));
      return tailor;
    }
    return tailor.init(config);
  }

  function createTailor(env) { return new Tailor(env); }

  /** A started instance for a page that loads the SDK as a module (no script tag to read options
   *  from, no global): `config` as in DEFAULTS. */
  function start(config, window) {
    const w = window || (typeof globalThis !== 'undefined' ? globalThis : undefined);
    if (!w || !w.document) throw new Error('tailor: start() needs a browser window (on a server, render the fallback)');
    return new Tailor(envFromWindow(w)).init(config || {});
  }

  return {
    VERSION,
    createTailor,
    start,
    autoStart,
    envFromWindow,
    safeUrl,
    internals: {
      uuid, backoffDelay, parseRetryAfter, cleanProperties, mapDataLayerEntry, dataProperties, classifyResponse,
      batches, configFromScript, deviceOf, safeUrl, Store, EventQueue, DEFAULTS, QUEUE_PREFIX, PREFIX,
    },
  };
});
