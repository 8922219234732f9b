import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from './Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import type { ChatEvent, Conversation } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, model } from '../test/fixtures';
import { INTERRUPTED } from '../lib/conversation';

let channel: { onmessage: (e: ChatEvent) => void } | null = null;
const stats = { done_reason: 'stop', prompt_tokens: 7, eval_tokens: 3, prompt_eval_ms: 1, eval_ms: 10, load_ms: 0, tokens_per_second: 300 };

async function setup(conversations: Conversation[] = [], models = [model('gemma3:270m'), model('llama3.2:1b'), model('broken', false)]) {
  resetMock();
  installDefaults({ conversations, models });
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

async function send(text: string) {
  const input = screen.getByTestId('chat-input');
  await fireEvent.input(input, { target: { value: text } });
  await fireEvent.keyDown(input, { key: 'Enter' });
  await vi.waitFor(() => expect(channel).not.toBeNull());
}

function saved(): Conversation[] {
  return callsOf('save_conversation').map((c) => c.args.conversation as Conversation);
}

const stored = (over: Partial<Conversation> = {}): Conversation => ({
  id: 'c1',
  title: 'Old chat',
  model: 'gemma3:270m',
  system_prompt: '',
  parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null },
  messages: [],
  draft: '',
  created: '2024-01-01T00:00:00Z',
  updated: '2024-01-01T00:00:00Z',
  ...over,
});

describe('chat', () => {
  beforeEach(() => {
    chat.live?.finish();
    chat.live = null;
    chat.setConversations([]);
  });

  it('lists only runnable models in the picker', async () => {
    await setup();
    const picker = screen.getByTestId('model-picker') as HTMLSelectElement;
    expect(Array.from(picker.options).map((o) => o.value)).toEqual(['gemma3:270m', 'llama3.2:1b']);
    await fireEvent.change(picker, { target: { value: 'llama3.2:1b' } });
    expect(callsOf('set_ui_state').at(-1)!.args.ui).toMatchObject({ last_model: 'llama3.2:1b' });
  });

  it('sends: saves at once (reply streaming), titles the chat, streams, saves the finished reply', async () => {
    await setup();
    await send('Why is the sky blue? Please explain it in detail to me.');
    const first = saved()[0];
    expect(first.title).toBe('Why is the sky blue? Please explain it…');
    expect(first.messages.map((m) => [m.role, m.content, !!m.streaming])).toEqual([
      ['user', 'Why is the sky blue? Please explain it in detail to me.', false],
      ['assistant', '', true],
    ]);
    const start = callsOf('start_chat')[0].args;
    expect(start.model).toBe('gemma3:270m');
    expect(start.messages).toEqual([{ role: 'user', content: 'Why is the sky blue? Please explain it in detail to me.' }]);
    expect(start.parameters).toEqual({ temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null, min_p: null, repeat_penalty: null, seed: null, think: null });

    channel!.onmessage({ kind: 'piece', text: 'Rayleigh ' });
    channel!.onmessage({ kind: 'piece', text: '**scattering**.' });
    channel!.onmessage({ kind: 'done', stats });
    await tick();
    const msgs = screen.getAllByTestId('message');
    expect(msgs.map((m) => m.dataset.role)).toEqual(['user', 'assistant']);
    expect(msgs[1].dataset.streaming).toBe('false');
    expect(within(msgs[1]).getByTestId('message-content').innerHTML).toContain('<strong>scattering</strong>');
    expect(within(msgs[1]).getByTestId('message-stats').textContent).toMatch(/300\.0 tokens\/s · 7 prompt tokens · 3 generated tokens/);
    await chat.flushSaves();
    expect(saved().at(-1)!.messages[1]).toMatchObject({ content: 'Rayleigh **scattering**.', streaming: false, stats });
    expect(screen.getAllByTestId('conversation')).toHaveLength(1);
  });

  it('sends the system prompt first and the parameters', async () => {
    await setup([stored({ system_prompt: 'Be brief.', parameters: { temperature: 0.2, top_p: null, top_k: 40, num_predict: 64, num_ctx: 2048 } })]);
    await send('hi');
    const start = callsOf('start_chat')[0].args;
    expect(start.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hi' },
    ]);
    expect(start.parameters).toEqual({ temperature: 0.2, top_p: null, top_k: 40, num_predict: 64, num_ctx: 2048, min_p: null, repeat_penalty: null, seed: null, think: null });
  });

  it('shows an error inline with Retry, which asks again', async () => {
    await setup();
    await send('hello');
    channel!.onmessage({ kind: 'piece', text: 'partial' });
    channel!.onmessage({ kind: 'error', message: 'model process exited (signal 9)' });
    await tick();
    expect(screen.getByTestId('message-error').textContent).toContain('model process exited');
    channel = null;
    await fireEvent.click(screen.getByTestId('retry'));
    await vi.waitFor(() => expect(channel).not.toBeNull());
    expect(callsOf('start_chat')).toHaveLength(2);
    expect(callsOf('start_chat')[1].args.messages).toEqual([{ role: 'user', content: 'hello' }]);
    expect(screen.queryByTestId('message-error')).toBeNull();
  });

  it('a failed start (e.g. busy) is shown inline', async () => {
    await setup();
    handlers.start_chat = () => {
      throw { code: 'busy', message: 'The model is busy; try again.' };
    };
    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'x' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await vi.waitFor(() => expect(screen.getByTestId('message-error').textContent).toContain('busy'));
  });

  it('Stop calls stop_chat and the cancel reply is kept', async () => {
    await setup();
    await send('count');
    channel!.onmessage({ kind: 'piece', text: '1 2 3' });
    await tick();
    await fireEvent.click(screen.getByTestId('stop'));
    expect(callsOf('stop_chat')).toHaveLength(1);
    channel!.onmessage({ kind: 'done', stats: { ...stats, done_reason: 'cancel' } });
    await tick();
    expect(screen.queryByTestId('stop')).toBeNull();
    expect(screen.getByTestId('message-stats').textContent).toContain('stopped');
    expect(chat.current!.messages[1].content).toBe('1 2 3');
  });

  it('Regenerate replaces the last reply', async () => {
    await setup([
      stored({
        messages: [
          { id: 'u1', role: 'user', content: 'a', created: '' },
          { id: 'a1', role: 'assistant', content: 'first answer', created: '' },
        ],
      }),
    ]);
    await fireEvent.click(screen.getByTestId('regenerate'));
    await vi.waitFor(() => expect(channel).not.toBeNull());
    expect(callsOf('start_chat')[0].args.messages).toEqual([{ role: 'user', content: 'a' }]);
    channel!.onmessage({ kind: 'piece', text: 'second' });
    channel!.onmessage({ kind: 'done', stats });
    await tick();
    expect(screen.getAllByTestId('message-content').map((e) => e.textContent!.trim())).toEqual(['a', 'second']);
  });

  it('edit-and-resend drops what follows the message', async () => {
    await setup([
      stored({
        messages: [
          { id: 'u1', role: 'user', content: 'one', created: '' },
          { id: 'a1', role: 'assistant', content: 'r1', created: '' },
          { id: 'u2', role: 'user', content: 'two', created: '' },
          { id: 'a2', role: 'assistant', content: 'r2', created: '' },
        ],
      }),
    ]);
    const firstUser = screen.getAllByTestId('message')[0];
    await fireEvent.click(within(firstUser).getByTestId('edit'));
    const box = screen.getByLabelText('Edit message');
    await fireEvent.input(box, { target: { value: 'ONE' } });
    await fireEvent.keyDown(box, { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());
    expect(callsOf('start_chat')[0].args.messages).toEqual([{ role: 'user', content: 'ONE' }]);
    expect(screen.getAllByTestId('message')).toHaveLength(2);
  });

  it('restores a reply interrupted by a crash: text kept, marked interrupted, Regenerate offered', async () => {
    await setup([
      stored({
        id: 'older',
        updated: '2024-01-01T00:00:00Z',
      }),
      stored({
        id: 'newer',
        title: 'Crashed',
        updated: '2024-02-01T00:00:00Z',
        messages: [
          { id: 'u1', role: 'user', content: 'tell me', created: '' },
          { id: 'a1', role: 'assistant', content: 'Once upon a', created: '', streaming: true },
        ],
      }),
    ]);
    // The most recently updated conversation is open.
    expect(chat.currentId).toBe('newer');
    const reply = screen.getAllByTestId('message')[1];
    expect(reply.dataset.streaming).toBe('false');
    expect(within(reply).getByTestId('message-content').textContent!.trim()).toBe('Once upon a');
    expect(within(reply).getByTestId('message-error').textContent).toContain(INTERRUPTED);
    expect(within(reply).getByTestId('retry')).toBeTruthy();
    expect(within(reply).getByTestId('regenerate')).toBeTruthy();
    expect(screen.queryByTestId('stop')).toBeNull();
  });

  it('saves the draft after typing stops', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      await setup([stored()]);
      await fireEvent.input(screen.getByTestId('chat-input'), { target: { value: 'half a thought' } });
      expect(callsOf('save_conversation')).toHaveLength(0);
      vi.advanceTimersByTime(350);
    } finally {
      vi.useRealTimers();
    }
    await chat.flushSaves();
    expect(saved().at(-1)!.draft).toBe('half a thought');
  });

  it('new, search, rename and delete (with confirmation)', async () => {
    await setup([
      stored({ id: 'a', title: 'Rust questions', updated: '2024-01-02T00:00:00Z', messages: [{ id: 'm', role: 'user', content: 'lifetimes?', created: '' }] }),
      stored({ id: 'b', title: 'Cooking', updated: '2024-01-03T00:00:00Z', messages: [{ id: 'n', role: 'user', content: 'pasta', created: '' }] }),
    ]);
    expect(screen.getAllByTestId('conversation').map((e) => e.dataset.id)).toEqual(['b', 'a']);
    await fireEvent.input(screen.getByTestId('conversation-search'), { target: { value: 'lifetimes' } });
    expect(screen.getAllByTestId('conversation').map((e) => e.dataset.id)).toEqual(['a']);
    await fireEvent.input(screen.getByTestId('conversation-search'), { target: { value: '' } });

    await fireEvent.click(screen.getByLabelText('Rename Cooking'));
    const title = screen.getByLabelText('Conversation title');
    await fireEvent.input(title, { target: { value: 'Recipes' } });
    await fireEvent.keyDown(title, { key: 'Enter' });
    await chat.flushSaves();
    expect(saved().at(-1)).toMatchObject({ id: 'b', title: 'Recipes' });

    await fireEvent.click(screen.getByLabelText('Delete Recipes'));
    expect(callsOf('delete_conversation')).toHaveLength(0);
    await fireEvent.click(screen.getByTestId('confirm-yes'));
    await vi.waitFor(() => expect(callsOf('delete_conversation')).toHaveLength(1));
    expect(callsOf('delete_conversation')[0].args).toEqual({ id: 'b' });
    await tick();
    expect(screen.getAllByTestId('conversation').map((e) => e.dataset.id)).toEqual(['a']);

    await fireEvent.click(screen.getByTestId('new-chat'));
    expect(screen.getAllByTestId('conversation')).toHaveLength(2);
    expect(screen.queryAllByTestId('message')).toHaveLength(0);
  });
});
