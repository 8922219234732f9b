// The tool loop through the real chat path (Chat page → ChatStore → start_chat channel → mcp_call),
// with the backend mocked: calls, approvals, results sent back as `tool` messages, the step limit,
// Stop, and what is saved.
import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import App from '../App.svelte';
import Chat from './Chat.svelte';
import { app } from '../lib/state/app.svelte';
import { chat } from '../lib/state/chat.svelte';
import { mcp } from '../lib/state/mcp.svelte';
import type { ChatEvent, ChatMessage, Conversation, McpCallResult, McpServer, ToolCall } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults } from '../test/fixtures';
import { INTERRUPTED } from '../lib/conversation';
import { DENIED } from '../lib/tools';

type Ch = { onmessage: (e: ChatEvent) => void };
let channels: Ch[] = [];
const stats = { done_reason: 'stop', prompt_tokens: 7, eval_tokens: 3, prompt_eval_ms: 1, eval_ms: 10, load_ms: 0, tokens_per_second: 300 };
const READ = { server: 'files', name: 'read', function_name: 'read', description: 'Read a file', parameters: { type: 'object', properties: { path: { type: 'string' } } } };

function server(over: Partial<McpServer> = {}): McpServer {
  return { name: 'files', command: 'npx', args: ['-y', 'fs'], env: {}, url: null, always_allow: [], ...over };
}

const stored = (over: Partial<Conversation> = {}): Conversation => ({
  id: 'c1',
  title: 'Tools',
  model: 'gemma3:270m',
  system_prompt: '',
  parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null },
  messages: [],
  draft: '',
  created: '2024-01-01T00:00:00Z',
  updated: '2024-01-01T00:00:00Z',
  tool_servers: ['files'],
  ...over,
});

async function setup(opts: { conversations?: Conversation[]; servers?: McpServer[]; call?: (a: { requestId: string }) => unknown } = {}) {
  resetMock();
  mcp.reset();
  installDefaults({ conversations: opts.conversations ?? [stored()] });
  channels = [];
  handlers.start_chat = (a: { onEvent: Ch }) => void channels.push(a.onEvent);
  handlers.mcp_servers = () => opts.servers ?? [server({ always_allow: ['read'] })];
  handlers.mcp_tools = () => ({ tools: [READ], problems: [] });
  handlers.mcp_call = opts.call ?? (() => ({ text: 'hello from notes.txt', is_error: false, duration_ms: 12 }));
  handlers.mcp_cancel = () => undefined;
  await app.loadSettings();
  await app.refreshModels();
  await chat.load();
  render(Chat);
  await tick();
}

async function send(text: string) {
  const n = channels.length;
  const input = screen.getByTestId('chat-input');
  await fireEvent.input(input, { target: { value: text } });
  await fireEvent.keyDown(input, { key: 'Enter' });
  await vi.waitFor(() => expect(channels.length).toBe(n + 1));
}

const call = (name: string, args: Record<string, unknown>, id = 'call-1'): ToolCall => ({ id, function: { name, arguments: args } });

/** Ends the current round: some text, then done with `tool_calls`. */
async function round(text: string, toolCalls: ToolCall[]) {
  const ch = channels.at(-1)!;
  if (text) ch.onmessage({ kind: 'piece', text });
  ch.onmessage({ kind: 'done', stats, tool_calls: toolCalls });
  await tick();
}

const sent = (i: number) => callsOf('start_chat')[i].args.messages as ChatMessage[];
const saved = () => callsOf('save_conversation').map((c) => c.args.conversation as Conversation);
const reply = () => chat.current!.messages[1];

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('the tool loop', () => {
  beforeEach(() => {
    chat.live?.finish();
    chat.live = null;
    chat.setConversations([]);
  });

  it('offers the tools, runs an allowed call, sends the result back and shows the final answer', async () => {
    await setup();
    await send('What is in notes.txt?');
    expect(callsOf('mcp_tools')[0].args).toEqual({ servers: ['files'] });
    const first = callsOf('start_chat')[0].args;
    expect(first.tools).toEqual([{ type: 'function', function: { name: 'read', description: 'Read a file', parameters: READ.parameters } }]);

    await round('Let me look.', [call('read', { path: 'notes.txt' })]);
    await vi.waitFor(() => expect(channels).toHaveLength(2));
    const c = callsOf('mcp_call')[0].args;
    expect(c).toMatchObject({ server: 'files', tool: 'read', arguments: { path: 'notes.txt' } });
    expect(typeof c.requestId).toBe('string');
    expect(callsOf('start_chat')[1].args.messages).toEqual([
      { role: 'user', content: 'What is in notes.txt?' },
      { role: 'assistant', content: 'Let me look.', tool_calls: [{ id: 'call-1', function: { name: 'read', arguments: { path: 'notes.txt' } } }] },
      { role: 'tool', content: 'hello from notes.txt', tool_name: 'read', tool_call_id: 'call-1' },
    ]);
    expect(callsOf('start_chat')[1].args.tools).toEqual(first.tools);

    await round('It says hello.', []);
    const msg = screen.getAllByTestId('message')[1];
    expect(msg.dataset.streaming).toBe('false');
    expect(within(msg).getByTestId('tool-step-content').textContent!.trim()).toBe('Let me look.');
    const card = within(msg).getByTestId('tool-card');
    expect(card.dataset.status).toBe('done');
    expect(within(card).getByTestId('tool-result').textContent).toBe('hello from notes.txt');
    expect(within(card).getByTestId('tool-duration').textContent).toBe('12 ms');
    expect(within(msg).getByTestId('message-content').textContent!.trim()).toBe('It says hello.');
    // The card comes before the final answer.
    expect(card.compareDocumentPosition(within(msg).getByTestId('message-content')) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();

    await chat.flushSaves();
    const last = saved().at(-1)!.messages[1];
    expect(last).toMatchObject({ content: 'It says hello.', streaming: false, stats });
    expect(last.tool_steps).toEqual([
      { content: 'Let me look.', calls: [{ id: 'call-1', server: 'files', tool: 'read', function_name: 'read', arguments: { path: 'notes.txt' }, status: 'done', result: 'hello from notes.txt', is_error: false, duration_ms: 12 }] },
    ]);
    // A streaming save in between already held the step (saved as steps progress).
    expect(saved().some((s) => s.messages[1]?.streaming && s.messages[1].tool_steps?.length)).toBe(true);

    // The next turn sends the saved reply expanded.
    await send('Thanks');
    expect(callsOf('start_chat')[2].args.messages).toEqual([
      { role: 'user', content: 'What is in notes.txt?' },
      { role: 'assistant', content: 'Let me look.', tool_calls: [{ id: 'call-1', function: { name: 'read', arguments: { path: 'notes.txt' } } }] },
      { role: 'tool', content: 'hello from notes.txt', tool_name: 'read', tool_call_id: 'call-1' },
      { role: 'assistant', content: 'It says hello.' },
      { role: 'user', content: 'Thanks' },
    ]);
  });

  it('a conversation without tool servers offers none and calls nothing', async () => {
    await setup({ conversations: [stored({ tool_servers: undefined })] });
    await send('hi');
    expect(callsOf('start_chat')[0].args.tools).toEqual([]);
    expect(callsOf('mcp_tools')).toHaveLength(0);
    await round('hello', [call('read', {})]);
    expect(callsOf('mcp_call')).toHaveLength(0);
    expect(reply().content).toBe('hello');
  });

  it('asks before a call; Allow runs it', async () => {
    await setup({ servers: [server()] });
    await send('read it');
    await round('', [call('read', { path: 'a' })]);
    const card = await vi.waitFor(() => screen.getByTestId('tool-card'));
    expect(card.dataset.status).toBe('awaiting_approval');
    expect((card as HTMLDetailsElement).open).toBe(true);
    expect(within(card).getByTestId('tool-arguments').textContent).toBe('{\n  "path": "a"\n}');
    const approval = screen.getByRole('group', { name: 'Approve read of files' });
    expect(approval.textContent).toContain('read');
    expect(chat.announcement).toContain('Approval needed');
    expect(callsOf('mcp_call')).toHaveLength(0);
    expect(screen.getByTestId('stop')).toBeTruthy(); // the reply is still going
    await fireEvent.click(screen.getByTestId('tool-allow'));
    await vi.waitFor(() => expect(channels).toHaveLength(2));
    expect(callsOf('mcp_call')).toHaveLength(1);
    expect(reply().tool_steps![0].calls[0].status).toBe('done');
    expect(chat.current!.allowed_tools).toBeUndefined();
  });

  it('"Allow for this conversation" remembers server/tool on the conversation; "Always allow" asks the backend', async () => {
    await setup({ servers: [server()] });
    handlers.set_tool_always_allow = (a: { server: string; tool: string; allow: boolean }) => [server({ always_allow: a.allow ? [a.tool] : [] })];
    await send('read two');
    await round('', [call('read', { path: 'a' }, 'x1'), call('read', { path: 'b' }, 'x2')]);
    await vi.waitFor(() => expect(screen.getAllByTestId('tool-allow-conversation')).toHaveLength(2));
    await fireEvent.click(screen.getAllByTestId('tool-allow-conversation')[0]);
    // One answer allows the same tool waiting in this round too: both run.
    await vi.waitFor(() => expect(channels).toHaveLength(2));
    expect(callsOf('mcp_call')).toHaveLength(2);
    expect(new Set(callsOf('mcp_call').map((c) => c.args.requestId)).size).toBe(2);
    expect(chat.current!.allowed_tools).toEqual(['files/read']);
    await round('', [call('read', { path: 'c' }, 'x3')]);
    // Allowed for the conversation now: no card asks.
    await vi.waitFor(() => expect(channels).toHaveLength(3));
    expect(callsOf('mcp_call')).toHaveLength(3);
    await round('done', []);
    await chat.flushSaves();
    expect(saved().at(-1)!.allowed_tools).toEqual(['files/read']);

    // Another conversation asks again; Always allow is kept by the backend.
    chat.newChat('gemma3:270m');
    chat.setToolServers(['files']);
    await tick();
    await send('again');
    await round('', [call('read', { path: 'd' }, 'y1')]);
    await vi.waitFor(() => screen.getByTestId('tool-allow-always'));
    await fireEvent.click(screen.getByTestId('tool-allow-always'));
    await vi.waitFor(() => expect(channels).toHaveLength(5));
    expect(callsOf('set_tool_always_allow')[0].args).toEqual({ server: 'files', tool: 'read', allow: true });
    expect(mcp.servers[0].always_allow).toEqual(['read']);
  });

  it('Deny sends the denial back as the result', async () => {
    await setup({ servers: [server()] });
    await send('read');
    await round('Reading.', [call('read', { path: 'secret' })]);
    await vi.waitFor(() => screen.getByTestId('tool-deny'));
    await fireEvent.click(screen.getByTestId('tool-deny'));
    await vi.waitFor(() => expect(channels).toHaveLength(2));
    expect(callsOf('mcp_call')).toHaveLength(0);
    expect(sent(1).at(-1)!).toEqual({ role: 'tool', content: DENIED, tool_name: 'read', tool_call_id: 'call-1' });
    expect(reply().tool_steps![0].calls[0]).toMatchObject({ status: 'denied', result: DENIED, is_error: true });
    await round('Fine, I will not.', []);
    expect(screen.getByTestId('tool-card').dataset.status).toBe('denied');
  });

  it('an unknown tool is an error result, not a call', async () => {
    await setup();
    await send('go');
    await round('', [call('rm_rf', {})]);
    await vi.waitFor(() => expect(channels).toHaveLength(2));
    expect(callsOf('mcp_call')).toHaveLength(0);
    const toolMsg = sent(1).at(-1)!;
    expect(toolMsg.role).toBe('tool');
    expect(toolMsg.content).toContain('the model called an unknown tool "rm_rf"');
    expect(reply().tool_steps![0].calls[0]).toMatchObject({ status: 'error', is_error: true });
  });

  it('honours the step limit and says so on the reply', async () => {
    await setup({ conversations: [stored({ parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null, max_tool_steps: 2 } })] });
    await send('loop');
    expect(callsOf('start_chat')[0].args.parameters).not.toHaveProperty('max_tool_steps');
    await round('one', [call('read', { path: '1' }, 'a')]);
    await vi.waitFor(() => expect(channels).toHaveLength(2));
    await round('two', [call('read', { path: '2' }, 'b')]);
    await vi.waitFor(() => expect(channels).toHaveLength(3));
    await round('', [call('read', { path: '3' }, 'c')]);
    // Past the limit the calls are not made: asked once more without tools, the model answers.
    await vi.waitFor(() => expect(channels).toHaveLength(4));
    expect(callsOf('start_chat')[3].args.tools).toEqual([]);
    await round('three', []);
    await vi.waitFor(() => expect(chat.live).toBeNull());
    expect(callsOf('mcp_call')).toHaveLength(2);
    expect(reply().tool_steps).toHaveLength(2);
    expect(reply().content).toBe('three');
    expect(screen.getByTestId('tool-note').textContent).toBe('Stopped after 2 tool steps; raise the limit in chat settings to let it go on.');
  });

  it('a call the model already made is not run again: it is asked once more without tools', async () => {
    await setup({ conversations: [stored()] });
    await send('loop');
    await round('', [call('read', { path: '1' }, 'a')]);
    await vi.waitFor(() => expect(channels).toHaveLength(2));
    await round('', [call('read', { path: '1' }, 'b')]);
    await vi.waitFor(() => expect(channels).toHaveLength(3));
    expect(callsOf('start_chat')[2].args.tools).toEqual([]);
    expect(callsOf('mcp_call')).toHaveLength(1);
    await round('The answer is 1.', []);
    await vi.waitFor(() => expect(chat.live).toBeNull());
    expect(reply().content).toBe('The answer is 1.');
    expect(reply().tool_steps).toHaveLength(1);
  });

  it('Stop while a call waits for approval counts as a denial and ends the reply', async () => {
    await setup({ servers: [server()] });
    await send('read');
    await round('Let me read.', [call('read', { path: 'x' })]);
    await vi.waitFor(() => screen.getByTestId('tool-allow'));
    await fireEvent.click(screen.getByTestId('stop'));
    await vi.waitFor(() => expect(chat.live).toBeNull());
    expect(callsOf('mcp_call')).toHaveLength(0);
    expect(callsOf('stop_chat')).toHaveLength(0);
    expect(channels).toHaveLength(1);
    expect(reply().tool_steps![0].calls[0]).toMatchObject({ status: 'denied', result: DENIED });
    expect(reply().streaming).toBe(false);
    await tick();
    expect(screen.queryByTestId('tool-allow')).toBeNull();
    expect(screen.queryByTestId('stop')).toBeNull();
    await chat.flushSaves();
    expect(saved().at(-1)!.messages[1]).toMatchObject({ streaming: false });
  });

  it('Stop while a call runs cancels it (mcp_cancel) and ends the reply with what it has', async () => {
    const pending = deferred<McpCallResult>();
    await setup({ call: () => pending.promise });
    await send('slow');
    await round('Working.', [call('read', { path: 'big' })]);
    await vi.waitFor(() => expect(callsOf('mcp_call')).toHaveLength(1));
    expect(screen.getByTestId('tool-card').dataset.status).toBe('running');
    await fireEvent.click(screen.getByTestId('stop'));
    expect(callsOf('mcp_cancel')[0].args).toEqual({ requestId: callsOf('mcp_call')[0].args.requestId });
    pending.resolve({ text: 'cancelled: the user stopped the reply', is_error: true, duration_ms: 40 });
    await vi.waitFor(() => expect(chat.live).toBeNull());
    expect(channels).toHaveLength(1);
    expect(reply().tool_steps![0].calls[0]).toMatchObject({ status: 'cancelled', is_error: true });
    expect(chat.announcement).toMatch(/^Reply stopped/);
  });

  it('Stop while a round streams stops that round and runs no calls', async () => {
    await setup();
    await send('go');
    channels[0].onmessage({ kind: 'piece', text: 'I will' });
    await fireEvent.click(screen.getByTestId('stop'));
    expect(callsOf('stop_chat')).toHaveLength(1);
    await round('', [call('read', {})]);
    expect(chat.live).toBeNull();
    expect(callsOf('mcp_call')).toHaveLength(0);
    expect(reply().content).toBe('I will');
  });

  it('a server that fails to start is a note; the others still work', async () => {
    await setup({ conversations: [stored({ tool_servers: ['files', 'web'] })] });
    handlers.mcp_tools = () => ({ tools: [READ], problems: [{ server: 'web', message: 'the program "webmcp" was not found' }] });
    await send('hi');
    await vi.waitFor(() => expect(screen.getByTestId('tool-note').textContent).toBe('Tool server web is not available: the program "webmcp" was not found'));
    expect(callsOf('start_chat')[0].args.tools).toHaveLength(1);
  });

  it('after a restart a reply cut off during its calls shows as interrupted, its calls cancelled', async () => {
    await setup({
      conversations: [
        stored({
          messages: [
            { id: 'u1', role: 'user', content: 'read', created: '' },
            {
              id: 'a1', role: 'assistant', content: '', created: '', streaming: true,
              tool_steps: [{ content: 'Reading.', calls: [{ id: 'k', server: 'files', tool: 'read', function_name: 'read', arguments: {}, status: 'running' }] }],
            },
          ],
        }),
      ],
    });
    const msg = screen.getAllByTestId('message')[1];
    expect(within(msg).getByTestId('message-error').textContent).toContain(INTERRUPTED);
    expect(within(msg).getByTestId('tool-card').dataset.status).toBe('cancelled');
    expect(within(msg).queryByTestId('tool-allow')).toBeNull();
  });
});

describe('tool servers follow the open conversation', () => {
  it('opening another conversation releases the servers it does not use', async () => {
    resetMock();
    mcp.reset();
    installDefaults({
      conversations: [
        stored({ id: 'a', title: 'With tools', updated: '2024-02-01T00:00:00Z' }),
        stored({ id: 'b', title: 'Plain', tool_servers: undefined, updated: '2024-01-01T00:00:00Z' }),
      ],
    });
    chat.live = null;
    chat.setConversations([]);
    render(App);
    await vi.waitFor(() => expect(app.ready).toBe(true));
    await tick();
    const before = callsOf('mcp_release').length;
    await fireEvent.click(within(screen.getAllByTestId('conversation')[1]).getByText('Plain'));
    await vi.waitFor(() => expect(callsOf('mcp_release')).toHaveLength(before + 1));
    expect(callsOf('mcp_release').at(-1)!.args).toEqual({ keep: [] });
    await fireEvent.click(within(screen.getAllByTestId('conversation')[0]).getByText('With tools'));
    await vi.waitFor(() => expect(callsOf('mcp_release')).toHaveLength(before + 2));
    expect(callsOf('mcp_release').at(-1)!.args).toEqual({ keep: ['files'] });
  });
});
