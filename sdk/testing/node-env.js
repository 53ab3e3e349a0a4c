'use strict';
/**
 * What the SDK needs from a browser, made from Node's own fetch, timers, crypto and Blob, with Web
 * Storage kept in memory and a clock a test can move forward. No DOM: the renderer's DOM work and
 * click tracking are tested in Chromium (tests/browser); everything else runs here.
 */
const { webcrypto } = require('node:crypto'); // globalThis.crypto only from Node 19 on; Debian 12 has 18
const { MemoryStorage } = require('./memory-storage.js');

function nodeEnv(options) {
  const opts = options || {};
  const clock = { offset: 0 };
  const window = new EventTarget();
  const beacons = [];
  const navigator = {
    onLine: true,
    language: 'en-GB',
    userAgent: opts.userAgent || 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) NodeTest/20',
    sendBeacon(url, blob) {
      beacons.push({ url, blob });
      return opts.beaconAccepts !== false;
    },
  };
  const localStorage = opts.localStorage || new MemoryStorage();
  const sessionStorage = opts.sessionStorage || new MemoryStorage();
  return {
    window,
    document: null,
    location: { href: 'https://shop.example/category/shoes?page=2', origin: 'https://shop.example' },
    navigator,
    crypto: webcrypto,
    fetch: globalThis.fetch,
    setTimeout,
    clearTimeout,
    Blob,
    CustomEvent: undefined,
    localStorage: () => localStorage,
    sessionStorage: () => sessionStorage,
    now: () => Date.now() + clock.offset,
    random: Math.random,
    // for the tests, not the SDK:
    clock,
    beacons,
    local: localStorage,
    session: sessionStorage,
  };
}

module.exports = { nodeEnv };
