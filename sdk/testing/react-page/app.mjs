/**
 * The React test page of tests/browser/test_react_bindings.py: three slots under one provider, the
 * same component tree rendered by renderToString (page.mjs) and hydrated in Chromium (client.mjs).
 * `reserve: false` is the control page, whose slots reserve no space.
 */
import { createElement as h } from 'react';
import { TailorProvider, TailorSlot } from '../../react/index.mjs';

export function App({ reserve = true, decideTimeout = 30000 }) {
  const height = (px) => (reserve ? px : undefined);
  return h(TailorProvider, { decideTimeout, dataLayer: '' },
    h('header', null, h('h1', null, 'React shop')),
    h(TailorSlot, {
      name: 'home-hero', height: height(240),
      fallback: h('section', { className: 'hero-fallback' }, h('h2', null, 'Welcome to the shop')),
    }),
    h('p', { id: 'below-hero' }, 'Everything below the hero stays where it is.'),
    h(TailorSlot, {
      name: 'sidebar-promo', height: height(96),
      fallback: h('p', { className: 'promo-fallback' }, 'Free returns on every order'),
      renderJson: (data) => h('p', { className: 'promo-headline' }, String(data.headline)),
    }),
    h(TailorSlot, { name: 'footer-note', height: height(48), fallback: h('small', null, 'Thanks for shopping') }),
  );
}
