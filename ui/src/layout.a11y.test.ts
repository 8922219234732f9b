import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('./test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import App from './App.svelte';
import ProgressPanel from './components/ProgressPanel.svelte';
import { app } from './lib/state/app.svelte';
import { chat } from './lib/state/chat.svelte';
import { layout, NARROW_QUERY } from './lib/state/layout.svelte';
import { replyAnnouncement } from './lib/announce';
import type { ChatEvent } from './lib/api';
import { callsOf, handlers, resetMock } from './test/tauri-mock';
import { installDefaults, settings } from './test/fixtures';

/** The window as narrow as its 720 px minimum: the breakpoint query matches. */
function windowWidth(narrow: boolean) {
  vi.spyOn(window, 'matchMedia').mockImplementation(
    (query: string) =>
      ({ matches: query === NARROW_QUERY ? narrow : false, media: query, addEventListener: () => {}, removeEventListener: () => {} }) as unknown as MediaQueryList,
  );
}

async function start(ui: Record<string, unknown> = {}) {
  resetMock();
  installDefaults();
  handlers.get_settings = () => ({ ...settings(), ui });
  chat.live = null;
  chat.setConversations([]);
  render(App);
  await vi.waitFor(() => expect(app.ready).toBe(true));
  await tick();
}

describe('sidebars at small window sizes', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    app.ui = {};
  });

  it('collapse below the breakpoint; the toggle opens them and the choice is remembered', async () => {
    windowWidth(true);
    await start();
    expect(layout.narrow).toBe(true);
    const nav = screen.getByTestId('toggle-nav');
    expect(nav.getAttribute('aria-expanded')).toBe('false');
    expect(document.querySelector('.shell')!.classList.contains('collapsed')).toBe(true);
    // Collapsed nav buttons keep their names for screen readers.
    expect(screen.getByRole('button', { name: 'Models' })).toBeTruthy();
    const list = screen.getByTestId('conversation-list');
    expect(list.hidden).toBe(true);

    await fireEvent.click(nav);
    await fireEvent.click(screen.getByTestId('toggle-conversations'));
    await tick();
    expect(nav.getAttribute('aria-expanded')).toBe('true');
    expect(screen.getByTestId('conversation-list').hidden).toBe(false);
    const saved = callsOf('set_ui_state').map((c) => c.args.ui as Record<string, unknown>);
    expect(saved.at(-1)).toMatchObject({ nav_collapsed: false, conversations_collapsed: false });
  });

  it('a remembered choice wins over the width; wide windows start with both open', async () => {
    windowWidth(true);
    await start({ nav_collapsed: false });
    expect(screen.getByTestId('toggle-nav').getAttribute('aria-expanded')).toBe('true');
    expect(screen.getByTestId('conversation-list').hidden).toBe(true);
    vi.restoreAllMocks();
    document.body.innerHTML = '';

    windowWidth(false);
    await start();
    expect(screen.getByTestId('toggle-nav').getAttribute('aria-expanded')).toBe('true');
    expect(screen.getByTestId('conversation-list').hidden).toBe(false);
  });
});

describe('accessibility', () => {
  beforeEach(() => windowWidth(false));
  afterEach(() => vi.restoreAllMocks());

  it('the progress panel is a progressbar with values, busy only while the work runs', async () => {
    const view = (fraction: number | null) => ({ phase: 'importing', item: 'gemma3 sha256:a5fd', done_bytes: 100e6, total_bytes: 250e6, rate: null, eta: null, fraction });
    const props = { title: 'Importing', cancelling: false, oncancel: () => {}, testid: 'p', canceltestid: 'c' };
    const { rerender } = render(ProgressPanel, { props: { ...props, view: view(0.4) } });
    const bar = screen.getByRole('progressbar', { name: 'Importing' });
    expect([bar.getAttribute('aria-valuemin'), bar.getAttribute('aria-valuemax'), bar.getAttribute('aria-valuenow')]).toEqual(['0', '100', '40']);
    expect(bar.getAttribute('aria-valuetext')).toBe('40.0 %, 100 MB of 250 MB');
    expect(screen.getByTestId('p').getAttribute('aria-busy')).toBe('true');
    await rerender({ ...props, view: view(1) });
    expect(screen.getByTestId('p').getAttribute('aria-busy')).toBe('false');
    await rerender({ ...props, view: view(null) });
    expect(bar.hasAttribute('aria-valuenow')).toBe(false); // unknown total: indeterminate
  });

  it('the typing indicator is a status, and a finished reply is announced once, briefly', async () => {
    await start();
    let channel: { onmessage: (e: ChatEvent) => void } | null = null;
    handlers.start_chat = (a: { onEvent: { onmessage: (e: ChatEvent) => void } }) => void (channel = a.onEvent);
    const input = screen.getByTestId('chat-input');
    await fireEvent.input(input, { target: { value: 'Hello' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await vi.waitFor(() => expect(channel).not.toBeNull());
    expect(screen.getByTestId('typing').getAttribute('role')).toBe('status');
    const region = screen.getByTestId('reply-announcement');
    expect([region.getAttribute('aria-live'), region.textContent]).toEqual(['polite', '']);
    channel!.onmessage({ kind: 'piece', text: 'Hi there, how can I help you today?', tokens: 9 });
    await tick();
    expect(region.textContent).toBe(''); // not every token
    channel!.onmessage({ kind: 'done', stats: { done_reason: 'stop', prompt_tokens: 5, eval_tokens: 9, prompt_eval_ms: 1, eval_ms: 1, load_ms: 0, tokens_per_second: 9 } });
    await vi.waitFor(() => expect(region.textContent).toBe('Reply finished, 8 words: Hi there, how can I help you today?'));
  });

  it('announcements stay short and say when a reply failed or was stopped', () => {
    const long = 'word '.repeat(100);
    expect(replyAnnouncement(long, {}).length).toBeLessThan(120);
    expect(replyAnnouncement('partial', { stopped: true })).toBe('Reply stopped, 1 word: partial');
    expect(replyAnnouncement('', { error: 'the model is missing' })).toBe('The reply failed: the model is missing');
  });
});
