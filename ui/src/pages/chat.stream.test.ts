// The synthetic stream test: the real chat streaming path (Chat page → ChatStore → channel
// handler → LiveReply → MarkdownView) fed ≥2000 pieces at ≥200 pieces/s with real timers.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from './Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import { renderMarkdownHTML } from '../lib/markdown';
import { MEASURE_NAME, MIN_FLUSH_INTERVAL_MS, resetStreamStats, streamStats } from '../lib/stream';
import type { ChatEvent, Conversation } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults } from '../test/fixtures';
import { deliver, makePieces } from '../test/stream-driver';

let channel: { onmessage: (e: ChatEvent) => void } | null = null;

beforeEach(async () => {
  resetMock();
  installDefaults();
  channel = null;
  handlers.start_chat = (args: { onEvent: { onmessage: (e: ChatEvent) => void } }) => {
    channel = args.onEvent;
  };
  await app.loadSettings();
  await app.refreshModels();
  chat.setConversations([]);
});

afterEach(async () => {
  await chat.flushSaves();
});

function assistantEl(): HTMLElement {
  const all = screen.getAllByTestId('message').filter((m) => m.dataset.role === 'assistant');
  return all[all.length - 1];
}

describe('synthetic stream', () => {
  it('renders ≥2000 pieces at ≥200/s in order, none lost, and reports the UI cost per token', async () => {
    render(Chat);
    const input = screen.getByTestId('chat-input') as HTMLTextAreaElement;
    await fireEvent.input(input, { target: { value: 'Write a long answer' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());

    const pieces = makePieces(2400);
    const full = pieces.join('');
    expect(pieces.length).toBeGreaterThanOrEqual(2000);
    resetStreamStats();
    performance.clearMeasures?.(MEASURE_NAME);

    let delivered = 0;
    let checkedMidway = false;
    const rate = await deliver(pieces, (p) => {
      channel!.onmessage({ kind: 'piece', text: p });
      delivered++;
      if (!checkedMidway && delivered === 1200) {
        checkedMidway = true;
        const el = assistantEl();
        expect(el.dataset.streaming).toBe('true');
        expect(screen.getByTestId('stop')).toBeTruthy();
      }
    });
    expect(rate).toBeGreaterThanOrEqual(200);

    // Still streaming: within one throttled update the DOM shows exactly the whole text so far.
    const streamingContent = assistantEl().querySelector('[data-testid="message-content"]') as HTMLElement;
    await vi.waitFor(() => expect(streamingContent.innerHTML).toBe(renderMarkdownHTML(full)), { timeout: MIN_FLUSH_INTERVAL_MS * 4 });
    expect(assistantEl().dataset.streaming).toBe('true');

    // The periodic saves carried growing prefixes of the text, marked streaming.
    const streamingSaves = callsOf('save_conversation')
      .map((c) => (c.args.conversation as Conversation).messages[1])
      .filter((m) => m?.streaming);
    expect(streamingSaves.length).toBeGreaterThan(3);
    let prev = '';
    for (const m of streamingSaves) {
      expect(full.startsWith(m.content)).toBe(true);
      expect(m.content.length).toBeGreaterThanOrEqual(prev.length);
      prev = m.content;
    }

    const stats = streamStats();
    const measures = performance.getEntriesByName?.(MEASURE_NAME) ?? [];
    channel!.onmessage({
      kind: 'done',
      stats: { done_reason: 'stop', prompt_tokens: 12, eval_tokens: pieces.length, prompt_eval_ms: 5, eval_ms: 1000, load_ms: 0, tokens_per_second: 240.5 },
    });
    await tick();

    // Finished: the stored text is exactly the concatenation, and so is what is shown.
    const el = assistantEl();
    expect(el.dataset.streaming).toBe('false');
    expect(chat.current!.messages[1].content).toBe(full);
    const content = el.querySelector('[data-testid="message-content"]') as HTMLElement;
    expect(content.innerHTML).toBe(renderMarkdownHTML(full));
    const expectedText = (() => {
      const d = document.createElement('div');
      d.innerHTML = renderMarkdownHTML(full);
      return d.textContent;
    })();
    expect(content.textContent).toBe(expectedText);
    // Every multi-byte sample made it through.
    for (const s of ['Résumé', '日本語のテキスト', '👋🏽🚀', 'héllo, 世界', 'Привет мир']) expect(content.textContent).toContain(s);
    expect(el.querySelector('[data-testid="message-stats"]')!.textContent).toContain('240.5 tokens/s');
    expect(screen.queryByTestId('stop')).toBeNull();

    await chat.flushSaves();
    const last = callsOf('save_conversation').at(-1)!.args.conversation as Conversation;
    expect(last.messages[1]).toMatchObject({ content: full, streaming: false });

    const perToken = stats.renderMs / stats.tokens;
    console.log(
      `[stream] ${stats.tokens} pieces at ${rate.toFixed(0)} pieces/s, ${full.length} chars; ` +
        `${stats.flushes} DOM flushes (${measures.length} performance measures); ` +
        `UI cost ${stats.renderMs.toFixed(1)} ms total = ${perToken.toFixed(4)} ms/token (jsdom)`,
    );
    expect(stats.tokens).toBe(pieces.length);
    expect(stats.flushes).toBeLessThan(pieces.length / 2); // batched, not per piece
  });
});
