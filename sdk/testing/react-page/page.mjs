/**
 * Builds the React test page: `node page.mjs OUT_DIR` bundles client.mjs (React, react-dom, the
 * bindings and the SDK) with esbuild into OUT_DIR/react-page.js, and prints JSON {name: html} with
 * the documents of each page variant, their #root rendered by react-dom/server's renderToString.
 */
import { build } from 'esbuild';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createElement } from 'react';
import { renderToString } from 'react-dom/server';
import { App } from './app.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) throw new Error('usage: node page.mjs OUT_DIR');

await build({
  entryPoints: [join(here, 'client.mjs')], bundle: true, format: 'iife', minify: true, target: ['es2020'],
  define: { 'process.env.NODE_ENV': '"production"' }, outfile: join(out, 'react-page.js'), logLevel: 'warning',
});

const VARIANTS = {
  reserved: { reserve: true, decideTimeout: 30000 },
  unreserved: { reserve: false, decideTimeout: 30000 },
  quick: { reserve: true, decideTimeout: 500 },
};

const escapeJson = (value) => JSON.stringify(value).replace(/</g, '\\u003c');
const pages = {};
for (const [name, props] of Object.entries(VARIANTS)) {
  pages[name] = `<!doctype html><html><head><meta charset="utf-8"><title>React shop (${name})</title>
<script src="/react-page.js" defer></script></head>
<body><div id="root">${renderToString(createElement(App, props))}</div>
<script>
window.__hydrationErrors = [];
// Marks the server's nodes before hydration: hydration that kept them leaves the mark.
document.querySelectorAll('[data-tailor-slot] > *').forEach((node) => { node.__fromServer = true; });
</script>
<script type="application/json" id="page-props">${escapeJson(props)}</script>
</body></html>`;
}
process.stdout.write(JSON.stringify(pages));
