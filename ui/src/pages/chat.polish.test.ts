// The chat's model state, thinking, conversation files and first run (issue 17 / 18).
import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from './Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import { modelState } from '../lib/state/models.svelte';
import { transfers } from '../lib/state/transfer.svelte';
import { routeDrop } from '../lib/drop';
import type { ChatEvent, Conversation, LoadedModel, ModelDetails } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, model } from '../test/fixtures';

let channel: { onmessage: (e: ChatEvent) => void } | null = null;
const stats = { done_reason: 'stop', prompt_tokens: 7, eval_tokens: 3, prompt_eval_ms: 1, eval_ms: 10, load_ms: 0, tokens_per_second: 300 };

const loaded = (name: string): LoadedModel => ({ name, runs_on: '100% CPU (no GPU)', devices: [], ram_bytes: 300_000_000, context_length: 4096, expires_in_s: 290 });

async function setup(models: ModelDetails[] = [model('gemma3:270m')], conversations: Conversation[] = []) {
  resetMock();
  installDefaults({ models, conversations });
  handlers.start_chat = (a: { onEvent: { onmessage: (e: ChatEvent) => void } }) => void (channel = a.onEvent);
  chat.live = null;
  modelState.loaded = [];
  await app.loadSettings();
  await app.refreshModels();
  await chat.load();
  app.ready = true;
  render(Chat);
  await tick();
}

async function send(text: string) {
  const input = screen.getByTestId('chat-input');
  await fireEvent.input(input, { target: { value: text } });
  await fireEvent.keyDown(input, { key: 'Enter' });
  await vi.waitFor(() => expect(channel).not.toBeNull());
}

const lastReply = () => screen.getAllByTestId('message').filter((m) => m.dataset.role === 'assistant').pop()!;

describe('model state in the chat', () => {
  beforeEach(() => setup());

  it('says which model loads and for how long, then reads the prompt once it is loaded', async () => {
    await send('Hello');
    const waiting = within(lastReply()).getByTestId('typing');
    expect(waiting.getAttribute('role')).toBe('status');
    expect(within(waiting).getByTestId('waiting-text').textContent).toBe('Loading gemma3:270m…');
    const first = within(waiting).getByTestId('waiting-elapsed').textContent!;
    expect(first).toMatch(/^\d+\.\d s$/);
    await vi.waitFor(() => expect(within(waiting).getByTestId('waiting-elapsed').textContent).not.toBe(first), { timeout: 2000 });

    handlers.loaded_models = () => [loaded('gemma3:270m')];
    channel!.onmessage({ kind: 'piece', text: 'Hi' });
    channel!.onmessage({ kind: 'done', stats });
    await vi.waitFor(() => expect(modelState.isLoaded('gemma3:270m')).toBe(true)); // refreshed after the reply
    expect(within(lastReply()).queryByTestId('typing')).toBeNull();

    channel = null;
    await send('Again');
    expect(within(lastReply()).getByTestId('waiting-text').textContent).toBe('Reading the prompt…');
  });

  it('the empty chat says where the model runs: loaded, or the fit estimate', async () => {
    expect(screen.queryByTestId('model-card-runs-on')).toBeNull(); // the hardware probe failed: nothing guessed
    modelState.loaded = [loaded('gemma3:270m')];
    await tick();
    expect(screen.getByTestId('model-card-runs-on').textContent).toBe('100% CPU (no GPU) (loaded)');
  });
});

describe('thinking', () => {
  beforeEach(() => setup());

  it('streams open above the answer, folds when the answer starts, is saved apart and never sent back', async () => {
    await send('Why is the sky blue?');
    channel!.onmessage({ kind: 'piece', text: '', thinking: 'The user asks about ', tokens: 4 });
    channel!.onmessage({ kind: 'piece', text: '', thinking: 'scattering.', tokens: 2 });
    await tick();
    const block = within(lastReply()).getByTestId('thinking') as HTMLDetailsElement;
    expect(block.open).toBe(true);
    expect(within(block).getByTestId('thinking-summary').textContent).toContain('Thinking…');
    expect(within(block).getByTestId('thinking-text').textContent).toBe('The user asks about scattering.');

    channel!.onmessage({ kind: 'piece', text: 'Rayleigh scattering.' });
    await vi.waitFor(() => expect((within(lastReply()).getByTestId('thinking') as HTMLDetailsElement).open).toBe(false));
    channel!.onmessage({ kind: 'done', stats });
    await vi.waitFor(() => expect(chat.live).toBeNull());
    await tick();
    const done = within(lastReply()).getByTestId('thinking') as HTMLDetailsElement;
    expect(done.open).toBe(false);
    expect(within(done).getByTestId('thinking-summary').textContent).toContain('Thought');
    expect(within(lastReply()).getByTestId('message-content').textContent!.trim()).toBe('Rayleigh scattering.');
    // Expandable.
    done.open = true;
    done.dispatchEvent(new Event('toggle'));
    await tick();
    expect(done.open).toBe(true);

    await chat.flushSaves();
    const saved = callsOf('save_conversation').map((c) => c.args.conversation as Conversation).pop()!;
    expect(saved.messages[1]).toMatchObject({ content: 'Rayleigh scattering.', thinking: 'The user asks about scattering.' });

    channel = null;
    await send('And at sunset?');
    const sent = callsOf('start_chat').pop()!.args.messages as { role: string; content: string }[];
    expect(sent).toEqual([
      { role: 'user', content: 'Why is the sky blue?' },
      { role: 'assistant', content: 'Rayleigh scattering.' },
      { role: 'user', content: 'And at sunset?' },
    ]);
  });
});

describe('conversation files', () => {
  beforeEach(() => setup());

  it('exports through the save dialog, with the title as the suggested name', async () => {
    await send('Why is the sky blue?');
    channel!.onmessage({ kind: 'piece', text: 'Scattering.' });
    channel!.onmessage({ kind: 'done', stats });
    await vi.waitFor(() => expect(chat.live).toBeNull());
    handlers.pick_path = () => ({ handle: 'h1', path: '/home/u/Why is the sky blue.md' });
    handlers.export_conversation = () => '/home/u/Why is the sky blue.md';
    await fireEvent.click(screen.getByTestId('export-markdown'));
    await vi.waitFor(() => expect(screen.getByTestId('export-result').textContent).toBe('Exported to /home/u/Why is the sky blue.md'));
    expect(callsOf('pick_path')[0].args).toEqual({ kind: 'conversation_markdown', name: 'Why is the sky blue?' });
    const call = callsOf('export_conversation')[0].args as { conversation: Conversation; format: string; handle: string };
    expect([call.format, call.handle]).toEqual(['markdown', 'h1']);
    expect(call.conversation.messages.map((m) => m.content)).toEqual(['Why is the sky blue?', 'Scattering.']);

    handlers.export_conversation = () => {
      throw { code: 'io', message: 'cannot write the export: disk full' };
    };
    await fireEvent.click(screen.getByTestId('export-json'));
    await vi.waitFor(() => expect(screen.getByTestId('export-result').textContent).toBe('Could not export: cannot write the export: disk full'));
    expect(callsOf('pick_path')[1].args.kind).toBe('conversation_json');
  });

  it('imports a JSON export as a new conversation and opens it; a bad file is refused clearly', async () => {
    const imported: Conversation = {
      id: 'c-imported', title: 'From a colleague', model: 'gemma3:270m', system_prompt: '', draft: '', created: '2026-01-01T00:00:00Z', updated: '2026-12-01T00:00:00Z',
      parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null },
      messages: [
        { id: 'm-1', role: 'user', content: 'Hi', created: '2026-01-01T00:00:00Z' },
        { id: 'm-2', role: 'assistant', content: 'Hello!', thinking: 'A greeting.', created: '2026-01-01T00:00:01Z' },
      ],
    };
    handlers.pick_path = () => ({ handle: 'h2', path: '/home/u/chat.json' });
    handlers.import_conversation = () => imported;
    await fireEvent.click(screen.getByTestId('import-conversation'));
    await vi.waitFor(() => expect(chat.currentId).toBe('c-imported'));
    expect(callsOf('pick_path')[0].args).toEqual({ kind: 'conversation_file' });
    expect(callsOf('import_conversation')[0].args).toEqual({ handle: 'h2' });
    await tick();
    expect(screen.getAllByTestId('message').map((m) => within(m).getByTestId('message-content').textContent!.trim())).toEqual(['Hi', 'Hello!']);
    expect(within(lastReply()).getByTestId('thinking-text').textContent).toBe('A greeting.');
    expect(chat.current!.parameters.seed).toBeNull(); // settings added since are filled in

    handlers.import_conversation = () => {
      throw { code: 'invalid_argument', message: '/home/u/notes.json cannot be imported: it is not an Airlock conversation export' };
    };
    await fireEvent.click(screen.getByTestId('import-conversation'));
    await vi.waitFor(() => expect(screen.getByTestId('import-conversation-error').textContent).toContain('not an Airlock conversation export'));
    expect(chat.conversations).toHaveLength(1);
  });
});

describe('first run', () => {
  beforeEach(() => setup([]));

  it('offers the import itself, the accepted formats and the store folder', async () => {
    const first = screen.getByTestId('first-run');
    for (const f of ['.zip', '.zip.001', '.gguf', 'models/', 'bundle folder']) expect(first.textContent).toContain(f);
    expect(screen.getByTestId('first-run-store-path').textContent).toBe('/home/u/.ollama/models');

    handlers.open_store_folder = () => undefined;
    await fireEvent.click(screen.getByTestId('first-run-open-store'));
    expect(callsOf('open_store_folder')).toHaveLength(1);

    let finish!: (r: unknown) => void;
    handlers.pick_path = () => ({ handle: 'hz', path: '/media/usb/models.zip' });
    handlers.import_path = () => new Promise((r) => (finish = r));
    await fireEvent.click(screen.getByTestId('first-run-import-file'));
    await vi.waitFor(() => expect(callsOf('import_path')).toHaveLength(1));
    expect(callsOf('pick_path')[0].args).toEqual({ kind: 'bundle_file' });
    expect(callsOf('import_path')[0].args.source).toEqual({ handle: 'hz' });
    await vi.waitFor(() => expect(screen.getByTestId('first-run-progress')).toBeTruthy());

    handlers.list_models = () => [model('gemma3:270m')];
    finish({ models: [{ name: 'gemma3:270m', id: 'x', size: 1 }], blobs_copied: 1, blobs_linked: 0, blobs_already_present: 0, bytes_copied: 1, signer: null, warnings: [] });
    await vi.waitFor(() => expect(screen.queryByTestId('first-run')).toBeNull());
    expect(screen.getByTestId('model-card')).toBeTruthy();
    transfers.dismiss('import');
  });

  it('imports a bundle folder as before, and offers the models of any other folder to pick from', async () => {
    expect(screen.getByTestId('first-run').textContent).toContain('Hugging Face cache');
    let finish!: (r: unknown) => void;
    const report = { models: [], blobs_copied: 0, blobs_linked: 0, blobs_already_present: 0, bytes_copied: 0, bytes_linked: 0, signer: null, warnings: [] };
    const scan = { source: { handle: 'hf', path: '/media/usb/stuff' }, bundle: true, models: [], skipped: [], skipped_more: 0, looked_for: '' };
    handlers.pick_path = () => ({ handle: 'hf', path: '/media/usb/stuff' });
    handlers.scan_import_folder = () => scan;
    handlers.import_path = () => new Promise((r) => (finish = r));
    await fireEvent.click(screen.getByTestId('first-run-import-bundle'));
    await vi.waitFor(() => expect(callsOf('import_path')).toHaveLength(1));
    expect(callsOf('pick_path')[0].args).toEqual({ kind: 'bundle_folder' });
    expect(callsOf('import_path')[0].args).toMatchObject({ source: { handle: 'hf' }, name: null });
    expect(screen.queryByTestId('folder-import')).toBeNull();
    finish(report);
    await vi.waitFor(() => expect(transfers.busy).toBeNull());

    const model = { id: 'a.gguf', name: 'a:latest', note: null, files: ['a.gguf'], projector: null, size: 1e9, architecture: 'qwen2', parameters: '494.03M', quantization: 'Q4_K_M', layout: 'Jan' };
    handlers.scan_import_folder = () => ({ ...scan, bundle: false, models: [model] });
    handlers.import_found = () => new Promise((r) => (finish = r));
    await fireEvent.click(screen.getByTestId('first-run-import-bundle'));
    await vi.waitFor(() => expect(screen.getByTestId('folder-import')).toBeTruthy());
    expect((screen.getByTestId('found-name-0') as HTMLInputElement).value).toBe('a:latest');
    await fireEvent.click(screen.getByTestId('folder-import-go'));
    await vi.waitFor(() => expect(callsOf('import_found')).toHaveLength(1));
    expect(callsOf('import_found')[0].args).toMatchObject({ source: { handle: 'hf' }, picks: [{ id: 'a.gguf', name: 'a:latest' }] });
    expect(callsOf('import_path')).toHaveLength(1);
    await vi.waitFor(() => expect(screen.getByTestId('first-run-progress').textContent).toContain('/media/usb/stuff'));
    expect(screen.queryByTestId('folder-import')).toBeNull();
    finish(report);
    await vi.waitFor(() => expect(transfers.busy).toBeNull());
    transfers.dismiss('import');
  });

  it('imports a model dropped on the card without leaving the Chat page', async () => {
    let finish!: (r: unknown) => void;
    handlers.import_path = () => new Promise((r) => (finish = r));
    const imported = vi.fn();
    expect(routeDrop([{ handle: 'hd', path: '/media/usb/gemma.gguf', kind: 'model' }], imported)).toEqual([]);
    expect(imported).not.toHaveBeenCalled();
    await vi.waitFor(() => expect(callsOf('import_path')).toHaveLength(1));
    expect(callsOf('import_path')[0].args.source).toEqual({ handle: 'hd' });
    await vi.waitFor(() => expect(screen.getByTestId('first-run-progress')).toBeTruthy());
    finish({ models: [], blobs_copied: 0, blobs_linked: 0, blobs_already_present: 0, bytes_copied: 0, signer: null, warnings: [] });
    await vi.waitFor(() => expect(transfers.busy).toBeNull());
    transfers.dismiss('import');
  });
});
