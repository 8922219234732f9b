import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import Models from './Models.svelte';
import Settings from './Settings.svelte';
import { app } from '../lib/state/app.svelte';
import type { Progress, PullReport } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, settings } from '../test/fixtures';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

const report: PullReport = {
  name: 'gemma3:270m',
  reference: 'registry.site:5000/library/gemma3:270m',
  id: 'bd711392fe15'.padEnd(64, '0'),
  size: 253e6,
  blobs_downloaded: 2,
  blobs_already_present: 0,
  bytes_downloaded: 253e6,
  bytes_resumed: 0,
  signer: { key_id: 'ABCDEF0123456789', trusted_comment: 'site key' },
  warnings: [],
};

describe('Models page: pull from the site registry', () => {
  beforeEach(() => {
    resetMock();
    installDefaults({ models: [] });
  });

  it('offers no pull field while no registry is configured', async () => {
    await app.loadSettings();
    render(Models);
    await tick();
    expect(screen.queryByTestId('pull-form')).toBeNull();
  });

  it('pulls with progress, shows the result, and a cancel says nothing was added', async () => {
    handlers.get_settings = () => ({ ...settings(), registry: 'registry.site:5000' });
    await app.loadSettings();
    await app.refreshModels();
    render(Models);
    await tick();
    expect(screen.getByTestId('pull-form').textContent).toContain('registry.site:5000');

    let d = deferred<PullReport>();
    let progress: ((p: Progress) => void) | null = null;
    handlers.pull_from_registry = (a: { name: string; onProgress: { onmessage: (p: Progress) => void } }) => {
      progress = (p) => a.onProgress.onmessage(p);
      return d.promise;
    };
    await fireEvent.input(screen.getByTestId('pull-name'), { target: { value: ' gemma3:270m ' } });
    await fireEvent.click(screen.getByTestId('pull-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('pull-progress')).toBeTruthy());
    expect(callsOf('pull_from_registry')[0].args).toMatchObject({ name: 'gemma3:270m' });
    expect((screen.getByTestId('pull-submit') as HTMLButtonElement).disabled).toBe(true);
    progress!({ phase: 'pulling', item: 'registry.site:5000/library/gemma3:270m pulling a5fd3b62230a', done_bytes: 100e6, total_bytes: 253e6 });
    await vi.waitFor(() => expect(screen.getByTestId('pull-progress').textContent).toContain('pulling a5fd3b62230a'));
    d.resolve(report);
    await vi.waitFor(() => expect(screen.getByTestId('pull-result').textContent).toContain('Pulled gemma3:270m'));
    expect(screen.getByTestId('pull-signer').textContent).toContain('ABCDEF0123456789');
    expect(screen.queryByTestId('pull-progress')).toBeNull();

    // Cancel: the command rejects with "cancelled".
    d = deferred<PullReport>();
    handlers.pull_from_registry = () => d.promise;
    handlers.cancel_transfer = () => d.reject({ code: 'cancelled', message: 'cancelled; nothing was published' });
    await fireEvent.input(screen.getByTestId('pull-name'), { target: { value: 'big:1' } });
    await fireEvent.click(screen.getByTestId('pull-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('pull-cancel')).toBeTruthy());
    await fireEvent.click(screen.getByTestId('pull-cancel'));
    await vi.waitFor(() => expect(screen.getByTestId('pull-result').textContent).toContain('Pull cancelled'));
    expect(callsOf('cancel_transfer')).toHaveLength(1);

    // A refusal names what went wrong.
    handlers.pull_from_registry = () => Promise.reject({ code: 'pull', message: 'blob sha256:abc…: the registry\'s copy is damaged' });
    await fireEvent.input(screen.getByTestId('pull-name'), { target: { value: 'bad:1' } });
    await fireEvent.click(screen.getByTestId('pull-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('pull-error').textContent).toContain("registry's copy is damaged"));
  });

  it('saves the registry in Settings and shows a refused address', async () => {
    await app.loadSettings();
    handlers.set_registry = (a: { registry: string | null }) => (a.registry === 'bad address' ? Promise.reject({ code: 'invalid_argument', message: 'invalid registry address "bad address"' }) : undefined);
    render(Settings);
    await tick();
    await fireEvent.input(screen.getByTestId('registry-input'), { target: { value: 'bad address' } });
    await fireEvent.click(screen.getByTestId('registry-save'));
    await vi.waitFor(() => expect(screen.getByTestId('registry-error').textContent).toContain('invalid registry address'));
    await fireEvent.input(screen.getByTestId('registry-input'), { target: { value: ' registry.site:5000 ' } });
    await fireEvent.click(screen.getByTestId('registry-save'));
    await vi.waitFor(() => expect(app.settings?.registry).toBe('registry.site:5000'));
    expect(callsOf('set_registry').at(-1)!.args).toEqual({ registry: 'registry.site:5000' });
  });

  it('keeps the saved registry when its native confirmation is cancelled', async () => {
    await app.loadSettings();
    if (app.settings) app.settings.registry = 'registry.site:5000';
    handlers.set_registry = () => Promise.reject({ code: 'not_confirmed', message: 'cancelled' });
    render(Settings);
    await tick();
    await fireEvent.input(screen.getByTestId('registry-input'), { target: { value: 'http://attacker.example' } });
    await fireEvent.click(screen.getByTestId('registry-save'));
    await vi.waitFor(() => expect((screen.getByTestId('registry-input') as HTMLInputElement).value).toBe('registry.site:5000'));
    expect(screen.queryByTestId('registry-error')).toBeNull();
    expect(app.settings?.registry).toBe('registry.site:5000');
  });
});
