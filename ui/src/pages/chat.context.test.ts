import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from './Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import type { ChatEvent, ChatStats, Conversation, StoredMessage } from '../lib/api';
import { handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, model } from '../test/fixtures';
import { contextUsage, droppedNote } from '../lib/context';

let channel: { onmessage: (e: ChatEvent) => void } | null = null;
// What the backend's final "done" event carries (desktop ChatStats).
const stats = (over: Partial<ChatStats> = {}): ChatStats => ({
  done_reason: 'stop', prompt_tokens: 700, eval_tokens: 124, prompt_eval_ms: 1, eval_ms: 10, load_ms: 0, tokens_per_second: 300,
  runs_on: '100% CPU', num_ctx: 2048, prompt_budget: 1792, dropped_messages: 0, ...over,
});
const msg = (role: 'user' | 'assistant', content: string, s?: ChatStats): StoredMessage => ({ id: `${role}-${content}`, role, content, created: '2024-01-01T00:00:00Z', stats: s ?? null });

async function setup(conversations: Conversation[] = []) {
  resetMock();
  installDefaults({ conversations, models: [model('gemma3:270m')] });
  channel = null;
  handlers.start_chat = (args: { onEvent: { onmessage: (e: ChatEvent) => void } }) => {
    channel = args.onEvent;
  };
  await app.loadSettings();
  await app.refreshModels();
  await chat.load();
  render(Chat);
  await tick();
}

describe('context usage', () => {
  beforeEach(() => {
    chat.live?.finish();
    chat.live = null;
    chat.setConversations([]);
  });

  it('is computed from the latest reply that reported its context', () => {
    expect(contextUsage([msg('user', 'hi')])).toBeNull();
    const old = stats({ prompt_tokens: 10, eval_tokens: 5 });
    expect(contextUsage([msg('user', 'a'), msg('assistant', 'b', old), msg('user', 'c'), msg('assistant', 'd', stats())])).toEqual({ used: 824, total: 2048, budget: 1792, level: 'ok' });
    expect(contextUsage([msg('assistant', 'x', stats({ prompt_tokens: 1600, eval_tokens: 50 }))])?.level).toBe('near');
    expect(contextUsage([msg('assistant', 'x', stats({ prompt_tokens: 1700, eval_tokens: 200 }))])?.level).toBe('over');
    // Saved before the backend reported the context: no bar rather than a wrong one.
    const { num_ctx: _, ...older } = stats();
    expect(contextUsage([msg('assistant', 'x', older as ChatStats)])).toBeNull();
  });

  it('says how many earlier messages were left out', () => {
    expect(droppedNote(stats())).toBeNull();
    expect(droppedNote(stats({ dropped_messages: 1 }))).toBe('1 earlier message is outside the context');
    expect(droppedNote(stats({ dropped_messages: 3 }))).toBe('3 earlier messages are outside the context');
  });

  it('the bar under the composer shows the backend counts after a reply, warns near the limit, and the thread says what was left out', async () => {
    await setup();
    expect(screen.queryByTestId('context-bar')).toBeNull();
    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'Hello' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());
    channel!.onmessage({ kind: 'piece', text: 'Hi there', tokens: 2 });
    channel!.onmessage({ kind: 'done', stats: stats() });
    await vi.waitFor(() => expect(screen.getByTestId('context-numbers').textContent).toBe('Context 824 / 2,048 tokens (40%)'));
    const meter = screen.getByRole('meter', { name: 'Context used' });
    expect([meter.getAttribute('aria-valuenow'), meter.getAttribute('aria-valuemax')]).toEqual(['824', '2048']);
    expect(screen.queryByTestId('context-warning')).toBeNull();
    expect(screen.queryByTestId('context-dropped')).toBeNull();

    channel = null;
    const again = screen.getByTestId('chat-input'); // the composer is new once the chat exists
    await fireEvent.input(again, { target: { value: 'More' } });
    await fireEvent.keyDown(again, { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());
    channel!.onmessage({ kind: 'piece', text: 'Long answer', tokens: 2 });
    channel!.onmessage({ kind: 'done', stats: stats({ prompt_tokens: 1750, eval_tokens: 200, dropped_messages: 3 }) });
    await vi.waitFor(() => expect(screen.getByTestId('context-warning').textContent).toContain('left out of the next reply'));
    expect(screen.getByTestId('context-bar').dataset.level).toBe('over');
    const notes = screen.getAllByTestId('context-dropped');
    expect(notes.map((n) => n.textContent)).toEqual(['3 earlier messages are outside the context']);
    // The note stands just before the reply it concerns.
    expect(notes[0].nextElementSibling?.textContent).toContain('Long answer');
  });
});
