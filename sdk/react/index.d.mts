/** Types of @tailor/sdk/react (react/index.mjs). */
import type { ReactNode } from 'react';
import type { Decision, Options, Tailor } from '@tailor/sdk';

export interface TailorProviderProps extends Options {
  /** An instance from start(); without it the provider starts one in the browser with the options. */
  client?: Tailor;
  children?: ReactNode;
}

export function TailorProvider(props: TailorProviderProps): ReactNode;

export type SlotContent =
  | { kind: 'text'; text: string }
  | { kind: 'html'; nodes: Node[] }
  | { kind: 'image'; src: string; alt: string; href: string | null; width?: number; height?: number }
  | { kind: 'json'; data: unknown };

export interface TailorSlotState {
  /** 'pending' on the server and in the first render; then 'personalized' or 'fallback'. */
  state: 'pending' | 'personalized' | 'fallback';
  decision: Decision | null;
  content: SlotContent | null;
  /** Sends click feedback for the decision shown (once per decision). */
  onClick: () => void;
}

export function useTailorSlot(name: string): TailorSlotState;

export interface TailorSlotProps {
  name: string;
  /** Shown until a decision arrives, and for good on timeout, error or no consent. */
  fallback?: ReactNode;
  children?: ReactNode;
  /** Reserves the slot's box: px, or any CSS length. Or reserve it with `className`. */
  height?: number | string;
  className?: string;
  /** The element to render, 'div' by default. */
  as?: string;
  renderJson?: (data: unknown, decision: Decision) => ReactNode;
}

export function TailorSlot(props: TailorSlotProps): ReactNode;
