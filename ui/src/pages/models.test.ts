import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import Models from './Models.svelte';
import { app } from '../lib/state/app.svelte';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults } from '../test/fixtures';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((a) => (resolve = a));
  return { promise, resolve };
}

describe('Models page: the file dialogs', () => {
  beforeEach(async () => {
    resetMock();
    installDefaults({ models: [] });
    await app.loadSettings();
    await app.refreshModels();
  });

  it('opens one dialog for two clicks, and a cancel changes nothing', async () => {
    const answer = deferred<{ handle: string; path: string } | null>();
    handlers.pick_path = () => answer.promise;
    handlers.import_path = () => new Promise(() => {});
    render(Models);
    await tick();
    const button = screen.getByTestId('import-bundle') as HTMLButtonElement;
    await fireEvent.click(button);
    await fireEvent.click(button);
    expect(callsOf('pick_path')).toHaveLength(1);
    expect(button.disabled).toBe(true);
    answer.resolve(null);
    await vi.waitFor(() => expect(button.disabled).toBe(false));
    expect(callsOf('import_path')).toHaveLength(0);
    expect(screen.queryByTestId('action-error')).toBeNull();
  });

  it('imports a chosen bundle by its handle, never by its path', async () => {
    handlers.pick_path = () => ({ handle: 'h1', path: '/media/usb/bundle' });
    handlers.import_path = () => new Promise(() => {});
    render(Models);
    await tick();
    await fireEvent.click(screen.getByTestId('import-bundle'));
    await vi.waitFor(() => expect(callsOf('import_path')).toHaveLength(1));
    expect(callsOf('import_path')[0].args).toMatchObject({ source: { handle: 'h1' }, name: null });
    await vi.waitFor(() => expect(screen.getByTestId('import-progress').textContent).toContain('/media/usb/bundle'));
  });

  it('treats "a dialog is already open" as nothing chosen, and shows other errors', async () => {
    handlers.pick_path = () => Promise.reject({ code: 'busy', message: 'a file dialog is already open' });
    render(Models);
    await tick();
    await fireEvent.click(screen.getByTestId('import-file'));
    await tick();
    expect(screen.queryByTestId('action-error')).toBeNull();
    handlers.pick_path = () => Promise.reject({ code: 'app', message: 'the file dialog closed without an answer' });
    await fireEvent.click(screen.getByTestId('import-file'));
    await vi.waitFor(() => expect(screen.getByTestId('action-error').textContent).toContain('closed without an answer'));
  });
});
