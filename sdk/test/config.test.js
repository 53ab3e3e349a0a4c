'use strict';
// Configuration from the script tag, backoff arithmetic, response classification.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const sdk = require('../tailor.js');

const { configFromScript, backoffDelay, parseRetryAfter, classifyResponse, safeUrl, deviceOf } = sdk.internals;

test('the script tag configures the SDK with data-* attributes', () => {
  const script = {
    src: 'https://cdn.shop.example/js/tailor.js',
    dataset: {
      endpoint: 'https://api.shop.example', requireConsent: '', autoPageView: 'false', live: '', batchSize: '20',
      decideTimeout: '800', cacheTtl: 'soon', dataLayer: 'shopLayer',
    },
  };
  assert.deepEqual(configFromScript(script, 'https://shop.example/'), {
    endpoint: 'https://api.shop.example', requireConsent: true, autoPageView: false, live: true,
    batchSize: 20, decideTimeout: 800, dataLayer: 'shopLayer',
  });
});

test('without data-endpoint, the content API that served /sdk/tailor.js is the endpoint', () => {
  const endpoint = (src) => configFromScript({ src, dataset: {} }, 'https://shop.example/p/1').endpoint;
  assert.equal(endpoint('https://api.shop.example/sdk/tailor.js'), 'https://api.shop.example');
  assert.equal(endpoint('https://shop.example/tailor/sdk/tailor.js'), 'https://shop.example/tailor');
  assert.equal(endpoint('/sdk/tailor.js'), 'https://shop.example');
  assert.equal(endpoint('https://cdn.example/tailor.min.js'), 'https://cdn.example');
});

test('backoff doubles per attempt up to the maximum, with jitter in the upper half', () => {
  const low = () => 0;
  const high = () => 0.999999;
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, 1000, 60000, low)), [500, 1000, 2000, 4000]);
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, 1000, 60000, high)), [1000, 2000, 4000, 8000]);
  assert.equal(backoffDelay(20, 1000, 60000, high), 60000);
  assert.equal(backoffDelay(50, 1000, 60000, low), 30000);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(3, 1000, 60000, Math.random)));
  assert.ok(spread.size > 10, 'clients that failed together come back apart');
});

test('Retry-After is read as seconds or as an HTTP date', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('3', now), 3000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now), 10000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
  for (const none of [null, undefined, '', 'soon', '-1']) assert.equal(parseRetryAfter(none, now), null, String(none));
});

test('collector answers are sorted into accepted, rejected, too large and retry', () => {
  assert.deepEqual(classifyResponse(202, { accepted: 2, rejected: [] }, 2), { outcome: 'accepted', rejected: [], notCounted: [] });
  assert.deepEqual(classifyResponse(202, null, 2), { outcome: 'accepted', rejected: [], notCounted: [] }, 'a 202 covers the batch');
  const late = [{ index: 1, id: 'e2', reason: 'late', message: 'old' }];
  assert.deepEqual(classifyResponse(202, { accepted: 2, rejected: [], notCounted: late }, 2).notCounted, late);
  assert.deepEqual(classifyResponse(400, { rejected: [{ index: 1, errors: [] }] }, 3).rejected.map((r) => r.index), [1]);
  assert.deepEqual(classifyResponse(400, { detail: 'not json' }, 3).rejected.map((r) => r.index), [0, 1, 2]);
  assert.equal(classifyResponse(413, null, 3).outcome, 'too-large');
  for (const status of [500, 502, 503, 504, 429, 408, 404, 401]) assert.equal(classifyResponse(status, null, 1).outcome, 'retry', status);
});

test('only harmless URLs survive in variant markup', () => {
  for (const ok of ['https://a.example/x', 'http://a', '/p/1', './x', '#top', '?q=1', 'img.png', 'mailto:a@b.c']) assert.ok(safeUrl(ok), ok);
  for (const bad of ['javascript:alert(1)', ' JavaScript:alert(1)', 'java\tscript:alert(1)', 'data:text/html,x', 'vbscript:x']) {
    assert.ok(!safeUrl(bad), bad);
  }
});

test('devices are told apart by user agent', () => {
  const ua = (userAgent) => deviceOf({ userAgent });
  assert.equal(ua('Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148'), 'mobile');
  assert.equal(ua('Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36'), 'mobile');
  assert.equal(ua('Mozilla/5.0 (Linux; Android 14; SM-X710) Safari/537.36'), 'tablet');
  assert.equal(ua('Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)'), 'tablet');
  assert.equal(ua('Mozilla/5.0 (X11; Linux x86_64) Chrome/120'), 'desktop');
});
