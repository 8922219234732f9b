// `npm run bench:stream`: the UI's cost per streamed token, the real path against a baseline,
// measured in the same run and printed as a ratio. Timings are never asserted (machines are
// noisy); correctness is (every token arrives, the DOM shows exactly the streamed text).
//
// Both runs go through the same app code: the Chat page, ChatStore's channel handler, LiveReply
// and its scheduler (at most one DOM update per animation frame and per MIN_FLUSH_INTERVAL_MS,
// with the 250 ms fallback), the flush listeners (scroll to the end, thinking block), with the
// same pieces delivered on the same schedule (real timers). The only difference is the render
// step LiveReply calls on each flush:
//   real path  MarkdownView.render: lex the changed tail, marked → DOMPurify → highlight.js,
//              replace the changed blocks;
//   baseline   the same call replaced by appending the new text to one plain text node.
// So the baseline is throttled exactly like the real path (same scheduler, not a copy of it),
// and the ratio compares like with like.
//
// What is timed, per flush ("step"): LiveReply.flush (the render and its listeners) followed by
// a forced reflow of the rendered container (offsetHeight and getBoundingClientRect() of the
// streamed message, scrollHeight of the message list), between performance.now() readings,
// each step also recorded as performance.measure('bench:stream-step'). In an engine that lays
// out, those reads make style and layout happen inside the timed step.
//
// What it leaves out: this runs in jsdom (vitest.bench.config.ts), which performs no layout or
// paint: offsetHeight and getBoundingClientRect() return 0 and cost nothing. So here the figure
// counts JavaScript and DOM work (Markdown lexing and parsing, highlighting, DOMPurify
// sanitising, DOM mutation, the flush listeners), not style, layout or paint. The run checks
// this (a non-empty container that measures 0 px high) and says so in its output. Even in a
// real engine a forced reflow counts style and layout, never paint or compositing (they happen
// after the task). Also outside the figure: appending pieces between flushes, Svelte updates
// outside a flush, garbage collection that falls outside a step, and the Rust side and IPC.
// The real window's cost per token (with layout and paint) is measured by the end-to-end test
// (bench/desktop.sh).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, cleanup } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from '../pages/Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import { LiveReply, MIN_FLUSH_INTERVAL_MS, resetStreamStats, streamStats } from '../lib/stream';
import { MarkdownView, renderMarkdownHTML } from '../lib/markdown';
import type { ChatEvent } from '../lib/api';
import { handlers, resetMock } from '../test/tauri-mock';
import { installDefaults } from '../test/fixtures';
import { deliver, makePieces, nextFrame } from '../test/stream-driver';

const PIECES = 3000;
const BURST = 8;
const INTERVAL_MS = 5;
const STEP_MEASURE = 'bench:stream-step';

type Mode = 'markdown' | 'text';

interface Run {
  tokens: number;
  /** Pieces per second delivered. */
  rate: number;
  /** Flushes during the stream (DOM updates). */
  steps: number;
  /** Time in steps: LiveReply.flush + the forced reflow. */
  stepMs: number;
  /** The app's own figure: time in the render call only (streamStats().renderMs). */
  renderMs: number;
  /** Mean time between the starts of consecutive steps (the cadence). */
  intervalMs: number;
  /** Whether the environment laid out the rendered container (a non-zero height). */
  laidOut: boolean;
}

/** What the wrapped flush records while a run streams. */
let recording: { el: HTMLElement; list: HTMLElement; steps: number; ms: number; first: number; last: number; sink: number } | null =
  null;

/** Reads that need up-to-date layout: in an engine that lays out, each forces style + layout now. */
function forceReflow(el: HTMLElement, list: HTMLElement): number {
  return el.offsetHeight + el.getBoundingClientRect().height + list.scrollHeight;
}

/** The baseline's render step: append what is new to one plain text node. */
function textNodeRender(this: MarkdownView, text: string): void {
  let node = this.el.lastChild;
  if (!node || node.nodeType !== Node.TEXT_NODE || this.el.childNodes.length !== 1) {
    node = document.createTextNode('');
    this.el.replaceChildren(node);
  }
  const t = node as Text;
  if (text.startsWith(t.data)) t.appendData(text.slice(t.data.length));
  else t.data = text;
}

async function streamThroughChat(pieces: string[], mode: Mode): Promise<Run> {
  // A plain assignment, not a vi spy, so no mock bookkeeping lands inside the baseline's steps.
  const appRender = MarkdownView.prototype.render;
  if (mode === 'text') MarkdownView.prototype.render = textNodeRender;
  try {
    resetMock();
    installDefaults();
    let channel: { onmessage: (e: ChatEvent) => void } | null = null;
    handlers.start_chat = (args: { onEvent: { onmessage: (e: ChatEvent) => void } }) => {
      channel = args.onEvent;
    };
    await app.loadSettings();
    await app.refreshModels();
    chat.setConversations([]);
    const { container } = render(Chat);
    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'go' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());
    await tick();
    const el = container.querySelector<HTMLElement>('.content.md.streaming');
    const list = container.querySelector<HTMLElement>('.messages');
    expect(el).not.toBeNull();
    expect(list).not.toBeNull();

    resetStreamStats();
    recording = { el: el!, list: list!, steps: 0, ms: 0, first: 0, last: 0, sink: 0 };
    const rate = await deliver(pieces, (p) => channel!.onmessage({ kind: 'piece', text: p }), BURST, INTERVAL_MS);
    // Let the last throttled update land (≤ MIN_FLUSH_INTERVAL_MS, then a frame).
    await new Promise((r) => setTimeout(r, MIN_FLUSH_INTERVAL_MS + 20));
    await nextFrame();
    await nextFrame();
    const rec = recording;
    recording = null;
    const stats = { ...streamStats() };

    // Correctness: the streamed DOM shows exactly the text (Markdown: as a full render would).
    const text = pieces.join('');
    expect(el!.isConnected).toBe(true);
    if (mode === 'text') expect(el!.textContent).toBe(text);
    else expect(el!.innerHTML).toBe(renderMarkdownHTML(text));
    const laidOut = el!.offsetHeight > 0 || el!.getBoundingClientRect().height > 0;

    channel!.onmessage({
      kind: 'done',
      stats: { done_reason: 'stop', prompt_tokens: 1, eval_tokens: pieces.length, prompt_eval_ms: 1, eval_ms: 1, load_ms: 0, tokens_per_second: 1 },
    });
    await tick();
    expect(chat.current!.messages[1].content).toBe(text);
    await chat.flushSaves();
    cleanup();
    return {
      tokens: stats.tokens,
      rate,
      steps: rec.steps,
      stepMs: rec.ms,
      renderMs: stats.renderMs,
      intervalMs: rec.steps > 1 ? (rec.last - rec.first) / (rec.steps - 1) : 0,
      laidOut,
    };
  } finally {
    recording = null;
    MarkdownView.prototype.render = appRender;
  }
}

function sum(a: Run, b: Run): Run {
  const steps = a.steps + b.steps;
  return {
    tokens: a.tokens + b.tokens,
    rate: (a.rate + b.rate) / 2,
    steps,
    stepMs: a.stepMs + b.stepMs,
    renderMs: a.renderMs + b.renderMs,
    intervalMs: steps > 2 ? (a.intervalMs * (a.steps - 1) + b.intervalMs * (b.steps - 1)) / (steps - 2) : 0,
    laidOut: a.laidOut || b.laidOut,
  };
}

describe('bench:stream', () => {
  const appFlush = LiveReply.prototype.flush;
  beforeAll(() => {
    // Each flush while a run records is one timed step: the app's flush, then a forced reflow.
    vi.spyOn(LiveReply.prototype, 'flush').mockImplementation(function (this: LiveReply) {
      const r = recording;
      if (!r) return appFlush.call(this);
      const t0 = performance.now();
      appFlush.call(this);
      r.sink += forceReflow(r.el, r.list);
      const t1 = performance.now();
      try {
        performance.measure(STEP_MEASURE, { start: t0, end: t1 });
      } catch {
        /* an engine without the options form of measure(): the running total still counts */
      }
      if (!r.steps) r.first = t0;
      r.last = t0;
      r.steps++;
      r.ms += t1 - t0;
    });
  });
  afterAll(() => {
    vi.restoreAllMocks();
    performance.clearMeasures?.(STEP_MEASURE);
  });

  it('UI cost per token: real streaming path vs plain text node, same throttle, with a forced reflow per step', async () => {
    const pieces = makePieces(PIECES);
    await streamThroughChat(pieces.slice(0, 300), 'text'); // warm-up (JIT)
    await streamThroughChat(pieces.slice(0, 300), 'markdown');
    // ABBA order, so drift during the run weighs on both sides alike.
    const b1 = await streamThroughChat(pieces, 'text');
    const r1 = await streamThroughChat(pieces, 'markdown');
    const r2 = await streamThroughChat(pieces, 'markdown');
    const b2 = await streamThroughChat(pieces, 'text');
    const base = sum(b1, b2);
    const real = sum(r1, r2);

    const per = (ms: number, r: Run) => ms / Math.max(r.tokens, 1);
    const ratio = (realMs: number, baseMs: number) => (per(realMs, real) / Math.max(per(baseMs, base), 1e-9)).toFixed(1);
    const line = (name: string, r: Run) =>
      `${name.padEnd(22)} ${r.tokens} tokens at ${r.rate.toFixed(0)}/s, ${r.steps} flushes (one per ${r.intervalMs.toFixed(0)} ms), ` +
      `step ${r.stepMs.toFixed(2)} ms = ${per(r.stepMs, r).toFixed(5)} ms/token (render call alone ${per(r.renderMs, r).toFixed(5)} ms/token)`;
    const layout = real.laidOut || base.laidOut
      ? 'layout: counted (the forced reflow inside each step laid out a non-empty container); paint and compositing are not'
      : 'layout: NOT counted. jsdom performs no layout or paint (the non-empty container measures 0 px): the forced reflow ' +
        'costs nothing here, so this figure counts DOM work, Markdown parsing, highlighting and sanitising, not style, layout or paint';
    console.log(
      [
        '',
        `bench:stream (jsdom, real timers, bursts of ${BURST} pieces every ${INTERVAL_MS} ms; 2 runs each, ABBA)`,
        `both paths: Chat page → ChatStore → LiveReply, throttled by LiveReply (≤ 1 update per frame and per ${MIN_FLUSH_INTERVAL_MS} ms);`,
        'only the render step differs. Step = LiveReply.flush (render + listeners) + forced reflow (offsetHeight, getBoundingClientRect, scrollHeight)',
        line('real path (Markdown)', real),
        line('baseline (text node)', base),
        `ratio real/baseline per token: ${ratio(real.stepMs, base.stepMs)}x for the step (render call alone: ${ratio(real.renderMs, base.renderMs)}x)`,
        layout,
        '',
      ].join('\n'),
    );
    expect(real.tokens).toBe(2 * pieces.length);
    expect(base.tokens).toBe(2 * pieces.length);
    expect(real.steps).toBeGreaterThan(0);
    expect(base.steps).toBeGreaterThan(0);
  });
});
