// UI cost per streamed token: the app's real streaming path (Chat page → ChatStore → channel
// handler → LiveReply → MarkdownView, batched per animation frame) against a baseline that
// appends the same pieces, batched the same way, to a plain text node. Same pieces, same
// delivery schedule (real timers), same run. Prints ms/token for both and the ratio.
import { describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, cleanup } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from '../pages/Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import { resetStreamStats, streamStats } from '../lib/stream';
import type { ChatEvent } from '../lib/api';
import { handlers, resetMock } from '../test/tauri-mock';
import { installDefaults } from '../test/fixtures';
import { deliver, makePieces, nextFrame } from '../test/stream-driver';

const PIECES = 3000;
const BURST = 8;
const INTERVAL_MS = 5;

async function realPath(pieces: string[]): Promise<{ ms: number; tokens: number; flushes: number; rate: number }> {
  resetMock();
  installDefaults();
  let channel: { onmessage: (e: ChatEvent) => void } | null = null;
  handlers.start_chat = (args: { onEvent: { onmessage: (e: ChatEvent) => void } }) => {
    channel = args.onEvent;
  };
  await app.loadSettings();
  await app.refreshModels();
  chat.setConversations([]);
  render(Chat);
  const input = screen.getByTestId('chat-input');
  await fireEvent.input(input, { target: { value: 'go' } });
  await fireEvent.keyDown(input, { key: 'Enter' });
  await vi.waitFor(() => expect(channel).not.toBeNull());
  resetStreamStats();
  const rate = await deliver(pieces, (p) => channel!.onmessage({ kind: 'piece', text: p }), BURST, INTERVAL_MS);
  await nextFrame();
  await nextFrame();
  const s = { ...streamStats() };
  channel!.onmessage({ kind: 'done', stats: { done_reason: 'stop', prompt_tokens: 1, eval_tokens: pieces.length, prompt_eval_ms: 1, eval_ms: 1, load_ms: 0, tokens_per_second: 1 } });
  await tick();
  expect(chat.current!.messages[1].content).toBe(pieces.join(''));
  await chat.flushSaves();
  cleanup();
  return { ms: s.renderMs, tokens: s.tokens, flushes: s.flushes, rate };
}

async function baseline(pieces: string[]): Promise<{ ms: number; tokens: number; flushes: number; rate: number }> {
  const div = document.createElement('div');
  document.body.append(div);
  const node = document.createTextNode('');
  div.append(node);
  let pending = '';
  let frame = 0;
  let ms = 0;
  let tokens = 0;
  let flushes = 0;
  const flush = () => {
    frame = 0;
    const t0 = performance.now();
    node.appendData(pending);
    pending = '';
    ms += performance.now() - t0;
    flushes++;
  };
  const rate = await deliver(
    pieces,
    (p) => {
      pending += p;
      tokens++;
      if (!frame) frame = requestAnimationFrame(flush);
    },
    BURST,
    INTERVAL_MS,
  );
  await nextFrame();
  await nextFrame();
  expect(node.data).toBe(pieces.join(''));
  div.remove();
  return { ms, tokens, flushes, rate };
}

describe('bench:stream', () => {
  it('UI cost per token: real streaming path vs plain text node', async () => {
    const pieces = makePieces(PIECES);
    await baseline(pieces.slice(0, 300)); // warm-up (JIT)
    await realPath(pieces.slice(0, 300));
    const base = await baseline(pieces);
    const real = await realPath(pieces);
    const basePer = base.ms / base.tokens;
    const realPer = real.ms / real.tokens;
    const line = (name: string, r: typeof real) =>
      `${name.padEnd(26)} ${r.tokens} tokens at ${r.rate.toFixed(0)}/s, ${r.flushes} flushes, ${r.ms.toFixed(2)} ms total, ${(r.ms / r.tokens).toFixed(5)} ms/token`;
    console.log(
      [
        '',
        'bench:stream (jsdom, real timers, bursts of ' + BURST + ' pieces every ' + INTERVAL_MS + ' ms)',
        line('real path (Markdown)', real),
        line('baseline (text node)', base),
        `ratio real/baseline: ${(realPer / Math.max(basePer, 1e-9)).toFixed(1)}x`,
        '',
      ].join('\n'),
    );
    expect(real.tokens).toBe(pieces.length);
  });
});
