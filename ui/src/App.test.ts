import { describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('./test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import App from './App.svelte';
import { handlers, resetMock, callsOf } from './test/tauri-mock';
import { installDefaults, model, settings } from './test/fixtures';
import type { HardwareReport, ImportReport, Progress } from './lib/api';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => ((resolve = a), (reject = b)));
  return { promise, resolve, reject };
}

const hwReport: HardwareReport = {
  cpu: { model: 'AMD Ryzen 7 5800X', physical_cores: 8, logical_cores: 16, threads_used: 8, cpu_variant: 'x86-64-v3' },
  memory: { total_bytes: 32 * 2 ** 30, available_bytes: 20 * 2 ** 30 },
  gpus: [],
  gpu_backends_built: [],
  no_gpu_reason: 'This build has no GPU backend.',
  loaded: [],
  models: [
    {
      name: 'gemma3:270m',
      num_ctx: 4096,
      parallel: 2,
      layers: 18,
      fit: {
        verdict: 'partial_offload',
        layers: 10,
        of: 18,
        need_bytes: 1e9,
        weights_bytes: 5e8,
        kv_bytes: 3e8,
        checkpoint_bytes: 6e7,
        overhead_bytes: 2e8,
        vram_free_bytes: 0,
        ram_available_bytes: 2e10,
        explanation: 'needs 1 GB; 10 of 18 layers fit in VRAM',
      },
    },
    { name: 'broken', error: 'unsupported architecture "foo"' },
  ],
};

describe('App', () => {
  it('loads, marks itself ready, and navigates', async () => {
    resetMock();
    installDefaults({ models: [model('gemma3:270m'), model('broken', false)] });
    handlers.hardware = () => hwReport;
    render(App);
    await vi.waitFor(() => expect(document.body.dataset.ready).toBe('true'));
    expect(callsOf('subscribe_drops')).toHaveLength(1);
    expect(screen.getByTestId('model-picker')).toBeTruthy();

    await fireEvent.click(screen.getByTestId('nav-models'));
    expect(screen.getAllByTestId('model-row').map((r) => r.dataset.name)).toEqual(['broken', 'gemma3:270m']);

    await fireEvent.click(screen.getByTestId('nav-hardware'));
    await vi.waitFor(() => expect(screen.getByTestId('hw-cpu').textContent).toContain('AMD Ryzen 7 5800X'));
    expect(screen.getByTestId('hw-threads').textContent).toBe('8');
    expect(screen.getByTestId('hw-no-gpu-reason').textContent).toContain('no GPU backend');
    expect(screen.getByTestId('hw-backends').textContent).toBe('none');
    const ram = screen.getByRole('meter', { name: 'Memory in use' });
    expect([ram.getAttribute('aria-valuemin'), ram.getAttribute('aria-valuemax'), ram.getAttribute('aria-valuenow')]).toEqual(['0', String(32 * 2 ** 30), String(12 * 2 ** 30)]);
    expect(ram.getAttribute('aria-valuetext')).toBe('12 GB in use of 34 GB');
    const fits = screen.getAllByTestId('hw-fit');
    expect(fits.map((f) => [f.dataset.name, f.dataset.verdict])).toEqual([
      ['gemma3:270m', 'partial_offload'],
      ['broken', 'error'],
    ]);
    expect(fits[0].textContent).toContain('Partial offload: 10 of 18 layers');
    expect(fits[0].textContent).toContain('KV cache 300 MB, checkpoints 60 MB, overhead 200 MB');
    expect(fits[1].textContent).toContain('unsupported architecture');
    const d = deferred<HardwareReport>();
    handlers.hardware = () => d.promise;
    await fireEvent.click(screen.getByTestId('hw-refresh'));
    expect((screen.getByTestId('hw-refresh') as HTMLButtonElement).disabled).toBe(true);
    d.resolve({
      ...hwReport,
      gpus: [
        { name: 'RTX 4090', device: 'CUDA0', backend: 'CUDA', memory_total_bytes: 24e9, memory_free_bytes: 20e9, driver: '550' },
        { name: 'device 0 of RPC worker 10.0.9.21:50052', device: 'RPC0[10.0.9.21:50052]', backend: 'RPC', memory_total_bytes: 48e9, memory_free_bytes: 40e9, driver: null },
      ],
      no_gpu_reason: null,
      gpu_backends_built: ['CUDA'],
      rpc_workers: [
        { endpoint: '10.0.9.21:50052', devices: [], error: null },
        { endpoint: '10.0.9.22:50052', devices: [], error: 'nothing listens on 10.0.9.22:50052 (is `airlock rpc-worker` running there?)' },
      ],
      loaded: [
        {
          name: 'gemma3:270m',
          runs_on: '100% GPU (CUDA0, RPC0[10.0.9.21:50052], 19/19 layers)',
          devices: [
            { name: 'CUDA0', bytes: 1e9, layers: 12 },
            { name: 'RPC0[10.0.9.21:50052]', bytes: 6e8, layers: 7 },
          ],
          ram_bytes: 1e8,
        },
        { name: 'qwen:7b', runs_on: '48%/52% CPU/GPU (CUDA0, 14/29 layers)', devices: [{ name: 'CUDA0', bytes: 2e9 }], ram_bytes: 3e9 },
      ],
    });
    await vi.waitFor(() => expect(screen.getAllByTestId('hw-gpu')).toHaveLength(2));
    expect(screen.getAllByTestId('hw-gpu')[1].textContent).toContain('RPC0[10.0.9.21:50052]');
    expect(screen.getAllByTestId('hw-rpc-left-out').map((p) => p.textContent)).toEqual([expect.stringContaining('RPC worker 10.0.9.22:50052 left out: nothing listens')]);
    expect(screen.getByTestId('hw-backends').textContent).toBe('CUDA');
    // One bar per device: each loaded model's share of the 24 GB, and the rest in use by others.
    const segments = screen.getAllByTestId('hw-gpu-segment').filter((s) => s.closest('[data-device="CUDA0"]'));
    expect(segments.map((s) => [s.dataset.model, s.style.width])).toEqual([
      ['gemma3:270m', '4.17%'],
      ['qwen:7b', '8.33%'],
      ['', '4.17%'],
    ]);
    const gpu = screen.getAllByTestId('hw-gpu-use')[0].querySelector('[role="meter"]')!;
    expect([gpu.getAttribute('aria-valuemax'), gpu.getAttribute('aria-valuenow')]).toEqual([String(24e9), String(4e9)]);
    expect(screen.getAllByTestId('hw-loaded').map((l) => l.textContent)).toEqual([
      expect.stringContaining('CUDA0 1 GB (12 layers), RPC0[10.0.9.21:50052] 600 MB (7 layers)'),
      expect.stringContaining('48%/52% CPU/GPU'),
    ]);

    await fireEvent.click(screen.getByTestId('nav-settings'));
    expect(screen.getByTestId('store-path').textContent).toBe(settings().store_path);
    expect(screen.getByTestId('store-source').textContent).toBe('default');
    handlers.set_theme = () => undefined;
    await fireEvent.change(screen.getByTestId('theme'), { target: { value: 'dark' } });
    expect(document.documentElement.dataset.theme).toBe('dark');
    expect(callsOf('set_theme')[0].args).toEqual({ theme: 'dark' });

    // Turning the server on is cancelled in the app's native dialog: the box is unticked again, no error.
    handlers.set_api_server = () => Promise.reject({ code: 'not_confirmed', message: 'not confirmed in Airlock\'s dialog; nothing was done' });
    const enabled = screen.getByTestId('api-enabled') as HTMLInputElement;
    await fireEvent.click(enabled);
    await fireEvent.click(screen.getByTestId('api-apply'));
    await vi.waitFor(() => expect(enabled.checked).toBe(false));
    expect(screen.queryByText(/not confirmed/)).toBeNull();

    handlers.set_api_server = (a: { enabled: boolean; port: number; token: string | null }) => ({
      enabled: a.enabled,
      port: a.port,
      token: a.token,
      running: true,
      url: `http://127.0.0.1:${a.port}`,
      error: null,
    });
    await fireEvent.click(screen.getByTestId('api-enabled'));
    await fireEvent.input(screen.getByTestId('api-port'), { target: { value: '11500' } });
    await fireEvent.click(screen.getByTestId('api-apply'));
    await vi.waitFor(() => expect(screen.getByTestId('api-status').textContent).toContain('http://127.0.0.1:11500'));
    expect(callsOf('set_api_server')[1].args).toEqual({ enabled: true, port: 11500, token: null });

    handlers.set_signature_policy = () => undefined;
    await fireEvent.change(screen.getByTestId('signature-policy'), { target: { value: 'require' } });
    expect(callsOf('set_signature_policy')[0].args).toEqual({ policy: 'require' });

    // Lowering it is refused in the app's native dialog: the page shows the old policy, no error.
    handlers.set_signature_policy = () => Promise.reject({ code: 'not_confirmed', message: 'not confirmed in Airlock\'s dialog; nothing was done' });
    const policy = screen.getByTestId('signature-policy') as HTMLSelectElement;
    await fireEvent.change(policy, { target: { value: 'off' } });
    expect(callsOf('set_signature_policy')[1].args).toEqual({ policy: 'off' });
    await vi.waitFor(() => expect(policy.value).toBe('require'));
    expect(screen.queryByText(/not confirmed/)).toBeNull();
  });

  it('trusts a key through the key dialog by handle, and a refused confirmation trusts nothing', async () => {
    resetMock();
    installDefaults();
    render(App);
    await vi.waitFor(() => expect(document.body.dataset.ready).toBe('true'));
    await fireEvent.click(screen.getByTestId('nav-settings'));
    handlers.pick_path = () => ({ handle: 'h-pub', path: '/keys/friend.pub' });
    handlers.trust_add = () => Promise.reject({ code: 'not_confirmed', message: 'not confirmed' });
    await fireEvent.click(screen.getByTestId('trust-add'));
    await vi.waitFor(() => expect(callsOf('trust_add')).toHaveLength(1));
    expect(callsOf('trust_add')[0].args).toEqual({ handle: 'h-pub' });
    expect(screen.queryByRole('alert')).toBeNull();
    handlers.trust_add = () => 'ABCDEF0123456789';
    await fireEvent.click(screen.getByTestId('trust-add'));
    await vi.waitFor(() => expect(screen.getByText('ABCDEF0123456789')).toBeTruthy());
  });

  it('imports with progress, shows the result, a refusal, a cancellation, and deletes with confirmation', async () => {
    resetMock();
    installDefaults();
    render(App);
    await vi.waitFor(() => expect(document.body.dataset.ready).toBe('true'));
    await fireEvent.click(screen.getByTestId('nav-models'));

    // Success with progress.
    let d = deferred<ImportReport>();
    let progress: ((p: Progress) => void) | null = null;
    handlers.import_path = (a: { path: string; name: string | null; onProgress: { onmessage: (p: Progress) => void } }) => {
      progress = (p) => a.onProgress.onmessage(p);
      return d.promise;
    };
    await fireEvent.input(screen.getByTestId('import-path'), { target: { value: '/media/usb/models.zip' } });
    await fireEvent.click(screen.getByTestId('import-path-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('import-progress')).toBeTruthy());
    expect(callsOf('import_path')[0].args).toMatchObject({ source: { typed: '/media/usb/models.zip' }, name: null });
    progress!({ phase: 'importing', item: 'gemma3:270m sha256:abcd', done_bytes: 50, total_bytes: 100 });
    await vi.waitFor(() => expect(screen.getByTestId('import-progress').textContent).toContain('gemma3:270m sha256:abcd'));
    d.resolve({
      models: [{ name: 'gemma3:270m', id: 'x', size: 291e6 }],
      blobs_copied: 3,
      blobs_linked: 0,
      blobs_already_present: 1,
      bytes_copied: 291e6,
      bytes_linked: 0,
      signer: { key_id: 'ABCDEF0123456789', trusted_comment: 'airlock test key' },
      warnings: ['license not included'],
    });
    await vi.waitFor(() => expect(screen.getByTestId('import-result').textContent).toContain('ABCDEF0123456789'));
    expect(screen.queryByTestId('import-progress')).toBeNull();
    expect(screen.getByTestId('import-result').textContent).toContain('airlock test key');
    expect(screen.getByTestId('import-result').textContent).toContain('license not included');

    // Refusal.
    handlers.import_path = () => Promise.reject({ code: 'import', message: 'sha256 mismatch in blobs/sha256-abc (models.zip)' });
    await fireEvent.input(screen.getByTestId('import-path'), { target: { value: '/x.zip' } });
    await fireEvent.click(screen.getByTestId('import-path-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('import-error').textContent).toContain('sha256 mismatch in blobs/sha256-abc'));

    // Cancellation.
    d = deferred<ImportReport>();
    handlers.import_path = () => d.promise;
    handlers.cancel_transfer = () => d.reject({ code: 'cancelled', message: 'cancelled' });
    await fireEvent.input(screen.getByTestId('import-path'), { target: { value: '/y.gguf' } });
    await fireEvent.input(screen.getByTestId('import-name'), { target: { value: 'mine:latest' } });
    await fireEvent.click(screen.getByTestId('import-path-submit'));
    expect(callsOf('import_path').at(-1)!.args).toMatchObject({ source: { typed: '/y.gguf' }, name: 'mine:latest' });
    await vi.waitFor(() => expect(screen.getByTestId('import-cancel')).toBeTruthy());
    await fireEvent.click(screen.getByTestId('import-cancel'));
    await vi.waitFor(() => expect(screen.getByTestId('import-result').textContent).toContain('Nothing was imported'));

    // A typed path refused in the app's native confirmation: nothing imported, no error.
    handlers.import_path = () => Promise.reject({ code: 'not_confirmed', message: 'not confirmed' });
    await fireEvent.input(screen.getByTestId('import-path'), { target: { value: '/etc/crafted' } });
    await fireEvent.click(screen.getByTestId('import-path-submit'));
    await vi.waitFor(() => expect(screen.getByTestId('import-result').textContent).toContain('Nothing was imported from /etc/crafted'));
    expect(screen.queryByTestId('import-error')).toBeNull();

    // Delete with confirmation.
    handlers.delete_model = () => undefined;
    handlers.model_details = () => ({ ...model('gemma3:270m'), template: '{{ .Prompt }}', metadata: [['general.architecture', 'gemma3']] });
    await fireEvent.click(screen.getAllByTestId('model-row')[0]);
    await vi.waitFor(() => expect(screen.getByTestId('model-details').textContent).toContain('general.architecture'));
    await fireEvent.click(screen.getAllByTestId('model-delete')[0]);
    expect(callsOf('delete_model')).toHaveLength(0);
    await fireEvent.click(screen.getByTestId('confirm-yes'));
    await vi.waitFor(() => expect(callsOf('delete_model')).toHaveLength(1));
    expect(callsOf('delete_model')[0].args).toEqual({ name: 'gemma3:270m' });
  });

  it('exports the chosen models with options', async () => {
    resetMock();
    installDefaults({ models: [model('a:1'), model('b:2')] });
    handlers.export_models = () => ({ models: [{ name: 'a:1', id: 'x', size: 1 }], blobs_written: 2, blobs_excluded: 0, bytes_written: 10, outputs: ['/out/m.zip.001', '/out/m.zip.002'], signed_by: 'KEYID' });
    render(App);
    await vi.waitFor(() => expect(document.body.dataset.ready).toBe('true'));
    await fireEvent.click(screen.getByTestId('nav-models'));
    await fireEvent.click(screen.getByLabelText('Select a:1 for export'));
    await fireEvent.click(screen.getByTestId('export-open'));
    await fireEvent.input(screen.getByTestId('export-out'), { target: { value: '/out/m.zip' } });
    await fireEvent.click(screen.getByTestId('export-fat32'));
    await fireEvent.input(screen.getByTestId('export-key'), { target: { value: '/k/me.key' } });
    await fireEvent.input(screen.getByTestId('export-password'), { target: { value: 'pw' } });
    await fireEvent.click(screen.getByTestId('export-start'));
    await vi.waitFor(() => expect(screen.getByTestId('export-result').textContent).toContain('/out/m.zip.002'));
    expect(callsOf('export_models')[0].args).toMatchObject({
      models: ['a:1'],
      out: { typed: '/out/m.zip' },
      options: { split_size: null, fat32: true, sign_key: { typed: '/k/me.key' }, key_password: 'pw' },
    });
    expect(screen.getByTestId('export-result').textContent).toContain('KEYID');
  });

  it('exports to paths chosen in the dialogs by handle, and asks for the key password in the window', async () => {
    resetMock();
    installDefaults({ models: [model('a:1')] });
    render(App);
    await vi.waitFor(() => expect(document.body.dataset.ready).toBe('true'));
    await fireEvent.click(screen.getByTestId('nav-models'));
    await fireEvent.click(screen.getByLabelText('Select a:1 for export'));
    await fireEvent.click(screen.getByTestId('export-open'));
    handlers.pick_path = (a: { kind: string }) => (a.kind === 'secret_key' ? { handle: 'h-key', path: '/k/me.key' } : { handle: 'h-out', path: '/media/usb/models.zip' });
    await fireEvent.click(screen.getByTestId('export-pick-file'));
    await vi.waitFor(() => expect((screen.getByTestId('export-out') as HTMLInputElement).value).toBe('/media/usb/models.zip'));
    await fireEvent.click(screen.getByTestId('export-pick-key'));
    await vi.waitFor(() => expect((screen.getByTestId('export-key') as HTMLInputElement).value).toBe('/k/me.key'));
    // The key is encrypted and no password was typed: the export stops at once, saying so.
    handlers.export_models = () => Promise.reject({ code: 'signature', message: 'cannot use the signing key /k/me.key: this key is encrypted: enter its password (/k/me.key)' });
    await fireEvent.click(screen.getByTestId('export-start'));
    await vi.waitFor(() => expect(screen.getByTestId('export-error').textContent).toContain('this key is encrypted: enter its password'));
    expect(callsOf('export_models')[0].args).toMatchObject({ out: { handle: 'h-out' }, options: { sign_key: { handle: 'h-key' }, key_password: null } });

    handlers.export_models = () => ({ models: [{ name: 'a:1', id: 'x', size: 1 }], blobs_written: 2, blobs_excluded: 0, bytes_written: 10, outputs: ['/media/usb/models.zip'], signed_by: 'KEYID', kit: false });
    await fireEvent.click(screen.getByTestId('export-open'));
    await fireEvent.click(screen.getByTestId('export-pick-file'));
    await fireEvent.click(screen.getByTestId('export-pick-key'));
    await vi.waitFor(() => expect((screen.getByTestId('export-key') as HTMLInputElement).value).toBe('/k/me.key'));
    await fireEvent.input(screen.getByTestId('export-password'), { target: { value: 'correct horse' } });
    // Editing a chosen path makes it a typed one (the app confirms it in its own dialog).
    await fireEvent.input(screen.getByTestId('export-out'), { target: { value: '/media/usb/other.zip' } });
    await fireEvent.click(screen.getByTestId('export-start'));
    await vi.waitFor(() => expect(screen.getByTestId('export-result').textContent).toContain('KEYID'));
    expect(callsOf('export_models')[1].args).toMatchObject({ out: { typed: '/media/usb/other.zip' }, options: { sign_key: { handle: 'h-key' }, key_password: 'correct horse' } });
  });
});
