// One streaming reply: pieces are appended to `text` as they arrive (in order, none lost) and the
// DOM is updated at most once per animation frame, and at most every MIN_FLUSH_INTERVAL_MS, by re-rendering only the changed tail of the
// message being streamed (see MarkdownView). Each flush's UI cost is recorded with
// performance.measure('airlock:stream-render') and in window.__airlockStreamStats.
import { MarkdownView } from './markdown';

export interface StreamStats {
  /** Pieces received (one piece ≈ one token). */
  tokens: number;
  /** Milliseconds spent updating the DOM of streamed messages. */
  renderMs: number;
  /** DOM updates. */
  flushes: number;
}

export const MEASURE_NAME = 'airlock:stream-render';

declare global {
  interface Window {
    __airlockStreamStats?: StreamStats;
  }
}

export function streamStats(): StreamStats {
  const w = (typeof window !== 'undefined' ? window : globalThis) as unknown as Window;
  if (!w.__airlockStreamStats) w.__airlockStreamStats = { tokens: 0, renderMs: 0, flushes: 0 };
  return w.__airlockStreamStats;
}

export function resetStreamStats(): void {
  const s = streamStats();
  s.tokens = 0;
  s.renderMs = 0;
  s.flushes = 0;
}

function measure(start: number, end: number, tokens: number): void {
  const p = globalThis.performance as Performance | undefined;
  if (!p || typeof p.measure !== 'function') return;
  try {
    p.measure(MEASURE_NAME, { start, end, detail: { tokens } });
  } catch {
    /* an engine without the options form of measure(): the running total still counts */
  }
}

function clearMeasures(): void {
  try {
    globalThis.performance?.clearMeasures?.(MEASURE_NAME);
  } catch {
    /* ignore */
  }
}

const raf: (cb: () => void) => number =
  typeof requestAnimationFrame === 'function' ? (cb) => requestAnimationFrame(cb) : (cb) => setTimeout(cb, 16) as unknown as number;
const caf: (id: number) => void =
  typeof cancelAnimationFrame === 'function' ? (id) => cancelAnimationFrame(id) : (id) => clearTimeout(id);

/** When frames do not come (a hidden window), flush at least this often. */
const FALLBACK_MS = 250;
/**
 * At most one DOM update per this many ms while streaming. Each update costs the web view a
 * style, layout and paint, which competes with the model for the same cores; ~12 updates/s
 * still reads as smooth.
 */
export const MIN_FLUSH_INTERVAL_MS = 80;

export class LiveReply {
  text = '';
  /** The model's reasoning so far (shown folded above the answer, never sent back). */
  thinking = '';
  pieces = 0;
  /** When the reply was asked for (the waiting line's timer). */
  readonly started = Date.now();
  /** The model, and whether it was not loaded when the reply was asked for ("Loading …"). */
  model = '';
  loading = false;
  /** Pieces since the last periodic save. */
  dirty = false;
  finished = false;
  stopRequested = false;
  /** Set by the owner: called once when the reply finishes. */
  onFinished?: () => void;

  private view: MarkdownView | null = null;
  private frame = 0;
  private fallback: ReturnType<typeof setTimeout> | null = null;
  private throttle: ReturnType<typeof setTimeout> | null = null;
  private lastFlush = -Infinity;
  private unflushed = 0;
  private listeners = new Set<() => void>();
  private thinkingListeners = new Set<(thinking: string) => void>();

  constructor(
    readonly convId: string,
    readonly msgId: string,
    readonly requestId: string,
  ) {
    clearMeasures(); // keep the buffer to the current reply
  }

  /** Appends the text of `tokens` tokens (one piece may carry several). */
  append(piece: string, tokens = 1): void {
    if (this.finished || !piece) return;
    this.text += piece;
    this.pieces += tokens;
    this.unflushed += tokens;
    this.dirty = true;
    streamStats().tokens += tokens;
    this.schedule();
  }

  /** Appends reasoning text; listeners (the thinking block) get the whole thinking so far. */
  appendThinking(piece: string): void {
    if (this.finished || !piece) return;
    this.thinking += piece;
    this.dirty = true;
    for (const fn of this.thinkingListeners) fn(this.thinking);
  }

  /** Called with the thinking so far whenever it grows; returns the unsubscribe. */
  onThinking(fn: (thinking: string) => void): () => void {
    this.thinkingListeners.add(fn);
    return () => this.thinkingListeners.delete(fn);
  }

  /** Renders into `el` from now on (the message element of this reply). Returns a detach function. */
  attach(el: HTMLElement): () => void {
    const view = new MarkdownView(el);
    this.view = view;
    this.flush();
    return () => {
      if (this.view === view) this.view = null;
    };
  }

  /** Called after each flush (e.g. to keep the list scrolled to the bottom). */
  onFlush(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private schedule(): void {
    if (!this.view || this.frame || this.throttle) return;
    const wait = this.lastFlush + MIN_FLUSH_INTERVAL_MS - performance.now();
    if (wait > 0) {
      this.throttle = setTimeout(() => {
        this.throttle = null;
        this.frame = raf(() => this.flush());
      }, wait);
    } else {
      this.frame = raf(() => this.flush());
    }
    if (!this.fallback) this.fallback = setTimeout(() => this.flush(), FALLBACK_MS);
  }

  /** Cancels every pending update. */
  private cancelScheduled(): void {
    if (this.frame) caf(this.frame);
    this.frame = 0;
    if (this.fallback) clearTimeout(this.fallback);
    this.fallback = null;
    if (this.throttle) clearTimeout(this.throttle);
    this.throttle = null;
  }

  /** Brings the DOM up to date with `text` now. */
  flush(): void {
    this.cancelScheduled();
    const view = this.view;
    if (!view) return;
    const t0 = performance.now();
    view.render(this.text);
    const t1 = performance.now();
    this.lastFlush = t1;
    const s = streamStats();
    s.renderMs += t1 - t0;
    s.flushes++;
    measure(t0, t1, this.unflushed);
    this.unflushed = 0;
    for (const fn of this.listeners) fn();
  }

  /** Stops scheduling; the final text is rendered by the finished message. */
  finish(): void {
    if (this.view && this.unflushed) this.flush();
    this.finished = true;
    this.cancelScheduled();
    this.view = null;
    this.listeners.clear();
    this.thinkingListeners.clear();
  }
}
