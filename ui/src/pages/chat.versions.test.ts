import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from './Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import type { ChatEvent, Conversation } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, model } from '../test/fixtures';

let channel: { onmessage: (e: ChatEvent) => void } | null = null;
const stats = { done_reason: 'stop', prompt_tokens: 7, eval_tokens: 3, prompt_eval_ms: 1, eval_ms: 10, load_ms: 0, tokens_per_second: 300 };

async function reply(text: string) {
  await vi.waitFor(() => expect(channel).not.toBeNull());
  const ch = channel!;
  channel = null;
  ch.onmessage({ kind: 'piece', text, tokens: 2 });
  ch.onmessage({ kind: 'done', stats });
  await vi.waitFor(() => expect(chat.live).toBeNull());
  await tick();
}

const lastReplyText = () => [...document.querySelectorAll("[data-testid='message'][data-role='assistant']")].pop()!.textContent ?? '';

describe('chat: reply versions, branches, and settings before the first message', () => {
  beforeEach(async () => {
    resetMock();
    installDefaults({ models: [model('gemma3:270m')] });
    chat.live = null;
    chat.setConversations([]);
    handlers.start_chat = (a: { onEvent: { onmessage: (e: ChatEvent) => void } }) => void (channel = a.onEvent);
    await app.loadSettings();
    await app.refreshModels();
    await chat.load();
    render(Chat);
    await tick();
  });

  it('‹ 1/2 › switches between the replies, and the shown one is what the next turn sends', async () => {
    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'Hello' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await reply('First answer');
    expect(screen.queryByTestId('versions')).toBeNull();

    await fireEvent.click(screen.getByTestId('regenerate'));
    await reply('Second answer');
    expect(screen.getByTestId('version-label').textContent).toBe('2/2');
    expect(lastReplyText()).toContain('Second answer');

    await fireEvent.click(screen.getByTestId('version-prev'));
    await tick();
    expect(screen.getByTestId('version-label').textContent).toBe('1/2');
    expect(lastReplyText()).toContain('First answer');
    expect((screen.getByTestId('version-prev') as HTMLButtonElement).disabled).toBe(true);
    const saved = callsOf('save_conversation').map((c) => c.args.conversation as Conversation).pop()!;
    expect(saved.messages[1]).toMatchObject({ content: 'First answer', version_index: 0, previous_versions: [{ content: 'Second answer' }] });

    // The next turn continues from the version shown.
    await fireEvent.input(screen.getByTestId('chat-input'), { target: { value: 'And then?' } });
    await fireEvent.keyDown(screen.getByTestId('chat-input'), { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());
    const sent = callsOf('start_chat').pop()!.args.messages as { role: string; content: string }[];
    expect(sent.map((m) => m.content)).toEqual(['Hello', 'First answer', 'And then?']);
  });

  it('edit-and-resend keeps the old branch: ‹ 1/2 › on the message brings back its replies', async () => {
    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'Tell a joke' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await reply('Joke one');
    const userId = chat.current!.messages[0].id;
    expect(chat.editResend(userId, 'Tell a poem')).toBe(true);
    await reply('A poem');
    expect(screen.getByTestId('branch-label').textContent).toBe('2/2');
    expect(lastReplyText()).toContain('A poem');

    await fireEvent.click(screen.getByTestId('branch-prev'));
    await tick();
    expect(screen.getByTestId('branch-label').textContent).toBe('1/2');
    expect(lastReplyText()).toContain('Joke one');
    expect(chat.current!.messages.map((m) => m.content)).toEqual(['Tell a joke', 'Joke one']);
    const saved = callsOf('save_conversation').map((c) => c.args.conversation as Conversation).pop()!;
    expect(saved.messages[0]).toMatchObject({ content: 'Tell a joke', branch_index: 0 });
    await fireEvent.click(screen.getByTestId('branch-next'));
    await tick();
    expect(chat.current!.messages.map((m) => m.content)).toEqual(['Tell a poem', 'A poem']);
  });

  it('Chat settings open before the first message, and what is set there applies to it', async () => {
    expect(chat.current).toBeNull();
    handlers.parameter_limits = () => [];
    await fireEvent.click(screen.getByTestId('chat-settings-toggle'));
    await tick();
    const temp = screen.getByTestId('param-temperature');
    await fireEvent.input(temp, { target: { value: '0.3' } });
    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'Hi' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());
    expect(callsOf('start_chat').pop()!.args.parameters).toMatchObject({ temperature: 0.3 });
  });

  it('an empty conversation describes the model: name, size and context', async () => {
    await fireEvent.click(screen.getByTestId('new-chat'));
    await tick();
    const card = screen.getByTestId('model-card');
    expect(card.textContent).toContain('gemma3:270m');
    expect(card.textContent).toContain('268.10M · Q8_0 · 291 MB');
    expect(screen.getByTestId('model-card-context').textContent!.trim()).toBe("up to 32,768 tokens (the model's default applies)");
    chat.setParameter('num_ctx', 4096);
    await tick();
    expect(screen.getByTestId('model-card-context').textContent!.trim()).toBe("4,096 tokens (this chat's setting)");
  });
});
