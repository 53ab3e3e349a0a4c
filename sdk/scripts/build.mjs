/**
 * Builds the package with esbuild into dist/ (git-ignored; `npm pack` runs it first):
 *
 *   dist/tailor.min.js  the classic script, minified (what a CDN would serve; the content API serves
 *                       tailor.js itself, unminified, at /sdk/tailor.js)
 *   dist/tailor.mjs     the ES module (index.mjs with tailor.js bundled in), minified, with a source map
 *   dist/react.mjs      the React bindings, minified; react and @tailor/sdk stay imports
 *
 * `--size` also prints each file's minified and gzipped size and writes them to dist/sizes.json.
 */
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
mkdirSync(dist, { recursive: true });

// ES2020: what tailor.js is written in (esbuild fails the build if a newer feature creeps in that it
// cannot lower), and what every browser with fetch keepalive runs.
const common = { absWorkingDir: root, minify: true, target: ['es2020'], logLevel: 'warning', legalComments: 'eof' };

// The React bindings import the SDK as '../index.mjs' (so Node and tests run the sources); in the
// package that import is @tailor/sdk's, so one page holds one copy of the SDK.
const sdkAsPackage = {
  name: 'sdk-as-package',
  setup(builder) {
    builder.onResolve({ filter: /^\.\.\/index\.mjs$/ }, () => ({ path: '@tailor/sdk', external: true }));
  },
};

await Promise.all([
  build({ ...common, entryPoints: ['tailor.js'], outfile: join(dist, 'tailor.min.js') }),
  build({ ...common, entryPoints: ['index.mjs'], bundle: true, format: 'esm', sourcemap: true, outfile: join(dist, 'tailor.mjs') }),
  build({
    ...common, entryPoints: ['react/index.mjs'], bundle: true, format: 'esm', sourcemap: true,
    external: ['react', 'react-dom'], plugins: [sdkAsPackage], outfile: join(dist, 'react.mjs'),
  }),
]);

if (process.argv.includes('--size')) {
  const sizes = {};
  for (const [name, file] of [['tailor.js (source)', 'tailor.js'], ['dist/tailor.min.js', 'dist/tailor.min.js'],
    ['dist/tailor.mjs', 'dist/tailor.mjs'], ['dist/react.mjs', 'dist/react.mjs']]) {
    const bytes = readFileSync(join(root, file));
    sizes[name] = { bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  }
  writeFileSync(join(dist, 'sizes.json'), JSON.stringify(sizes, null, 2) + '\n');
  for (const [name, size] of Object.entries(sizes)) {
    console.log(`${name.padEnd(20)} ${String(size.bytes).padStart(7)} B  ${String(size.gzip).padStart(6)} B gzipped`);
  }
}
