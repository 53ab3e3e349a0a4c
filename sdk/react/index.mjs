/**
 * React bindings for Tailor: <TailorProvider> holds one SDK instance per page, <TailorSlot> and
 * useTailorSlot() fill slots from its decisions.
 *
 * - One decide per page view: every slot mounted in the same commit asks the provider, which sends
 *   one GET /v1/decide for all of them (slots mounted later are batched the same way, and decisions
 *   the SDK still holds cost nothing).
 * - No layout shift: <TailorSlot height=…> reserves its box (fixed height, `contain: strict`), so the
 *   fallback and the personalized content occupy the same space; or give it a class that does.
 * - Sanitized content only: text is a React text node; HTML (already sanitized by the operator) is
 *   parsed by the SDK in an inert <template>, scrubbed again, and its nodes are moved into the slot;
 *   no string ever reaches innerHTML or dangerouslySetInnerHTML. Image URLs pass the SDK's safeUrl.
 * - Server rendering: on the server and in the first client render a slot shows its fallback, so
 *   renderToString's markup is what a visitor without JavaScript sees, and hydration keeps it; the
 *   decision arrives after hydration, or never (timeout, error, no consent) and the fallback stays.
 * - Click feedback: a click inside a personalized slot sends POST /v1/feedback once per decision.
 */
import { createContext, createElement, useContext, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import { safeUrl, start } from '../index.mjs';

const TailorContext = createContext(null);

// useLayoutEffect warns under renderToString; on the server no effect runs anyway.
const useBrowserLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;

/** Collects the slots that ask within one task and decides them in one call. */
class SlotBatch {
  constructor(getClient) {
    this.getClient = getClient;
    this.pending = new Map(); // slot -> [resolve]
    this.scheduled = false;
  }

  request(slot) {
    return new Promise((resolve) => {
      if (!this.pending.has(slot)) this.pending.set(slot, []);
      this.pending.get(slot).push(resolve);
      if (this.scheduled) return;
      this.scheduled = true;
      // After the commit: React runs every passive effect of a commit before this task.
      setTimeout(() => this.flush(), 0);
    });
  }

  async flush() {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = new Map();
    let decisions = {};
    try {
      decisions = await this.getClient().decide(Array.from(pending.keys()));
    } catch (_) {
      decisions = {}; // no client (e.g. start() failed): every slot keeps its fallback
    }
    for (const [slot, waiting] of pending) for (const resolve of waiting) resolve(decisions[slot] || null);
  }
}

/**
 * The page's SDK: `client` (an instance from @tailor/sdk's start()) or the options to start one in
 * the browser ({endpoint, decideTimeout, requireConsent, …}; autoRender is always off here, React
 * renders the slots).
 */
export function TailorProvider({ client, children, ...options }) {
  const clientRef = useRef(client || null);
  const optionsRef = useRef(options);
  const batch = useMemo(() => new SlotBatch(() => {
    if (!clientRef.current) clientRef.current = start(Object.assign({}, optionsRef.current, { autoRender: false }));
    return clientRef.current;
  }), []);
  const value = useMemo(() => ({ batch, client: () => batch.getClient() }), [batch]);
  return createElement(TailorContext.Provider, { value }, children);
}

/** A slot's state: 'pending' (server and first render), then 'personalized' or 'fallback'; the
 *  decision, and what to render: {kind: 'text'|'html'|'image'|'json', …}. */
export function useTailorSlot(name) {
  const context = useContext(TailorContext);
  if (!context) throw new Error(`useTailorSlot('${name}'): wrap the page in <TailorProvider>`);
  const [shown, setShown] = useState({ state: 'pending', decision: null, content: null });
  useEffect(() => {
    let active = true;
    context.batch.request(name).then((decision) => {
      if (!active) return;
      const content = decision ? renderable(context.client(), decision) : null;
      setShown(content ? { state: 'personalized', decision, content } : { state: 'fallback', decision: null, content: null });
    });
    return () => { active = false; };
  }, [context, name]);
  const onClick = () => {
    if (shown.decision && shown.decision.decisionId) context.client().clicked(shown.decision.decisionId);
  };
  return { ...shown, onClick };
}

/** What a decision shows, checked before the slot leaves its fallback (null keeps the fallback). */
function renderable(client, decision) {
  const content = decision.content;
  if (!content) return null;
  if (content.type === 'text') return { kind: 'text', text: typeof content.body === 'string' ? content.body : '' };
  if (content.type === 'json') return { kind: 'json', data: content.data };
  if (content.type === 'image') {
    const data = content.data || {};
    if (typeof data.src !== 'string' || !data.src || !safeUrl(data.src)) return null;
    const href = typeof data.href === 'string' && data.href && safeUrl(data.href) ? data.href : null;
    return { kind: 'image', src: data.src, alt: typeof data.alt === 'string' ? data.alt : '', href, width: data.width, height: data.height };
  }
  if (content.type === 'html') {
    try {
      // Parsed and scrubbed now, so a page whose CSP refuses it keeps the fallback instead.
      return { kind: 'html', nodes: Array.from(client.fragment(content.body).childNodes) };
    } catch (_) {
      return null;
    }
  }
  return null;
}

/** Moves the SDK's scrubbed nodes into a box React renders empty (React never owns them). */
function HtmlNodes({ nodes }) {
  const ref = useRef(null);
  useBrowserLayoutEffect(() => {
    const element = ref.current;
    element.replaceChildren(...nodes);
    return () => element.replaceChildren();
  }, [nodes]);
  return createElement('div', { ref, className: 'tailor-html' });
}

function Content({ content, decision, renderJson, fallback }) {
  if (content.kind === 'text') return content.text;
  if (content.kind === 'html') return createElement(HtmlNodes, { nodes: content.nodes });
  if (content.kind === 'image') {
    const image = createElement('img', {
      src: content.src, alt: content.alt, className: 'tailor-image', decoding: 'async',
      width: Number.isFinite(content.width) ? content.width : undefined,
      height: Number.isFinite(content.height) ? content.height : undefined,
    });
    return content.href ? createElement('a', { href: content.href, className: 'tailor-image-link' }, image) : image;
  }
  return renderJson ? renderJson(content.data, decision) : fallback;
}

/**
 * <TailorSlot name="home-hero" height={240} fallback={<Hero />} />: the slot's box, its fallback until
 * a decision arrives (and for good on timeout or error), then the decision's content in the same box.
 * `height` (px or any CSS length) reserves the space; without it, reserve it with `className`
 * (height + `contain: strict`), as a strict CSP that forbids inline styles requires. `renderJson`
 * renders json content: (data, decision) => node.
 */
export function TailorSlot({ name, fallback = null, height, className, as = 'div', renderJson, children }) {
  const slot = useTailorSlot(name);
  const reserved = height === undefined ? undefined
    : { height: typeof height === 'number' ? `${height}px` : height, contain: 'strict', overflow: 'hidden' };
  const attributes = {
    className, style: reserved, 'data-tailor-slot': name, onClick: slot.onClick,
    'data-tailor-state': slot.state === 'pending' ? undefined : slot.state,
    'data-tailor-variant': slot.decision ? slot.decision.variant || '' : undefined,
    'data-tailor-decision': slot.decision ? slot.decision.decisionId || '' : undefined,
  };
  const body = slot.state === 'personalized'
    ? createElement(Content, { content: slot.content, decision: slot.decision, renderJson, fallback: fallback ?? children })
    : fallback ?? children;
  return createElement(as, attributes, body);
}
