// Loaded models with Unload, the drop overlay, and the new chat settings (issue 17 / 18).
import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import Models from '../pages/Models.svelte';
import DropOverlay from './DropOverlay.svelte';
import ChatSettings from './ChatSettings.svelte';
import { app } from '../lib/state/app.svelte';
import { modelState } from '../lib/state/models.svelte';
import type { Conversation, Dragging, LoadedModel } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { installDefaults, model } from '../test/fixtures';
import { forgetLimits, type ParamLimit } from '../lib/limits';

async function settle() {
  for (let i = 0; i < 5; i++) await tick();
}

describe('loaded models on the Models page', () => {
  beforeEach(async () => {
    resetMock();
    installDefaults({ models: [model('gemma3:270m'), model('llama3.2:1b')] });
    await app.refreshModels();
  });

  it('lists what is loaded, where and how much, marks it in the table, and unloads it', async () => {
    let loaded: LoadedModel[] = [
      { name: 'gemma3:270m', runs_on: '100% GPU (Vulkan0, 19/19 layers)', devices: [{ name: 'Vulkan0', bytes: 512_000_000 }], ram_bytes: 80_000_000, context_length: 4096, expires_in_s: 240 },
    ];
    handlers.loaded_models = () => loaded;
    handlers.unload_model = ({ name }: { name: string }) => {
      loaded = loaded.filter((m) => m.name !== name);
      return true;
    };
    render(Models);
    await vi.waitFor(() => expect(screen.getAllByTestId('loaded-model')).toHaveLength(1));
    const row = screen.getByTestId('loaded-model');
    expect(row.textContent).toContain('100% GPU (Vulkan0, 19/19 layers)');
    expect(row.textContent).toContain('512 MB on Vulkan0 · 80 MB in RAM · context 4,096 · unloads in 4 min if idle');
    const marked = screen.getAllByTestId('model-row').filter((r) => within(r).queryByTestId('model-loaded'));
    expect(marked.map((r) => r.dataset.name)).toEqual(['gemma3:270m']);

    await fireEvent.click(within(row).getByTestId('unload-model'));
    await vi.waitFor(() => expect(screen.getByTestId('loaded-none')).toBeTruthy());
    expect(callsOf('unload_model')[0].args).toEqual({ name: 'gemma3:270m' });
    expect(screen.queryByTestId('model-loaded')).toBeNull();
  });

  it('asks again on an interval while shown, and stops when the page goes', async () => {
    vi.useFakeTimers();
    try {
      const view = render(Models);
      await vi.advanceTimersByTimeAsync(0);
      const first = callsOf('loaded_models').length;
      await vi.advanceTimersByTimeAsync(10_500);
      expect(callsOf('loaded_models').length).toBe(first + 2);
      view.unmount();
      await vi.advanceTimersByTimeAsync(20_000);
      expect(callsOf('loaded_models').length).toBe(first + 2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('an unload that fails says so', async () => {
    modelState.loaded = [];
    handlers.loaded_models = () => [{ name: 'gemma3:270m', runs_on: '100% CPU', devices: [], ram_bytes: 1, context_length: 0, expires_in_s: 0 }];
    handlers.unload_model = () => {
      throw { code: 'engine', message: 'the engine is busy' };
    };
    render(Models);
    await vi.waitFor(() => expect(screen.getByTestId('unload-model')).toBeTruthy());
    await fireEvent.click(screen.getByTestId('unload-model'));
    await vi.waitFor(() => expect(screen.getByRole('alert').textContent).toContain('Could not unload gemma3:270m: the engine is busy'));
  });
});

describe('drop overlay', () => {
  beforeEach(() => resetMock());

  it('shows while files are dragged over the window, saying what a drop does, and goes when they leave', async () => {
    let channel: { onmessage: (d: Dragging) => void } | null = null;
    handlers.subscribe_drag = (a: { onDrag: { onmessage: (d: Dragging) => void } }) => void (channel = a.onDrag);
    render(DropOverlay);
    await vi.waitFor(() => expect(channel).not.toBeNull());
    expect(screen.queryByTestId('drop-overlay')).toBeNull();

    channel!.onmessage({ over: true, kinds: ['model'] });
    await tick();
    expect(screen.getByTestId('drop-overlay').textContent).toContain('Drop to import');
    expect(screen.getAllByTestId('drop-overlay-line').map((l) => l.textContent)).toEqual(['Models (bundle folder, .zip, .zip.001, .gguf) are imported into the store']);

    channel!.onmessage({ over: true, kinds: ['document', 'image'] });
    await tick();
    expect(screen.getByTestId('drop-overlay').textContent).toContain('Drop to attach');
    expect(screen.getAllByTestId('drop-overlay-line')).toHaveLength(2);

    channel!.onmessage({ over: false, kinds: [] });
    await tick();
    expect(screen.queryByTestId('drop-overlay')).toBeNull();
  });
});

describe('chat settings: min P, repeat penalty, seed, thinking', () => {
  const LIMITS: ParamLimit[] = [
    { key: 'min_p', label: 'min P', min: 0, max: 1, integer: false, special_min: null },
    { key: 'repeat_penalty', label: 'repeat penalty', min: 0, max: 5, integer: false, special_min: null },
    { key: 'seed', label: 'seed', min: -1, max: 4294967295, integer: true, special_min: '-1 = random' },
  ];
  const conversation = (): Conversation => ({
    id: 'c1', title: 'T', model: 'qwen3:0.6b', system_prompt: '', draft: '', created: '', updated: '', messages: [],
    parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null, min_p: null, repeat_penalty: null, seed: null, think: null },
  });

  beforeEach(() => {
    resetMock();
    forgetLimits();
    handlers.parameter_limits = () => LIMITS;
  });

  it('bounds the new fields by the backend limits and saves valid values', async () => {
    handlers.model_capabilities = () => ['completion'];
    const onparam = vi.fn();
    render(ChatSettings, { props: { conversation: conversation(), model: 'gemma3:270m', onsystem: () => {}, onparam } });
    await settle();
    const seed = screen.getByTestId('param-seed') as HTMLInputElement;
    expect([seed.min, seed.max]).toEqual(['-1', '4294967295']);
    expect((screen.getByTestId('param-min_p') as HTMLInputElement).max).toBe('1');
    await fireEvent.input(screen.getByTestId('param-repeat_penalty'), { target: { value: '7' } });
    expect(screen.getByTestId('param-repeat_penalty-problem').textContent).toBe('Repeat penalty must be between 0 and 5.');
    expect(onparam).not.toHaveBeenCalled();
    await fireEvent.input(screen.getByTestId('param-seed'), { target: { value: '42' } });
    await fireEvent.input(screen.getByTestId('param-min_p'), { target: { value: '0.05' } });
    expect(onparam.mock.calls).toEqual([
      ['seed', 42],
      ['min_p', 0.05],
    ]);
    expect(screen.queryByTestId('param-think')).toBeNull(); // gemma3's template does not think
  });

  it('offers the thinking switch only for a model whose template thinks', async () => {
    handlers.model_capabilities = ({ name }: { name: string }) => (name === 'qwen3:0.6b' ? ['completion', 'tools', 'thinking'] : ['completion']);
    const onparam = vi.fn();
    render(ChatSettings, { props: { conversation: conversation(), model: 'qwen3:0.6b', onsystem: () => {}, onparam } });
    await settle();
    const think = screen.getByTestId('param-think') as HTMLSelectElement;
    expect(think.value).toBe('default');
    await fireEvent.change(think, { target: { value: 'off' } });
    await fireEvent.change(think, { target: { value: 'on' } });
    await fireEvent.change(think, { target: { value: 'default' } });
    expect(onparam.mock.calls).toEqual([
      ['think', false],
      ['think', true],
      ['think', null],
    ]);
  });
});
