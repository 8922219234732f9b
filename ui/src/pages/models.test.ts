import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import Models from './Models.svelte';
import { app } from '../lib/state/app.svelte';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults } from '../test/fixtures';
import type { FolderScan, FoundModel, ImportReport } from '../lib/api';
import { transfers } from '../lib/state/transfer.svelte';

function found(name: string, extra: Partial<FoundModel> = {}): FoundModel {
  return {
    id: `${name}.gguf`,
    name,
    note: null,
    files: [`${name}.gguf`],
    projector: null,
    size: 400_000_000,
    architecture: 'qwen2',
    parameters: '494.03M',
    quantization: 'Q4_K_M',
    layout: 'folder',
    ...extra,
  };
}

function scanOf(models: FoundModel[], extra: Partial<FolderScan> = {}): FolderScan {
  return {
    source: { handle: 'h1', path: '/media/usb/bundle' },
    bundle: false,
    models,
    skipped: [],
    skipped_more: 0,
    looked_for: 'Looked for .gguf model files (and their vision projectors) in this folder and the folders in it.',
    ...extra,
  };
}

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
    handlers.scan_import_folder = () => scanOf([], { bundle: true });
    const done = deferred<ImportReport>();
    handlers.import_path = () => done.promise;
    render(Models);
    await tick();
    expect(screen.getByTestId('import-bundle').textContent).toBe('Import folder…');
    await fireEvent.click(screen.getByTestId('import-bundle'));
    await vi.waitFor(() => expect(callsOf('import_path')).toHaveLength(1));
    expect(callsOf('scan_import_folder')[0].args).toEqual({ source: { handle: 'h1' } });
    expect(callsOf('import_path')[0].args).toMatchObject({ source: { handle: 'h1' }, name: null });
    expect(screen.queryByTestId('folder-import')).toBeNull();
    await vi.waitFor(() => expect(screen.getByTestId('import-progress').textContent).toContain('/media/usb/bundle'));
    done.resolve({ models: [], blobs_copied: 0, blobs_linked: 0, blobs_already_present: 0, bytes_copied: 0, bytes_linked: 0, signer: null, warnings: [] });
    await vi.waitFor(() => expect(transfers.busy).toBeNull());
    expect(screen.queryByTestId('import-linked')).toBeNull();
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

describe('Models page: importing from an ordinary folder', () => {
  const three = [
    found('qwen2.5-coder:0.5b-instruct-q4_K_M', {
      id: 'models--Qwen--Qwen2.5-Coder/snapshots/abc/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf',
      files: ['models--Qwen--Qwen2.5-Coder/snapshots/abc/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf'],
      layout: 'Hugging Face cache',
      note: 'qwen2.5-coder:0.5b-instruct-q4_K_M is already in the store; named qwen2.5-coder:0.5b-instruct-q4_K_M-2',
    }),
    found('gemma3:4b-it-q4_0', {
      id: 'lmstudio-community/gemma-3-4b/gemma-3-4b-it-Q4_0.gguf',
      files: ['lmstudio-community/gemma-3-4b/gemma-3-4b-it-Q4_0.gguf'],
      projector: 'lmstudio-community/gemma-3-4b/mmproj-model-f16.gguf',
      architecture: 'gemma3',
      parameters: '3.88B',
      quantization: 'Q4_0',
      layout: 'LM Studio',
      size: 3_000_000_000,
    }),
    found('llama3.3:70b', {
      id: 'big/llama-3.3-70b-00001-of-00003.gguf',
      files: ['big/llama-3.3-70b-00001-of-00003.gguf', 'big/llama-3.3-70b-00002-of-00003.gguf', 'big/llama-3.3-70b-00003-of-00003.gguf'],
      architecture: 'llama',
      parameters: '70.6B',
      size: 42_000_000_000,
    }),
  ];

  beforeEach(async () => {
    resetMock();
    installDefaults({ models: [] });
    transfers.closeFolderScan();
    transfers.dismiss('import');
    await app.loadSettings();
    await app.refreshModels();
    handlers.pick_path = () => ({ handle: 'h1', path: '/media/usb/bundle' });
  });

  async function open(scan: FolderScan) {
    handlers.scan_import_folder = () => scan;
    render(Models);
    await tick();
    await fireEvent.click(screen.getByTestId('import-bundle'));
    await vi.waitFor(() => expect(screen.getByTestId('folder-import')).toBeTruthy());
  }

  const go = () => screen.getByTestId('folder-import-go') as HTMLButtonElement;
  const nameInput = (i: number) => screen.getByTestId(`found-name-${i}`) as HTMLInputElement;
  const check = (i: number) => screen.getByTestId(`found-check-${i}`) as HTMLInputElement;

  it('shows a busy state while the folder is looked through', async () => {
    const answer = deferred<FolderScan>();
    handlers.scan_import_folder = () => answer.promise;
    render(Models);
    await tick();
    await fireEvent.click(screen.getByTestId('import-bundle'));
    await vi.waitFor(() => expect(screen.getByTestId('folder-scanning').textContent).toContain('/media/usb/bundle'));
    expect((screen.getByTestId('import-bundle') as HTMLButtonElement).disabled).toBe(true);
    answer.resolve(scanOf(three));
    await vi.waitFor(() => expect(screen.getByTestId('folder-import')).toBeTruthy());
    expect(screen.queryByTestId('folder-scanning')).toBeNull();
    expect(callsOf('import_path')).toHaveLength(0);
  });

  it('lists the models found, checked, and imports those still checked with their names as edited', async () => {
    let finish!: (r: ImportReport) => void;
    handlers.import_found = () => new Promise((r) => (finish = r));
    await open(scanOf(three, { skipped: [{ path: 'notes/readme.gguf', reason: 'not a GGUF file' }], skipped_more: 4 }));

    const list = screen.getByTestId('folder-import-list');
    expect(list.querySelectorAll('[data-testid^="found-row-"]')).toHaveLength(3);
    expect([0, 1, 2].map((i) => nameInput(i).value)).toEqual(['qwen2.5-coder:0.5b-instruct-q4_K_M', 'gemma3:4b-it-q4_0', 'llama3.3:70b']);
    expect([0, 1, 2].every((i) => check(i).checked)).toBe(true);
    const row0 = screen.getByTestId('found-row-0').textContent!;
    expect(row0).toContain('already in the store');
    expect(row0).toContain('qwen2 · 494.03M · Q4_K_M');
    expect(row0).toContain('Hugging Face cache');
    expect(row0).toContain('400 MB');
    expect(screen.getByTestId('found-row-1').textContent).toContain('with vision projector mmproj-model-f16.gguf');
    expect(screen.getByTestId('found-row-2').textContent).toContain('3 parts');
    expect(screen.getByTestId('folder-import-summary').textContent).toContain('3 models, 45 GB selected');
    const skipped = screen.getByTestId('folder-import-skipped');
    expect(skipped.textContent).toContain('5 files left out');
    expect(skipped.textContent).toContain('notes/readme.gguf');
    expect(skipped.textContent).toContain('not a GGUF file');
    expect(skipped.textContent).toContain('and 4 more');

    await fireEvent.click(check(1));
    await fireEvent.input(nameInput(2), { target: { value: 'team/llama3.3:70b-q4' } });
    expect(screen.getByTestId('folder-import-summary').textContent).toContain('2 models, 42 GB selected');
    expect(go().disabled).toBe(false);
    await fireEvent.click(go());

    await vi.waitFor(() => expect(callsOf('import_found')).toHaveLength(1));
    expect(callsOf('import_found')[0].args).toEqual({
      source: { handle: 'h1' },
      picks: [
        { id: three[0].id, name: 'qwen2.5-coder:0.5b-instruct-q4_K_M' },
        { id: three[2].id, name: 'team/llama3.3:70b-q4' },
      ],
      onProgress: '[channel]',
    });
    expect(callsOf('import_path')).toHaveLength(0);
    await vi.waitFor(() => expect(screen.queryByTestId('folder-import')).toBeNull());
    await vi.waitFor(() => expect(screen.getByTestId('import-progress').textContent).toContain('/media/usb/bundle'));

    finish({
      models: [
        { name: 'qwen2.5-coder:0.5b-instruct-q4_K_M', id: 'a', size: 400e6 },
        { name: 'team/llama3.3:70b-q4', id: 'b', size: 42e9 },
      ],
      blobs_copied: 1,
      blobs_linked: 3,
      blobs_already_present: 0,
      bytes_copied: 400e6,
      bytes_linked: 42e9,
      signer: null,
      warnings: [],
    });
    await vi.waitFor(() => expect(screen.getByTestId('import-result').textContent).toContain('Imported 2 models'));
    expect(screen.getByTestId('import-linked').textContent).toContain('400 MB copied, 42 GB cloned');
    expect(callsOf('list_models').length).toBeGreaterThan(1);
  });

  it('selects all or none', async () => {
    await open(scanOf(three));
    const all = screen.getByTestId('folder-import-all') as HTMLInputElement;
    expect(all.checked).toBe(true);
    await fireEvent.click(all);
    expect([0, 1, 2].some((i) => check(i).checked)).toBe(false);
    expect(go().disabled).toBe(true);
    expect(screen.getByTestId('folder-import-summary').textContent).toContain('0 models, 0 B selected');
    await fireEvent.click(check(0));
    expect(all.indeterminate).toBe(true);
    await fireEvent.click(all);
    expect([0, 1, 2].every((i) => check(i).checked)).toBe(true);
  });

  it('refuses an invalid name and two models with the same name, saying why', async () => {
    handlers.import_found = () => new Promise(() => {});
    await open(scanOf(three));
    await fireEvent.input(nameInput(1), { target: { value: 'bad name!' } });
    expect(go().disabled).toBe(true);
    expect(screen.getByTestId('found-problem-1').textContent).toContain('not allowed');
    expect(nameInput(1).getAttribute('aria-invalid')).toBe('true');
    await fireEvent.click(go());
    expect(callsOf('import_found')).toHaveLength(0);

    // Unchecked, it no longer stands in the way.
    await fireEvent.click(check(1));
    expect(screen.queryByTestId('found-problem-1')).toBeNull();
    expect(go().disabled).toBe(false);

    // The same name (case and an implied :latest aside) on two checked rows.
    await fireEvent.input(nameInput(0), { target: { value: 'Mine' } });
    await fireEvent.input(nameInput(2), { target: { value: 'mine:latest' } });
    expect(go().disabled).toBe(true);
    expect(screen.getByTestId('found-problem-0').textContent).toContain('has this name');
    expect(screen.getByTestId('found-problem-2').textContent).toContain('has this name');
    await fireEvent.input(nameInput(2), { target: { value: 'mine:2' } });
    expect(screen.queryByTestId('found-problem-0')).toBeNull();
    expect(go().disabled).toBe(false);
  });

  it('shows what was looked for and what was left out when no model is found', async () => {
    await open(
      scanOf([], {
        skipped: [
          { path: 'vae.safetensors', reason: 'not a GGUF file (safetensors: convert it to GGUF first)' },
          { path: 'mmproj-f16.gguf', reason: 'a vision projector without its model' },
        ],
      }),
    );
    const empty = screen.getByTestId('folder-import-empty');
    expect(empty.textContent).toContain('Looked for .gguf model files');
    expect(empty.textContent).toContain('vae.safetensors');
    expect(empty.textContent).toContain('convert it to GGUF first');
    expect(empty.textContent).toContain('a vision projector without its model');
    expect(screen.getByTestId('folder-import-skipped').textContent).toContain('2 files left out');
    expect(screen.queryByTestId('folder-import-go')).toBeNull();
    expect(screen.queryByTestId('folder-import-list')).toBeNull();
    await fireEvent.click(screen.getByTestId('folder-import-close'));
    await vi.waitFor(() => expect(screen.queryByTestId('folder-import')).toBeNull());
    expect(callsOf('import_found')).toHaveLength(0);
  });

  it('closes on Cancel and on Escape without importing, and shows a refused name as an import error', async () => {
    await open(scanOf(three));
    await fireEvent.click(screen.getByTestId('folder-import-cancel'));
    await vi.waitFor(() => expect(screen.queryByTestId('folder-import')).toBeNull());

    await fireEvent.click(screen.getByTestId('import-bundle'));
    await vi.waitFor(() => expect(screen.getByTestId('folder-import')).toBeTruthy());
    await fireEvent.keyDown(screen.getByTestId('folder-import'), { key: 'Escape' });
    await vi.waitFor(() => expect(screen.queryByTestId('folder-import')).toBeNull());
    expect(callsOf('import_found')).toHaveLength(0);

    handlers.import_found = () => Promise.reject({ code: 'invalid', message: 'invalid model name "x": the model must be 1 to 80 characters' });
    await fireEvent.click(screen.getByTestId('import-bundle'));
    await vi.waitFor(() => expect(screen.getByTestId('folder-import')).toBeTruthy());
    await fireEvent.click(go());
    await vi.waitFor(() => expect(screen.getByTestId('import-error').textContent).toContain('invalid model name'));
  });

  it('cancels a running folder import with the progress panel’s cancel button', async () => {
    let reject!: (e: unknown) => void;
    handlers.import_found = () => new Promise((_, r) => (reject = r));
    handlers.cancel_transfer = () => reject({ code: 'cancelled', message: 'cancelled' });
    await open(scanOf(three));
    await fireEvent.click(go());
    await vi.waitFor(() => expect(screen.getByTestId('import-cancel')).toBeTruthy());
    await fireEvent.click(screen.getByTestId('import-cancel'));
    await vi.waitFor(() => expect(screen.getByTestId('import-result').textContent).toContain('Import cancelled'));
    expect(callsOf('cancel_transfer')).toHaveLength(1);
    expect(transfers.busy).toBeNull();
  });
});
