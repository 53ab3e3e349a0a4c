/**
 * @tailor/sdk as an ES module: the same SDK as the classic script (tailor.js, which stays the one
 * source and is what the content API serves at /sdk/tailor.js), for pages that bundle their code.
 * Importing it starts nothing and defines no global: the page calls start().
 *
 *   import { start } from '@tailor/sdk';
 *   const tailor = start({ endpoint: 'https://api.shop.example' });
 *
 * The package's "import" condition is dist/tailor.mjs, this file bundled by esbuild
 * (scripts/build.mjs); Node imports this file directly (tests, server-side rendering).
 */
import sdk from './tailor.js';

export const { VERSION, createTailor, start, autoStart, envFromWindow, safeUrl } = sdk;
