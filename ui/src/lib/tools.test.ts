import { describe, expect, it, vi } from 'vitest';
import type { McpServer, McpTool, StoredMessage, ToolCallRecord, ToolStep } from './api';
import { buildChatMessages, INTERRUPTED, restoreInterrupted, newConversation } from './conversation';
import {
  approvalFor,
  callRecords,
  DENIED,
  endInterruptedCalls,
  INTERRUPTED_CALL,
  launchLine,
  maxToolSteps,
  normalizeArguments,
  parseArgs,
  parseEnv,
  previewText,
  toolDefs,
  toolStepMessages,
  toolStepsProblem,
} from './tools';
import { ToolRun, withApprovals, type ToolRunHooks } from './toolrun';
import { showVersion, versionsToKeep } from './versions';

const tool = (over: Partial<McpTool> = {}): McpTool => ({ server: 'files', name: 'read', function_name: 'read', description: 'Read a file', parameters: { type: 'object' }, ...over });
const server = (over: Partial<McpServer> = {}): McpServer => ({ name: 'files', command: 'npx', args: [], env: {}, url: null, always_allow: [], ...over });
const record = (over: Partial<ToolCallRecord> = {}): ToolCallRecord => ({ id: 'c1', server: 'files', tool: 'read', function_name: 'read', arguments: { path: 'a' }, status: 'done', result: 'A', is_error: false, duration_ms: 3, ...over });

function msg(role: StoredMessage['role'], content: string, extra: Partial<StoredMessage> = {}): StoredMessage {
  return { id: `${role}-${content}`, role, content, created: '', ...extra };
}

describe('tool steps sent to the model', () => {
  const steps: ToolStep[] = [
    { content: 'Looking.', thinking: 'hmm', calls: [record(), record({ id: 'c2', function_name: 'files__read', arguments: { path: 'b' }, result: undefined, status: 'denied', is_error: true })] },
    { content: '', calls: [record({ id: 'c3', status: 'error', result: 'Error: timed out after 60 s', is_error: true })] },
  ];

  it('expand into the assistant calls and one tool message per result, then the final answer', () => {
    const messages = [msg('user', 'q'), msg('assistant', 'Done: A.', { tool_steps: steps }), msg('user', 'next')];
    expect(buildChatMessages('Sys', messages)).toEqual([
      { role: 'system', content: 'Sys' },
      { role: 'user', content: 'q' },
      {
        role: 'assistant',
        content: 'Looking.',
        tool_calls: [
          { id: 'c1', function: { name: 'read', arguments: { path: 'a' } } },
          { id: 'c2', function: { name: 'files__read', arguments: { path: 'b' } } },
        ],
      },
      { role: 'tool', content: 'A', tool_name: 'read', tool_call_id: 'c1' },
      { role: 'tool', content: DENIED, tool_name: 'files__read', tool_call_id: 'c2' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'c3', function: { name: 'read', arguments: { path: 'a' } } }] },
      { role: 'tool', content: 'Error: timed out after 60 s', tool_name: 'read', tool_call_id: 'c3' },
      { role: 'assistant', content: 'Done: A.' },
      { role: 'user', content: 'next' },
    ]);
  });

  it('a reply with steps but no final text still sends its steps; thinking is never sent', () => {
    const out = buildChatMessages('', [msg('user', 'q'), msg('assistant', '', { tool_steps: [steps[0]] })]);
    expect(out.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool']);
    expect(JSON.stringify(out)).not.toContain('hmm');
    expect(toolStepMessages(undefined)).toEqual([]);
  });

  it('offers the tools by their function names', () => {
    expect(toolDefs([tool({ function_name: 'files__read' })])).toEqual([{ type: 'function', function: { name: 'files__read', description: 'Read a file', parameters: { type: 'object' } } }]);
  });
});

describe('calls', () => {
  it('map back to their tool; an unknown name or bad arguments is an error record', () => {
    const tools = [tool(), tool({ server: 'web', name: 'read', function_name: 'web__read' })];
    const [a, b, c, d] = callRecords(
      [
        { id: 'x', function: { name: 'web__read', arguments: { url: 'u' } } },
        { function: { name: 'nope', arguments: {} } },
        { id: 'z', function: { name: 'read', arguments: '{"path":"p"}' as unknown as Record<string, unknown> } },
        { id: 'w', function: { name: 'read', arguments: '[1' as unknown as Record<string, unknown> } },
      ],
      tools,
    );
    expect(a).toEqual({ id: 'x', server: 'web', tool: 'read', function_name: 'web__read', arguments: { url: 'u' }, status: 'running' });
    expect(b).toMatchObject({ function_name: 'nope', status: 'error', is_error: true });
    expect(b.result).toContain('the model called an unknown tool "nope"');
    expect(b.id).toBeTruthy();
    expect(c).toMatchObject({ server: 'files', tool: 'read', arguments: { path: 'p' }, status: 'running' });
    expect(d).toMatchObject({ status: 'error', is_error: true });
    expect(normalizeArguments(undefined)).toEqual({});
    expect(normalizeArguments([1])).toBeNull();
  });

  it('approval: always (server), for this conversation, or ask', () => {
    const servers = [server({ always_allow: ['read'] }), server({ name: 'web', always_allow: [] })];
    expect(approvalFor('files', 'read', servers, [])).toBe('always');
    expect(approvalFor('files', 'write', servers, [])).toBe('ask');
    expect(approvalFor('web', 'read', servers, ['web/read'])).toBe('conversation');
    expect(approvalFor('web', 'read', servers, ['files/read'])).toBe('ask');
    expect(approvalFor('gone', 'read', servers, undefined)).toBe('ask');
    const calls = withApprovals([record({ status: 'running' }), record({ id: 'c2', server: 'web', status: 'running' }), record({ id: 'c3', status: 'error' })], servers, []);
    expect(calls.map((c) => c.status)).toEqual(['running', 'awaiting_approval', 'error']);
  });

  it('the step limit is 8 unless set, within 1–50', () => {
    expect(maxToolSteps({ temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null })).toBe(8);
    expect(maxToolSteps({ temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null, max_tool_steps: 3 })).toBe(3);
    expect(maxToolSteps({ temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null, max_tool_steps: 500 })).toBe(50);
    expect(toolStepsProblem(0)).toContain('between 1 and 50');
    expect(toolStepsProblem(2.5)).toContain('whole number');
    expect(toolStepsProblem(null)).toBeNull();
    expect(toolStepsProblem(50)).toBeNull();
  });

  it('calls cut off by a restart are cancelled, saying so, and the reply is interrupted', () => {
    const steps: ToolStep[] = [{ content: '', calls: [record({ status: 'running', result: undefined }), record({ id: 'c2', status: 'awaiting_approval', result: undefined }), record({ id: 'c3' })] }];
    expect(endInterruptedCalls(steps)[0].calls.map((c) => [c.status, c.result])).toEqual([
      ['cancelled', INTERRUPTED_CALL],
      ['cancelled', INTERRUPTED_CALL],
      ['done', 'A'],
    ]);
    const c = restoreInterrupted({ ...newConversation('m'), messages: [msg('assistant', '', { streaming: true, tool_steps: steps })] });
    expect(c.messages[0].error).toBe(INTERRUPTED);
    expect(c.messages[0].tool_steps![0].calls[1].status).toBe('cancelled');
  });

  it('regenerating keeps the tool steps with the version they belong to', () => {
    const m = msg('assistant', 'first', { tool_steps: [{ content: '', calls: [record()] }] });
    const kept = versionsToKeep(m);
    expect(kept[0].tool_steps).toHaveLength(1);
    const second = { ...msg('assistant', 'second'), previous_versions: kept, version_index: 1 };
    const back = showVersion(second, 0);
    expect(back.content).toBe('first');
    expect(back.tool_steps).toHaveLength(1);
    expect(showVersion(back, 1).tool_steps).toBeUndefined();
  });
});

describe('the round of calls (ToolRun)', () => {
  function hooks(over: Partial<ToolRunHooks> = {}) {
    const updates: [string, Partial<ToolCallRecord>][] = [];
    const h: ToolRunHooks = {
      update: (id, patch) => void updates.push([id, patch]),
      call: vi.fn(async (_rid: string, _s: string, tool: string) => ({ text: `ran ${tool}`, is_error: false, duration_ms: 5 })),
      cancel: vi.fn(),
      allow: vi.fn(),
      ...over,
    };
    return { h, updates, last: (id: string) => Object.assign({}, ...updates.filter(([i]) => i === id).map(([, p]) => p)) as Partial<ToolCallRecord> };
  }

  it('runs allowed calls in parallel, each with its own request ID', async () => {
    const started: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { h, last } = hooks({
      call: async (rid, _s, tool) => {
        started.push(rid);
        await gate;
        return { text: tool, is_error: false, duration_ms: 1 };
      },
    });
    const run = new ToolRun(h);
    const done = run.run([record({ id: 'a', tool: 'x', status: 'running' }), record({ id: 'b', tool: 'y', status: 'running' })]);
    await vi.waitFor(() => expect(started).toHaveLength(2)); // both started before either ended
    expect(new Set(started).size).toBe(2);
    release();
    await done;
    expect(last('a')).toMatchObject({ status: 'done', result: 'x' });
    expect(last('b')).toMatchObject({ status: 'done', result: 'y' });
  });

  it('waits for the answer; deny gives the denial result; a tool failure is an error', async () => {
    const { h, last } = hooks({ call: vi.fn(async () => ({ text: 'boom', is_error: true, duration_ms: 2 })) });
    const run = new ToolRun(h);
    const done = run.run([record({ id: 'a', status: 'awaiting_approval' }), record({ id: 'b', status: 'awaiting_approval' })]);
    await Promise.resolve();
    expect(run.waiting).toBe(2);
    expect(run.answer('nope', 'allow')).toBe(false);
    run.answer('a', 'deny');
    run.answer('b', 'allow');
    await done;
    expect(last('a')).toEqual({ status: 'denied', result: DENIED, is_error: true });
    expect(last('b')).toMatchObject({ status: 'error', result: 'boom', is_error: true });
    expect(h.call).toHaveBeenCalledTimes(1);
  });

  it('"for this conversation" allows the same tool waiting in the round and tells the hook', async () => {
    const { h, last } = hooks();
    const run = new ToolRun(h);
    const done = run.run([record({ id: 'a', status: 'awaiting_approval' }), record({ id: 'b', status: 'awaiting_approval' }), record({ id: 'c', tool: 'write', status: 'awaiting_approval' })]);
    await Promise.resolve();
    run.answer('a', 'conversation');
    await vi.waitFor(() => expect(h.call).toHaveBeenCalledTimes(2));
    expect(h.allow).toHaveBeenCalledWith('files', 'read', 'conversation');
    expect(run.waiting).toBe(1); // write still asks
    run.stop();
    await done;
    expect(last('c')).toMatchObject({ status: 'denied' });
  });

  it('stop denies what waits and cancels what runs', async () => {
    let finish!: (r: { text: string; is_error: boolean; duration_ms: number }) => void;
    const { h, last } = hooks({ call: () => new Promise((r) => (finish = r)) });
    const run = new ToolRun(h);
    const done = run.run([record({ id: 'a', status: 'running' }), record({ id: 'b', status: 'awaiting_approval' })]);
    await vi.waitFor(() => expect(finish).toBeTruthy());
    run.stop();
    expect(h.cancel).toHaveBeenCalledTimes(1);
    finish({ text: 'cancelled: stopped', is_error: true, duration_ms: 9 });
    await done;
    expect(last('a')).toMatchObject({ status: 'cancelled', is_error: true });
    expect(last('b')).toMatchObject({ status: 'denied', result: DENIED });
  });

  it('a rejected call (bad request) is an error with the message', async () => {
    const { h, last } = hooks({ call: () => Promise.reject({ code: 'invalid_argument', message: 'unknown server "x"' }) });
    await new ToolRun(h).run([record({ id: 'a', status: 'running' })]);
    expect(last('a')).toMatchObject({ status: 'error', result: 'Error: unknown server "x"', is_error: true });
  });
});

describe('settings text helpers and the card preview', () => {
  it('parses one argument per line and KEY=VALUE lines', () => {
    expect(parseArgs('-y\n\n @scope/server \r\n/home/me/my notes\n')).toEqual(['-y', '@scope/server', '/home/me/my notes']);
    expect(parseEnv('A=1\n\nTOKEN=x=y\n')).toEqual({ env: { A: '1', TOKEN: 'x=y' }, problem: null });
    expect(parseEnv('A=1\nnot a pair').problem).toBe('Environment line 2 is not KEY=VALUE: not a pair');
  });

  it('shows a server as its command line or URL', () => {
    expect(launchLine(server({ command: 'npx', args: ['-y', '/home/me/my notes'] }))).toBe('npx -y "/home/me/my notes"');
    expect(launchLine(server({ command: null, url: 'http://127.0.0.1:8080/mcp' }))).toBe('http://127.0.0.1:8080/mcp');
  });

  it('cuts a long result at 1500 characters until Show all', () => {
    const long = 'x'.repeat(2000);
    expect(previewText(long, false)).toEqual({ shown: 'x'.repeat(1500) + '…', truncated: true });
    expect(previewText(long, true)).toEqual({ shown: long, truncated: false });
    expect(previewText('short', false)).toEqual({ shown: 'short', truncated: false });
  });
});
