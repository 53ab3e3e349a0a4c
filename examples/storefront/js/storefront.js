/* The demo shop's own behaviour, in a file so that a CSP without 'unsafe-inline' allows it.
 * - Add to cart and Buy now report through the GTM-style dataLayer (tailor.js maps them to
 *   add_to_cart and purchase), as a shop that already uses Google Tag Manager would.
 * - The sidebar promo can be a JSON variant ({headline, code, discountPercent, href}); tailor.js hands
 *   it over in a `tailor:content` event and this file turns it into markup, text-only.
 * - "Save for later" is tracked declaratively (data-tailor-track); this file only confirms it.
 * - The search page shows the query it was opened with. */
(function () {
  'use strict';

  window.dataLayer = window.dataLayer || [];

  function itemOf(button) {
    return {
      item_id: button.getAttribute('data-product-id'),
      item_name: button.getAttribute('data-product-name'),
      item_category: button.getAttribute('data-product-category'),
      price: Number(button.getAttribute('data-product-price')),
      quantity: 1,
    };
  }

  function say(text) {
    const status = document.getElementById('cart-status');
    if (status) status.textContent = text;
  }

  function safeHref(href) {
    return typeof href === 'string' && /^(\/(?!\/)|https?:\/\/)/.test(href) ? href : null;
  }

  document.addEventListener('click', function (event) {
    const button = event.target instanceof Element ? event.target.closest('#add-to-cart, #checkout, #wishlist') : null;
    if (!button) return;
    if (button.id === 'wishlist') {
      // Tracked by tailor.js itself, from the button's data-tailor-* attributes.
      say('Saved for later.');
      return;
    }
    const item = itemOf(button);
    if (button.id === 'add-to-cart') {
      window.dataLayer.push({ ecommerce: null }); // GA4's advice: clear the previous ecommerce object
      window.dataLayer.push({ event: 'add_to_cart', ecommerce: { currency: 'EUR', value: item.price, items: [item] } });
      say(item.item_name + ' is in your cart.');
    } else {
      window.dataLayer.push({ ecommerce: null });
      window.dataLayer.push({
        event: 'purchase',
        ecommerce: { transaction_id: 'T-' + Date.now(), currency: 'EUR', value: item.price, items: [item] },
      });
      say('Thank you for your order.');
    }
  });

  document.addEventListener('tailor:content', function (event) {
    const detail = event.detail || {};
    const data = detail.data || {};
    if (detail.slot !== 'sidebar-promo' || typeof data.headline !== 'string') return;
    const box = document.createElement('p');
    box.className = 'promo';
    const headline = document.createElement('span');
    headline.className = 'promo-headline';
    headline.textContent = data.headline;
    box.appendChild(headline);
    if (typeof data.code === 'string') {
      const code = document.createElement('span');
      code.className = 'promo-code';
      code.textContent = data.code;
      box.append('Use ', code, typeof data.discountPercent === 'number' ? ' for ' + data.discountPercent + '% off. ' : '. ');
    }
    const href = safeHref(data.href);
    if (href) {
      const link = document.createElement('a');
      link.href = href;
      link.textContent = 'Take a look';
      box.appendChild(link);
    }
    event.target.replaceChildren(box);
  });

  document.addEventListener('DOMContentLoaded', function () {
    const summary = document.getElementById('search-summary');
    const query = new URLSearchParams(window.location.search).get('q');
    if (summary && query) summary.textContent = 'No results for “' + query + '” in this demo, but Tailor counted the search.';
  });
})();
