import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import Models from './Models.svelte';
import { app } from '../lib/state/app.svelte';
import { transfers } from '../lib/state/transfer.svelte';
import type { PullReport } from '../lib/api';
import { handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, settings } from '../test/fixtures';

const report: PullReport = {
  name: 'gemma3:270m', reference: 'registry.site:5000/library/gemma3:270m', id: 'bd711392fe15'.padEnd(64, '0'),
  size: 291_500_000, blobs_downloaded: 2, blobs_already_present: 0, bytes_downloaded: 291_500_000, bytes_resumed: 0, signer: null, warnings: [],
};

describe('Models page: result panels', () => {
  beforeEach(() => {
    resetMock();
    installDefaults({ models: [] });
    handlers.get_settings = () => ({ ...settings(), registry: 'registry.site:5000' });
  });

  it('a pull result is shown in the app-wide byte format and can be dismissed; so can an error', async () => {
    await app.loadSettings();
    render(Models);
    await tick();
    handlers.pull_from_registry = () => Promise.resolve(report);
    await fireEvent.input(screen.getByTestId('pull-name'), { target: { value: 'gemma3:270m' } });
    await fireEvent.click(screen.getByTestId('pull-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('pull-result').textContent).toContain('Pulled gemma3:270m (291 MB)'));
    await fireEvent.click(screen.getByTestId('pull-dismiss'));
    expect(screen.queryByTestId('pull-result')).toBeNull();
    expect(transfers.pullResult).toBeNull();

    handlers.pull_from_registry = () => Promise.reject({ code: 'pull', message: 'no such model' });
    await fireEvent.input(screen.getByTestId('pull-name'), { target: { value: 'bad:1' } });
    await fireEvent.click(screen.getByTestId('pull-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('pull-error').textContent).toContain('no such model'));
    expect(screen.getByTestId('pull-dismiss').getAttribute('aria-label')).toBe('Dismiss');
    await fireEvent.click(screen.getByTestId('pull-dismiss'));
    expect(screen.queryByTestId('pull-error')).toBeNull();
  });

  it('dismiss clears only the panel it names', () => {
    transfers.exportCancelled = true;
    transfers.importCancelled = '/media/usb/model.zip';
    transfers.dismiss('export');
    expect([transfers.exportCancelled, transfers.importCancelled]).toEqual([false, '/media/usb/model.zip']);
    transfers.dismiss('import');
    expect(transfers.importCancelled).toBeNull();
  });
});
