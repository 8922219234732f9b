import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import Chat from './Chat.svelte';
import EmbeddingSettings from '../components/EmbeddingSettings.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import { documents } from '../lib/state/documents.svelte';
import { resetDrops, routeDrop } from '../lib/drop';
import type { ChatEvent, ChatMessage, Conversation } from '../lib/api';
import type { Attachment, ConversationDocuments, IndexEvent, Source } from '../lib/documents';
import { withContext } from '../lib/documents';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, model } from '../test/fixtures';

type Chan<T> = { onmessage: (e: T) => void };
let chatChannel: Chan<ChatEvent> | null = null;
let indexChannel: Chan<IndexEvent> | null = null;
let view: ConversationDocuments;

const stats = { done_reason: 'stop', prompt_tokens: 7, eval_tokens: 3, prompt_eval_ms: 1, eval_ms: 10, load_ms: 0, tokens_per_second: 300 };
const attachment = (over: Partial<Attachment> = {}): Attachment => ({ id: 1, name: 'pump.txt', path: '/docs/pump.txt', chunks: 2, error: null, indexed: true, ...over });
const source: Source = { n: 1, file: 'pump.txt', path: '/docs/pump.txt', location: 'page 2', snippet: 'P-101 is serviced every 90 days', text: 'Maintenance log.\nThe coolant pump P-101 is serviced every 90 days.' };

const stored = (over: Partial<Conversation> = {}): Conversation => ({
  id: 'c1',
  title: 'Pumps',
  model: 'gemma3:270m',
  system_prompt: '',
  parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: 2048 },
  messages: [],
  draft: '',
  created: '2024-01-01T00:00:00Z',
  updated: '2024-01-01T00:00:00Z',
  ...over,
});

async function setup(conversations: Conversation[] = [stored()], attachments: Attachment[] = []) {
  resetMock();
  resetDrops();
  installDefaults({ conversations, models: [model('gemma3:270m'), model('nomic-embed-text')] });
  view = { attachments, libraries: [], embedding_model: null, indexing: false };
  chatChannel = null;
  indexChannel = null;
  handlers.documents_of = () => view;
  handlers.start_chat = (args: { onEvent: Chan<ChatEvent> }) => {
    chatChannel = args.onEvent;
  };
  handlers.attach_documents = (args: { onEvent: Chan<IndexEvent> }) => {
    indexChannel = args.onEvent;
    view = { ...view, attachments: [...view.attachments, attachment({ id: 7, name: 'manual.pdf', path: '/docs/manual.pdf', indexed: false, chunks: 0 })] };
    return view;
  };
  handlers.cancel_indexing = () => undefined;
  await app.loadSettings();
  await app.refreshModels();
  await chat.load();
  render(Chat);
  await tick();
  await vi.waitFor(() => expect(callsOf('documents_of').length).toBeGreaterThan(0));
}

async function send(text: string) {
  const input = screen.getByTestId('chat-input');
  await fireEvent.input(input, { target: { value: text } });
  await fireEvent.keyDown(input, { key: 'Enter' });
  await vi.waitFor(() => expect(chatChannel).not.toBeNull());
}

describe('documents in a conversation', () => {
  beforeEach(() => {
    chat.live?.finish();
    chat.live = null;
    chat.setConversations([]);
    documents.failed = [];
    documents.notice = null;
    documents.jobs = 0;
    documents.progress = null;
  });

  it('shows attached files as chips, with why a file cannot be read, and removes one', async () => {
    await setup([stored()], [attachment(), attachment({ id: 2, name: 'broken.pdf', path: '/docs/broken.pdf', chunks: 0, error: 'the PDF is damaged: its structure could not be parsed' })]);
    const chips = await screen.findAllByTestId('attachment-chip');
    expect(chips.map((c) => c.dataset.name)).toEqual(['pump.txt', 'broken.pdf']);
    expect(chips[0].dataset.state).toBe('indexed');
    expect(chips[1].dataset.state).toBe('failed');
    expect(within(chips[1]).getByTestId('attachment-error').textContent).toContain('the PDF is damaged');
    handlers.detach_document = (args: { id: number }) => ({ ...view, attachments: view.attachments.filter((a) => a.id !== args.id) });
    await fireEvent.click(within(chips[1]).getByTestId('attachment-remove'));
    await vi.waitFor(() => expect(screen.getAllByTestId('attachment-chip')).toHaveLength(1));
    expect(callsOf('detach_document')[0].args).toEqual({ conversation: 'c1', id: 2 });
  });

  it('attaches through the dialog, shows progress with Cancel, then what could not be read', async () => {
    await setup();
    handlers.pick_documents = () => [{ handle: 'h-1', path: '/docs/manual.pdf' }];
    await fireEvent.click(screen.getByTestId('attach-documents'));
    await vi.waitFor(() => expect(callsOf('attach_documents')).toHaveLength(1));
    expect(callsOf('attach_documents')[0].args).toEqual({ conversation: 'c1', handles: ['h-1'], model: 'gemma3:270m', onEvent: '[channel]' });
    const chip = await screen.findByTestId('attachment-chip');
    expect(chip.dataset.state).toBe('pending');
    // The job runs in the background: the composer stays usable.
    expect((screen.getByTestId('chat-input') as HTMLTextAreaElement).disabled).toBe(false);
    indexChannel!.onmessage({ kind: 'progress', done: 0, total: 2, file: 'manual.pdf' });
    await tick();
    expect(screen.getByTestId('indexing-progress').textContent).toContain('Reading manual.pdf (1 of 2)');
    await fireEvent.click(screen.getByTestId('indexing-cancel'));
    expect(callsOf('cancel_indexing')).toHaveLength(1);
    view = { ...view, attachments: [attachment({ id: 7, name: 'manual.pdf', path: '/docs/manual.pdf', chunks: 0, error: 'the PDF holds no text (scanned pages need OCR first)' })] };
    indexChannel!.onmessage({ kind: 'finished', indexed: 0, unchanged: 0, chunks: 0, failed: [{ file: 'manual.pdf', path: '/docs/manual.pdf', reason: 'the PDF holds no text (scanned pages need OCR first)' }], cancelled: false });
    await vi.waitFor(() => expect(screen.queryByTestId('indexing-progress')).toBeNull());
    expect(screen.getByTestId('indexing-failed').textContent).toContain('manual.pdf: the PDF holds no text');
    await vi.waitFor(() => expect(screen.getByTestId('attachment-chip').dataset.state).toBe('failed'));
  });

  it('attaches documents dropped on the window to the open conversation', async () => {
    await setup();
    routeDrop([{ handle: 'h-drop', path: '/docs/notes.md', kind: 'document' }], () => {});
    await vi.waitFor(() => expect(callsOf('attach_documents')).toHaveLength(1));
    expect(callsOf('attach_documents')[0].args.handles).toEqual(['h-drop']);
  });

  it('puts the found passages before the question and shows the sources under the reply', async () => {
    await setup([stored()], [attachment()]);
    await screen.findByTestId('attachment-chip');
    handlers.retrieve_documents = () => ({ context: 'Excerpts…\n\n[1] pump.txt, page 2\nThe coolant pump P-101 is serviced every 90 days.', sources: [source], tokens: 40, budget: 682, counted_by: 'estimate' });
    await send('How often is P-101 serviced?');
    const asked = callsOf('retrieve_documents')[0].args;
    expect(asked).toMatchObject({ conversation: 'c1', model: 'gemma3:270m', question: 'How often is P-101 serviced?', numCtx: 2048 });
    const sent = callsOf('start_chat')[0].args.messages as ChatMessage[];
    const last = sent[sent.length - 1];
    expect(last.role).toBe('user');
    expect(last.content).toMatch(/^Excerpts…[\s\S]*\[1\] pump\.txt, page 2[\s\S]*Question: How often is P-101 serviced\?$/);
    chatChannel!.onmessage({ kind: 'piece', text: 'Every 90 days [1].' });
    chatChannel!.onmessage({ kind: 'done', stats });
    const item = await screen.findByTestId('source');
    expect(item.dataset.file).toBe('pump.txt');
    expect(item.textContent).toContain('page 2');
    expect(item.textContent).toContain('P-101 is serviced every 90 days');
    await fireEvent.click(item);
    const viewer = await screen.findByTestId('source-viewer');
    expect(within(viewer).getByTestId('source-text').textContent).toContain('The coolant pump P-101 is serviced every 90 days.');
    expect(within(viewer).getByTestId('source-location').textContent).toContain('page 2');
    await chat.flushSaves();
    const saves = callsOf('save_conversation').map((c) => c.args.conversation as Conversation);
    const reply = saves[saves.length - 1].messages.find((m) => m.role === 'assistant')!;
    expect(reply.sources).toEqual([source]);
    // The conversation keeps the question as typed.
    expect(saves[saves.length - 1].messages[0].content).toBe('How often is P-101 serviced?');
  });

  it('sends the messages unchanged when the conversation has no documents', async () => {
    await setup();
    handlers.retrieve_documents = () => {
      throw new Error('not to be called');
    };
    await send('Hello');
    expect(callsOf('retrieve_documents')).toHaveLength(0);
    const sent = callsOf('start_chat')[0].args.messages as ChatMessage[];
    expect(sent[sent.length - 1].content).toBe('Hello');
  });

  it('answers without documents, saying why, when the search fails', async () => {
    await setup([stored()], [attachment()]);
    await screen.findByTestId('attachment-chip');
    handlers.retrieve_documents = () => {
      throw { code: 'documents', message: 'the embedding model x cannot be used: not found' };
    };
    await send('Question?');
    expect((callsOf('start_chat')[0].args.messages as ChatMessage[]).pop()!.content).toBe('Question?');
    expect(screen.getByTestId('documents-notice').textContent).toContain('cannot be used');
  });

  it('adds a folder as a library, uses it here, and stops using it', async () => {
    await setup();
    handlers.pick_path = () => ({ handle: 'h-dir', path: '/docs/handbook' });
    const handbook = { id: 3, name: 'handbook', path: '/docs/handbook', files: 2, chunks: 5, failed: [['/docs/handbook/scan.pdf', 'the PDF holds no text (scanned pages need OCR first)']] as [string, string][], used: true };
    handlers.add_library = (args: { onEvent: Chan<IndexEvent> }) => {
      indexChannel = args.onEvent;
      view = { ...view, libraries: [handbook] };
      return view;
    };
    await fireEvent.click(screen.getByTestId('libraries-toggle'));
    await fireEvent.click(screen.getByTestId('add-library'));
    await vi.waitFor(() => expect(callsOf('add_library')).toHaveLength(1));
    expect(callsOf('pick_path')[0].args).toEqual({ kind: 'library_folder' });
    expect(callsOf('add_library')[0].args).toEqual({ conversation: 'c1', handle: 'h-dir', model: 'gemma3:270m', onEvent: '[channel]' });
    expect((await screen.findByTestId('library-chip')).dataset.name).toBe('handbook');
    const option = screen.getByTestId('library-option');
    expect(option.textContent).toContain('2 documents · 1 unreadable');
    expect(screen.getByTestId('libraries').textContent).toContain('scan.pdf: the PDF holds no text');
    indexChannel!.onmessage({ kind: 'finished', indexed: 2, unchanged: 0, chunks: 5, failed: [], cancelled: false });
    handlers.use_libraries = (args: { ids: number[] }) => {
      view = { ...view, libraries: [{ ...handbook, used: args.ids.includes(3) }] };
      return view;
    };
    await fireEvent.click(within(option).getByRole('checkbox'));
    await vi.waitFor(() => expect(callsOf('use_libraries')).toHaveLength(1));
    expect(callsOf('use_libraries')[0].args).toMatchObject({ conversation: 'c1', ids: [] });
    await vi.waitFor(() => expect(screen.queryByTestId('library-chip')).toBeNull());
  });

  it('re-indexes in the background what changed when a conversation with documents opens', async () => {
    resetMock();
    let started: Chan<IndexEvent> | null = null;
    installDefaults({ conversations: [stored()], models: [model('gemma3:270m')] });
    handlers.documents_of = () => ({ attachments: [attachment()], libraries: [], embedding_model: null, indexing: false });
    handlers.sync_documents = (args: { onEvent: Chan<IndexEvent> }) => {
      started = args.onEvent;
      return true;
    };
    await app.loadSettings();
    await app.refreshModels();
    await chat.load();
    render(Chat);
    await vi.waitFor(() => expect(callsOf('sync_documents')).toHaveLength(1));
    expect(callsOf('sync_documents')[0].args).toMatchObject({ conversation: 'c1', model: 'gemma3:270m' });
    await vi.waitFor(() => expect(screen.getByTestId('indexing-progress')).toBeTruthy());
    started!.onmessage({ kind: 'progress', done: 0, total: 1, file: 'pump.txt' });
    await tick();
    expect(screen.getByTestId('indexing-progress').textContent).toContain('Reading pump.txt (1 of 1)');
    started!.onmessage({ kind: 'finished', indexed: 1, unchanged: 0, chunks: 2, failed: [], cancelled: false });
    await vi.waitFor(() => expect(screen.queryByTestId('indexing-progress')).toBeNull());
  });

  it('puts the context in the last user message only', () => {
    const m: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: 'second' },
    ];
    const out = withContext(m, 'CTX');
    expect(out.map((x) => x.content)).toEqual(['Be brief.', 'first', 'ok', 'CTX\n\nQuestion: second']);
    expect(m[3].content).toBe('second');
    expect(withContext(m, null)).toBe(m);
  });
});

describe('embedding model setting', () => {
  it('offers the chat model or any model, and saves the choice', async () => {
    resetMock();
    installDefaults({ models: [model('gemma3:270m'), model('nomic-embed-text')] });
    handlers.set_embedding_model = () => undefined;
    await app.refreshModels();
    render(EmbeddingSettings);
    const select = (await screen.findByTestId('embedding-model')) as HTMLSelectElement;
    expect([...select.options].map((o) => o.value)).toEqual(['', 'gemma3:270m', 'nomic-embed-text']);
    expect(select.options[0].textContent).toContain("chat model");
    expect(screen.getByTestId('embedding-note').textContent).toContain('dedicated embedding model');
    await fireEvent.change(select, { target: { value: 'nomic-embed-text' } });
    await vi.waitFor(() => expect(callsOf('set_embedding_model')).toHaveLength(1));
    expect(callsOf('set_embedding_model')[0].args).toEqual({ model: 'nomic-embed-text' });
    await fireEvent.change(select, { target: { value: '' } });
    await vi.waitFor(() => expect(callsOf('set_embedding_model')).toHaveLength(2));
    expect(callsOf('set_embedding_model')[1].args).toEqual({ model: null });
  });
});
