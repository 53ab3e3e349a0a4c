// The npm package's ES module: it exports what tailor.d.ts declares (sources and esbuild's dist/
// build alike), and the methods a framework uses to render slots itself (the React bindings) keep
// the SDK's one-decide and once-per-decision-feedback rules.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import * as esm from '../index.mjs';

const require = createRequire(import.meta.url);
const { RecordingServer, waitFor } = require('../testing/recording-server.js');
const { nodeEnv } = require('../testing/node-env.js');
const classic = require('../tailor.js');

const declared = readFileSync(new URL('../tailor.d.ts', import.meta.url), 'utf8');
const DECLARED = [...declared.matchAll(/^export (?:function|const) (\w+)/gm)].map((m) => m[1]).sort();

test('the ES module exports what tailor.d.ts declares, as the classic script does', () => {
  assert.ok(DECLARED.length >= 6, DECLARED);
  assert.deepEqual(Object.keys(esm).sort(), DECLARED);
  for (const name of DECLARED) assert.equal(typeof classic[name], typeof esm[name], name);
});

test("esbuild's dist/tailor.mjs exports the same names", async () => {
  const built = new URL('../dist/tailor.mjs', import.meta.url);
  assert.ok(existsSync(built), 'dist/tailor.mjs is missing: `npm test` builds it first (npm run build)');
  const module = await import(built.href);
  assert.deepEqual(Object.keys(module).sort(), DECLARED);
  assert.equal(module.VERSION, esm.VERSION);
});

test('start() refuses to run without a browser window, saying why', () => {
  assert.throws(() => esm.start({}, {}), /needs a browser window/);
});

const server = await new RecordingServer().start();
after(() => server.stop());

test('decide() asks once for all slots, and clicked() sends feedback once per decision', async () => {
  server.decisions = {
    hero: { slot: 'hero', variant: 'v-hero', rule: 'r', content: { type: 'text', body: 'Hi' }, decisionId: 'd-hero' },
  };
  const tailor = esm.createTailor(nodeEnv()).init({ endpoint: server.url, autoPageView: false, autoRender: false });
  try {
    const decisions = await tailor.decide(['hero', 'promo', 'hero']);
    assert.equal(server.decides().length, 1);
    assert.deepEqual(server.decides()[0].query.getAll('slot'), ['hero', 'promo']);
    assert.equal(decisions.hero.variant, 'v-hero');
    assert.equal(decisions.promo.variant, null);
    assert.deepEqual(await tailor.decide(['hero']), { hero: decisions.hero }, 'cached: no second request');
    assert.equal(server.decides().length, 1);

    assert.equal(await tailor.clicked('d-hero'), true);
    assert.equal(await tailor.clicked('d-hero'), false, 'a second click sends nothing');
    await waitFor(() => server.requests.some((r) => r.path === '/v1/feedback'));
    const feedback = server.requests.filter((r) => r.path === '/v1/feedback');
    assert.equal(feedback.length, 1);
    assert.deepEqual(feedback[0].json, { decisionId: 'd-hero', type: 'click' });
  } finally {
    tailor.destroy();
  }
});

test("esbuild's minified classic script exports the same factory as tailor.js", () => {
  const minified = require('../dist/tailor.min.js');
  assert.deepEqual(Object.keys(minified).sort(), Object.keys(classic).sort());
  assert.equal(minified.VERSION, classic.VERSION);
});

test('the package resolves by its name as a user imports it, through its exports and built files', async () => {
  const pkg = await import('@tailor/sdk'); // the "import" condition: dist/tailor.mjs
  assert.deepEqual(Object.keys(pkg).sort(), DECLARED);
  assert.equal(require('@tailor/sdk'), classic, 'the "require" condition is tailor.js');

  const react = await import('@tailor/sdk/react'); // dist/react.mjs, which imports @tailor/sdk
  const declaredReact = readFileSync(new URL('../react/index.d.mts', import.meta.url), 'utf8');
  const names = [...declaredReact.matchAll(/^export function (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(Object.keys(react).sort(), names);

  // On a server the built bindings render the slot's reserved box with its fallback, nothing else.
  const { createElement } = await import('react');
  const { renderToString } = await import('react-dom/server');
  const html = renderToString(createElement(react.TailorProvider, { endpoint: 'https://api.shop.example' },
    createElement(react.TailorSlot, { name: 'hero', height: 120, fallback: createElement('p', null, 'Welcome') })));
  assert.equal(html, '<div style="height:120px;contain:strict;overflow:hidden" data-tailor-slot="hero"><p>Welcome</p></div>');
});
