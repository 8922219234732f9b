import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import ToolCard from './ToolCard.svelte';
import ChatSettings from './ChatSettings.svelte';
import MessageView from './MessageView.svelte';
import { mcp } from '../lib/state/mcp.svelte';
import type { Conversation, ToolCallRecord } from '../lib/api';
import { handlers, resetMock } from '../test/tauri-mock';

const record = (over: Partial<ToolCallRecord> = {}): ToolCallRecord => ({
  id: 'c1', server: 'files', tool: 'read_file', function_name: 'read_file', arguments: { path: '/notes/a.md', lines: [1, 2] }, status: 'done', result: 'contents', is_error: false, duration_ms: 1234, ...over,
});

describe('tool card', () => {
  it('shows tool, server, status, duration, arguments as JSON and the result as plain text', () => {
    render(ToolCard, { props: { call: record({ result: '<img src=x onerror=alert(1)> **not markdown**' }) } });
    const card = screen.getByTestId('tool-card') as HTMLDetailsElement;
    expect(card.tagName).toBe('DETAILS');
    expect(card.open).toBe(false);
    expect(card.querySelector('summary')!.textContent).toMatch(/read_file\s*· files\s*done\s*1\.2 s/);
    expect(screen.getByTestId('tool-arguments').textContent).toBe('{\n  "path": "/notes/a.md",\n  "lines": [\n    1,\n    2\n  ]\n}');
    const result = screen.getByTestId('tool-result');
    expect(result.textContent).toBe('<img src=x onerror=alert(1)> **not markdown**');
    expect(result.querySelector('img, strong')).toBeNull();
    expect(screen.queryByTestId('tool-show-all')).toBeNull();
  });

  it('cuts a long result at ~1500 characters; Show all shows the rest', async () => {
    const long = 'line of output\n'.repeat(200); // 3000 characters
    render(ToolCard, { props: { call: record({ result: long }) } });
    const result = screen.getByTestId('tool-result');
    expect(result.textContent!.length).toBe(1501);
    expect(result.textContent!.endsWith('…')).toBe(true);
    const more = screen.getByTestId('tool-show-all');
    expect(more.textContent).toContain('3000 characters');
    await fireEvent.click(more);
    expect(screen.getByTestId('tool-result').textContent).toBe(long);
    expect(screen.queryByTestId('tool-show-all')).toBeNull();
  });

  it('highlights an error', () => {
    render(ToolCard, { props: { call: record({ status: 'error', result: 'timed out after 60 s', is_error: true }) } });
    const card = screen.getByTestId('tool-card');
    expect(card.classList.contains('failed')).toBe(true);
    expect(card.dataset.status).toBe('error');
    expect(within(card).getByText('Error')).toBeTruthy();
  });

  it('a waiting call is open with the approval buttons, which answer', async () => {
    const onanswer = vi.fn();
    render(ToolCard, { props: { call: record({ status: 'awaiting_approval', result: undefined, duration_ms: undefined }), onanswer } });
    expect((screen.getByTestId('tool-card') as HTMLDetailsElement).open).toBe(true);
    const group = screen.getByRole('group', { name: 'Approve read_file of files' });
    expect(within(group).getAllByRole('button').map((b) => b.textContent)).toEqual(['Allow', 'Allow for this conversation', 'Always allow', 'Deny']);
    await fireEvent.click(screen.getByTestId('tool-allow-conversation'));
    expect(onanswer).toHaveBeenCalledWith('conversation');
    await fireEvent.click(screen.getByTestId('tool-deny'));
    expect(onanswer).toHaveBeenLastCalledWith('deny');
  });

  it('a saved waiting call without an answer handler shows no buttons', () => {
    render(ToolCard, { props: { call: record({ status: 'awaiting_approval', result: undefined }) } });
    expect(screen.queryByTestId('tool-allow')).toBeNull();
  });

  it('in a saved reply: step text (sanitised Markdown) and cards come before the final answer, in order', () => {
    const noop = () => {};
    render(MessageView, {
      props: {
        message: {
          id: 'a', role: 'assistant', content: 'The **answer**.', created: '',
          tool_steps: [
            { content: 'First <script>alert(1)</script>*look*.', calls: [record({ id: 'x' }), record({ id: 'y', tool: 'list' })] },
            { content: '', calls: [record({ id: 'z', tool: 'stat' })] },
          ],
        },
        live: null, last: true, idle: true, onregenerate: noop, onretry: noop, onedit: noop,
      },
    });
    const step = screen.getAllByTestId('tool-step-content');
    expect(step).toHaveLength(1);
    expect(step[0].innerHTML).toContain('<em>look</em>');
    expect(step[0].querySelector('script')).toBeNull();
    const cards = screen.getAllByTestId('tool-card');
    expect(cards.map((c) => c.querySelector('.name')!.textContent)).toEqual(['read_file', 'list', 'stat']);
    const answer = screen.getByTestId('message-content');
    expect(cards[2].compareDocumentPosition(answer) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
    expect(answer.innerHTML).toContain('<strong>answer</strong>');
  });
});

describe('chat settings: tools', () => {
  function conversation(over: Partial<Conversation> = {}): Conversation {
    return {
      id: 'c1', title: 'T', model: 'gemma3:270m', system_prompt: '', draft: '', created: '', updated: '', messages: [],
      parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null }, ...over,
    };
  }
  beforeEach(() => {
    resetMock();
    mcp.reset();
    handlers.mcp_servers = () => [
      { name: 'files', command: 'npx', args: [], env: {}, url: null, always_allow: [] },
      { name: 'web', command: null, args: [], env: {}, url: 'http://h/mcp', always_allow: [] },
    ];
    handlers.model_capabilities = () => ['completion', 'tools'];
  });

  it('offers the configured servers as checkboxes saved on the conversation', async () => {
    const ontoolservers = vi.fn();
    render(ChatSettings, { props: { conversation: conversation({ tool_servers: ['web', 'gone'] }), onsystem: () => {}, onparam: () => {}, ontoolservers } });
    await vi.waitFor(() => expect(screen.getByTestId('tool-server-files')).toBeTruthy());
    expect((screen.getByTestId('tool-server-files') as HTMLInputElement).checked).toBe(false);
    expect((screen.getByTestId('tool-server-web') as HTMLInputElement).checked).toBe(true);
    // Named by the conversation but no longer configured: shown, so it can be unticked.
    expect(screen.getByTestId('tool-server-gone').closest('label')!.textContent).toContain('no longer configured');
    await fireEvent.click(screen.getByTestId('tool-server-files'));
    expect(ontoolservers).toHaveBeenLastCalledWith(['web', 'gone', 'files']);
    await fireEvent.click(screen.getByTestId('tool-server-web'));
    expect(ontoolservers).toHaveBeenLastCalledWith(['gone']);
    expect(screen.getByLabelText('files')).toBeTruthy();
  });

  it('the Tool steps field takes 1–50 (empty = 8) into parameters.max_tool_steps', async () => {
    const onparam = vi.fn();
    render(ChatSettings, { props: { conversation: conversation(), onsystem: () => {}, onparam } });
    await tick();
    const steps = screen.getByTestId('param-max_tool_steps') as HTMLInputElement;
    expect([steps.min, steps.max, steps.placeholder]).toEqual(['1', '50', '8']);
    await fireEvent.input(steps, { target: { value: '12' } });
    expect(onparam).toHaveBeenLastCalledWith('max_tool_steps', 12);
    await fireEvent.input(steps, { target: { value: '0' } });
    expect(screen.getByRole('alert').textContent).toContain('between 1 and 50');
    expect(onparam).toHaveBeenCalledTimes(1);
    await fireEvent.input(steps, { target: { value: '' } });
    expect(onparam).toHaveBeenLastCalledWith('max_tool_steps', null);
  });
});
