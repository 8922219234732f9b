import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import ToolsSettings from './ToolsSettings.svelte';
import { mcp } from '../lib/state/mcp.svelte';
import type { McpServer } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';

const files: McpServer = { name: 'files', command: 'npx', args: ['-y', '@modelcontextprotocol/server-filesystem', '/home/me/notes'], env: {}, url: null, always_allow: ['read_file', 'list'] };

async function setup(servers: McpServer[] = [files]) {
  resetMock();
  mcp.reset();
  let list = servers;
  handlers.mcp_servers = () => list;
  handlers.save_mcp_server = (a: { previous: string | null; server: McpServer }) => (list = [...list.filter((s) => s.name !== a.previous), a.server]);
  handlers.remove_mcp_server = (a: { name: string }) => (list = list.filter((s) => s.name !== a.name));
  handlers.set_tool_always_allow = (a: { server: string; tool: string; allow: boolean }) =>
    (list = list.map((s) => (s.name === a.server ? { ...s, always_allow: s.always_allow.filter((t) => t !== a.tool) } : s)));
  render(ToolsSettings);
  await vi.waitFor(() => expect(mcp.loaded).toBe(true));
  await tick();
}

const rows = () => screen.queryAllByTestId('mcp-server-row');
const input = (id: string, value: string) => fireEvent.input(screen.getByTestId(id), { target: { value } });

describe('Settings → Tools', () => {
  beforeEach(() => mcp.reset());

  it('lists the servers with their command line and always-allowed tools', async () => {
    await setup([files, { name: 'web', command: null, args: [], env: {}, url: 'http://127.0.0.1:8080/mcp', always_allow: [] }]);
    expect(screen.getByTestId('tools-settings')).toBeTruthy();
    expect(rows().map((r) => r.dataset.name)).toEqual(['files', 'web']);
    expect(within(rows()[0]).getByTestId('mcp-server-line').textContent).toBe('npx -y @modelcontextprotocol/server-filesystem /home/me/notes');
    expect(within(rows()[1]).getByTestId('mcp-server-line').textContent).toBe('http://127.0.0.1:8080/mcp');
    expect(within(rows()[0]).getAllByTestId('mcp-always-allowed').map((e) => e.textContent!.replace('×', '').trim())).toEqual(['read_file', 'list']);
  });

  it('adds a command server: arguments one per line, environment KEY=VALUE', async () => {
    await setup([]);
    await fireEvent.click(screen.getByTestId('mcp-add'));
    await input('mcp-name', 'git');
    await input('mcp-command', 'uvx');
    await input('mcp-args', 'mcp-server-git\n--repository\n/home/me/my repo\n');
    await input('mcp-env', 'GIT_AUTHOR=me\nTOKEN=a=b');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    await vi.waitFor(() => expect(rows()).toHaveLength(1));
    expect(callsOf('save_mcp_server')[0].args).toEqual({
      previous: null,
      server: { name: 'git', command: 'uvx', args: ['mcp-server-git', '--repository', '/home/me/my repo'], env: { GIT_AUTHOR: 'me', TOKEN: 'a=b' }, url: null, always_allow: [] },
    });
    expect(screen.queryByTestId('mcp-save')).toBeNull();
    expect(screen.getByTestId('mcp-note').textContent).toBe('Saved git.');
  });

  it('adds a URL server', async () => {
    await setup([]);
    await fireEvent.click(screen.getByTestId('mcp-add'));
    await input('mcp-name', 'web');
    await input('mcp-url', 'http://127.0.0.1:8080/mcp');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    await vi.waitFor(() => expect(rows()).toHaveLength(1));
    expect(callsOf('save_mcp_server')[0].args.server).toEqual({ name: 'web', command: null, args: [], env: {}, url: 'http://127.0.0.1:8080/mcp', always_allow: [] });
  });

  it('checks the form before asking the backend', async () => {
    await setup([]);
    await fireEvent.click(screen.getByTestId('mcp-add'));
    await input('mcp-name', 'x');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    expect(screen.getByTestId('mcp-error').textContent).toBe('Give a command to start or a URL to connect to.');
    await input('mcp-command', 'run');
    await input('mcp-url', 'http://h/mcp');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    expect(screen.getByTestId('mcp-error').textContent).toBe('Give either a command or a URL, not both.');
    await input('mcp-url', '');
    await input('mcp-env', 'oops');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    expect(screen.getByTestId('mcp-error').textContent).toContain('not KEY=VALUE');
    expect(callsOf('save_mcp_server')).toHaveLength(0);
  });

  it('edits a server in place, keeping its always-allowed tools', async () => {
    await setup();
    await fireEvent.click(within(rows()[0]).getByTestId('mcp-edit'));
    expect((screen.getByTestId('mcp-args') as HTMLTextAreaElement).value).toBe('-y\n@modelcontextprotocol/server-filesystem\n/home/me/notes');
    await input('mcp-name', 'notes');
    await input('mcp-args', '-y\n@modelcontextprotocol/server-filesystem\n/home/me/other');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    await vi.waitFor(() => expect(rows().map((r) => r.dataset.name)).toEqual(['notes']));
    expect(callsOf('save_mcp_server')[0].args).toEqual({
      previous: 'files',
      server: { ...files, name: 'notes', args: ['-y', '@modelcontextprotocol/server-filesystem', '/home/me/other'] },
    });
  });

  it('a cancelled confirmation changes nothing and says so quietly; other errors show their message', async () => {
    await setup([]);
    handlers.save_mcp_server = () => Promise.reject({ code: 'not_confirmed', message: 'not confirmed in Airlock\'s dialog; nothing was done' });
    await fireEvent.click(screen.getByTestId('mcp-add'));
    await input('mcp-name', 'evil');
    await input('mcp-command', 'curl');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    await vi.waitFor(() => expect(screen.getByTestId('mcp-note').textContent).toBe('Not saved: you cancelled the confirmation.'));
    expect(screen.getByTestId('mcp-note').getAttribute('role')).toBe('status');
    expect(screen.queryByRole('alert')).toBeNull();
    expect(rows()).toHaveLength(0);
    expect(mcp.servers).toEqual([]);

    handlers.save_mcp_server = () => Promise.reject({ code: 'invalid_argument', message: '"e vil" is not a server name' });
    await input('mcp-name', 'e vil');
    await fireEvent.click(screen.getByTestId('mcp-save'));
    await vi.waitFor(() => expect(screen.getByTestId('mcp-error').textContent).toBe('"e vil" is not a server name'));
    expect(screen.getByTestId('mcp-error').getAttribute('role')).toBe('alert');
    expect(rows()).toHaveLength(0);
  });

  it('removes a server after confirming in the window', async () => {
    await setup();
    await fireEvent.click(within(rows()[0]).getByTestId('mcp-remove'));
    expect(callsOf('remove_mcp_server')).toHaveLength(0);
    await fireEvent.click(screen.getByTestId('confirm-yes'));
    await vi.waitFor(() => expect(rows()).toHaveLength(0));
    expect(callsOf('remove_mcp_server')[0].args).toEqual({ name: 'files' });
  });

  it('takes a tool off the always-allowed list', async () => {
    await setup();
    await fireEvent.click(screen.getByLabelText('Stop always allowing read_file of files'));
    await vi.waitFor(() => expect(screen.getAllByTestId('mcp-always-allowed')).toHaveLength(1));
    expect(callsOf('set_tool_always_allow')[0].args).toEqual({ server: 'files', tool: 'read_file', allow: false });
  });

  it('imports mcpServers JSON; a cancelled confirmation imports nothing; a bad file shows why', async () => {
    await setup([]);
    const json = '{"mcpServers": {"files": {"command": "npx", "args": ["-y", "fs"]}, "web": {"url": "http://127.0.0.1:8080/mcp"}}}';
    handlers.import_mcp_servers = () => Promise.reject({ code: 'not_confirmed', message: 'not confirmed in Airlock\'s dialog; nothing was done' });
    await input('mcp-import-json', json);
    await fireEvent.click(screen.getByTestId('mcp-import'));
    await vi.waitFor(() => expect(screen.getByTestId('mcp-note').textContent).toBe('Not saved: you cancelled the confirmation.'));
    expect(rows()).toHaveLength(0);

    handlers.import_mcp_servers = () => Promise.reject({ code: 'invalid_argument', message: 'it is not valid JSON (line 1)' });
    await fireEvent.click(screen.getByTestId('mcp-import'));
    await vi.waitFor(() => expect(screen.getByTestId('mcp-import-error').textContent).toBe('it is not valid JSON (line 1)'));

    handlers.import_mcp_servers = () => [
      { name: 'files', command: 'npx', args: ['-y', 'fs'], env: {}, url: null, always_allow: [] },
      { name: 'web', command: null, args: [], env: {}, url: 'http://127.0.0.1:8080/mcp', always_allow: [] },
    ];
    await fireEvent.click(screen.getByTestId('mcp-import'));
    await vi.waitFor(() => expect(rows()).toHaveLength(2));
    expect(callsOf('import_mcp_servers').at(-1)!.args).toEqual({ json });
    expect(screen.getByTestId('mcp-note').textContent).toBe('Imported 2 servers.');
    expect((screen.getByTestId('mcp-import-json') as HTMLTextAreaElement).value).toBe('');
  });
});
