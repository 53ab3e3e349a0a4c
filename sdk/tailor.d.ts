/**
 * Types of @tailor/sdk (tailor.js, and index.mjs, its ES module). Checked by `npm run types` (tsc)
 * against test/usage.mts; the names each export has are checked at run time by test/esm.test.mjs.
 */

export type EventType = 'page_view' | 'click' | 'add_to_cart' | 'search' | 'purchase' | 'custom';
export type ContentType = 'html' | 'text' | 'json' | 'image';
export type ConsentState = 'granted' | 'denied' | 'unknown';

/** Options: the script tag's data-* attributes in camelCase, or start()/init()'s argument. Durations in ms. */
export interface Options {
  /** Base URL of the content API; '' (default) is the page's origin, or the script's for /sdk/tailor.js. */
  endpoint?: string;
  requireConsent?: boolean;
  autoPageView?: boolean;
  /** Fill [data-tailor-slot] elements when started (the React bindings turn it off). */
  autoRender?: boolean;
  trackClicks?: boolean;
  /** Name of the GTM-style array to follow; '' to ignore it. */
  dataLayer?: string;
  batchSize?: number;
  maxBatchBytes?: number;
  flushInterval?: number;
  maxQueue?: number;
  sessionTimeout?: number;
  requestTimeout?: number;
  minBackoff?: number;
  maxBackoff?: number;
  /** After this, slots keep their fallback. */
  decideTimeout?: number;
  cacheTtl?: number;
  live?: boolean;
  liveDelay?: number;
  /** A signed identity (JWT with `sub` and `sid`) from the shop's backend: docs/identity.md. */
  token?: string;
  debug?: boolean;
}

export interface Content {
  type: ContentType;
  /** html: HTML the operator sanitized; text: plain text. */
  body?: string;
  /** json: anything; image: {src, alt, href?, width?, height?}. */
  data?: unknown;
}

/** One slot's decision as GET /v1/decide serves it; no variant (nulls) keeps the fallback. */
export interface Decision {
  slot: string;
  variant: string | null;
  rule: string | null;
  decisionId: string | null;
  content: Content | null;
  rulesetVersion?: number;
}

export type Properties = Record<string, string | number | boolean | bigint | null | undefined>;

/** A v1 event as the SDK sends it (docs/architecture.md §9). */
export interface TailorEvent {
  id: string;
  type: EventType;
  anonymousId: string;
  userId?: string;
  sessionId: string;
  timestamp: string;
  page: { url: string; referrer: string | null; title: string | null };
  properties: Record<string, string | number>;
  context: { device: string; locale: string | null; userAgent: string | null };
}

export interface Status {
  queued: number;
  dropped: number;
  sent: number;
  rejected: number;
  notCounted: number;
  retries: number;
  requests: number;
  decideCalls: number;
  cacheHits: number;
}

export interface FlushResult {
  sent: number;
  remaining: number;
  waiting: null | 'consent' | 'offline' | 'backoff' | 'busy';
}

export interface SlotResult {
  slot: string;
  state: string | null;
  decision?: Decision;
}

export interface EventDetails {
  sent: { events: TailorEvent[]; accepted: number };
  rejected: { event: TailorEvent; errors: unknown };
  notCounted: { event: TailorEvent; reason: string; message: string };
  dropped: { count: number };
  unauthorized: { route: string; status: number };
}

export interface Tailor {
  readonly version: string;
  readonly config: Readonly<Required<Options>>;
  /** Resolves once the automatic page view and rendering are done. */
  readonly ready: Promise<{ slots: SlotResult[] }>;
  init(options?: Options): this;
  /** Records one event; returns its id (null once consent was refused). Unknown types become `custom`. */
  track(type: EventType | string, properties?: Properties): string | null;
  page(properties?: Properties): string | null;
  /** A user id (1 to 128 letters, digits and . _ : @ + -), or a signed identity token. Returns the user id. */
  identify(user: string | { token: string }): string;
  reset(): void;
  flush(): Promise<FlushResult>;
  status(): Status;
  consent(): ConsentState;
  consent(granted: boolean): ConsentState;
  on<K extends keyof EventDetails>(name: K, handler: (detail: EventDetails[K]) => void): () => void;
  /** Fills the [data-tailor-slot] elements under `root` (default: the document). */
  render(root?: ParentNode | null): Promise<SlotResult[]>;
  /** Decisions for `slots` in one GET /v1/decide (cached ones reused); null keeps a slot's fallback. */
  decide(slots: Iterable<string>): Promise<Record<string, Decision | null>>;
  /** Server-sanitized HTML parsed inert and scrubbed again, as nodes to move into a slot. */
  fragment(html: string): DocumentFragment;
  /** Click feedback for a decision the page shows itself; sent once per decision. */
  clicked(decisionId: string): Promise<boolean>;
  feedback(decisionId: string, type: string): Promise<boolean>;
  destroy(): void;
}

/** What the SDK takes from a browser (tests pass Node's fetch and timers with in-memory storage). */
export interface Env {
  window?: unknown;
  document?: Document | null;
  location?: { href: string; origin: string };
  navigator?: Partial<Navigator>;
  crypto?: Pick<Crypto, 'getRandomValues'> & Partial<Pick<Crypto, 'randomUUID'>>;
  fetch: typeof fetch;
  setTimeout: (handler: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
  Blob?: typeof Blob;
  CustomEvent?: typeof CustomEvent;
  localStorage?: () => Storage | null;
  sessionStorage?: () => Storage | null;
  now?: () => number;
  random?: () => number;
}

export const VERSION: string;
/** An instance that does nothing until init(). */
export function createTailor(env: Env): Tailor;
/** A started instance for this window (for pages that import the SDK; no global is defined). */
export function start(options?: Options, window?: Window): Tailor;
/** What the classic script does when loaded: options from its tag's data-* attributes. */
export function autoStart(window: Window): Tailor;
export function envFromWindow(window: Window): Env;
/** Whether a URL may be used in content (http(s), mailto, tel, relative). */
export function safeUrl(url: string): boolean;
