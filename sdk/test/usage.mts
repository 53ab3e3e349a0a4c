// Compiled by `npm run types` (tsc, no output): code a user writes against the declarations. A
// declaration that disagrees with this use fails the check; run-time names: test/esm.test.mjs.
import { createElement } from 'react';
import { start, safeUrl, VERSION, type Decision, type Tailor } from '@tailor/sdk';
import { TailorProvider, TailorSlot, useTailorSlot } from '@tailor/sdk/react';

const tailor: Tailor = start({ endpoint: 'https://api.shop.example', decideTimeout: 800, requireConsent: true });
const id: string | null = tailor.track('add_to_cart', { productId: '42', value: 89 });
tailor.identify('customer-42');
tailor.identify({ token: 'a.b.c' });
const off = tailor.on('rejected', ({ event, errors }) => console.log(event.id, errors));
off();
tailor.consent(true);
const state: 'granted' | 'denied' | 'unknown' = tailor.consent();
void tailor.flush().then(({ sent, remaining, waiting }) => console.log(sent, remaining, waiting));
void tailor.decide(['home-hero', 'sidebar-promo']).then((decisions) => {
  const hero: Decision | null = decisions['home-hero'];
  if (hero && hero.content && hero.content.type === 'html') tailor.fragment(hero.content.body ?? '');
});
console.log(id, state, VERSION, safeUrl('/p/42'), tailor.status().decideCalls);

function Promo() {
  const slot = useTailorSlot('sidebar-promo');
  return createElement('aside', { onClick: slot.onClick }, slot.state === 'personalized' ? 'offer' : 'welcome');
}

export const page = createElement(
  TailorProvider,
  { endpoint: 'https://api.shop.example', decideTimeout: 800 },
  createElement(TailorSlot, { name: 'home-hero', height: 240, fallback: createElement('p', null, 'Welcome') }),
  createElement(TailorSlot, { name: 'recs', className: 'slot', renderJson: (data: unknown) => String(data) }),
  createElement(Promo),
);
