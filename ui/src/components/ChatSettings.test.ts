import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import ChatSettings from './ChatSettings.svelte';
import type { Conversation } from '../lib/api';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { forgetLimits, limitProblem, type ParamLimit } from '../lib/limits';

// What the backend's `parameter_limits` answers (src-tauri/engine/limits.rs), in part.
const LIMITS: ParamLimit[] = [
  { key: 'temperature', label: 'temperature', min: 0, max: 5, integer: false, special_min: null },
  { key: 'top_p', label: 'top P', min: 0, max: 1, integer: false, special_min: null },
  { key: 'num_ctx', label: 'context length', min: 256, max: 16777216, integer: true, special_min: null },
  { key: 'num_predict', label: 'max tokens', min: -2, max: 1000000, integer: true, special_min: '-1 or -2 = until done' },
];

function conversation(): Conversation {
  return {
    id: 'c1', title: 'T', model: 'gemma3:270m', system_prompt: '', draft: '', created: '', updated: '', messages: [],
    parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null },
  };
}

async function settle() {
  for (let i = 0; i < 5; i++) await tick();
}

describe('chat settings limits', () => {
  beforeEach(() => {
    resetMock();
    forgetLimits();
    handlers.parameter_limits = () => LIMITS;
  });

  it('bounds the fields with the ranges the backend reports', async () => {
    render(ChatSettings, { props: { conversation: conversation(), onsystem: () => {}, onparam: () => {} } });
    await settle();
    expect(callsOf('parameter_limits')).toHaveLength(1);
    const temp = screen.getByTestId('param-temperature') as HTMLInputElement;
    expect([temp.min, temp.max]).toEqual(['0', '5']); // not the 0–2 the window used to assume
    const ctx = screen.getByTestId('param-num_ctx') as HTMLInputElement;
    expect([ctx.min, ctx.max]).toEqual(['256', '16777216']);
    expect((screen.getByTestId('param-num_predict') as HTMLInputElement).min).toBe('-2');
  });

  it('refuses context 0 in the window and does not save it; accepts -1 max tokens', async () => {
    const onparam = vi.fn();
    render(ChatSettings, { props: { conversation: conversation(), onsystem: () => {}, onparam } });
    await settle();
    await fireEvent.input(screen.getByTestId('param-num_ctx'), { target: { value: '0' } });
    expect(screen.getByTestId('param-num_ctx-problem').textContent).toBe('Context length must be a whole number between 256 and 16777216.');
    expect(screen.getByTestId('param-num_ctx').getAttribute('aria-invalid')).toBe('true');
    expect(onparam).not.toHaveBeenCalled();

    await fireEvent.input(screen.getByTestId('param-num_ctx'), { target: { value: '4096' } });
    expect(screen.queryByTestId('param-num_ctx-problem')).toBeNull();
    expect(onparam).toHaveBeenLastCalledWith('num_ctx', 4096);

    await fireEvent.input(screen.getByTestId('param-num_predict'), { target: { value: '-1' } });
    expect(screen.queryByTestId('param-num_predict-problem')).toBeNull();
    expect(onparam).toHaveBeenLastCalledWith('num_predict', -1);
    await fireEvent.input(screen.getByTestId('param-num_predict'), { target: { value: '-5' } });
    expect(screen.getByTestId('param-num_predict-problem').textContent).toContain('-1 or -2 = until done');

    await fireEvent.input(screen.getByTestId('param-temperature'), { target: { value: '3.5' } });
    expect(onparam).toHaveBeenLastCalledWith('temperature', 3.5); // accepted: the backend takes up to 5
  });

  it('leaves the fields unbounded, not broken, when the limits cannot be read', async () => {
    delete handlers.parameter_limits;
    const onparam = vi.fn();
    render(ChatSettings, { props: { conversation: conversation(), onsystem: () => {}, onparam } });
    await settle();
    expect((screen.getByTestId('param-temperature') as HTMLInputElement).hasAttribute('max')).toBe(false);
    await fireEvent.input(screen.getByTestId('param-temperature'), { target: { value: '0.7' } });
    expect(onparam).toHaveBeenCalledWith('temperature', 0.7);
  });

  it('limitProblem says nothing for an empty field', () => {
    expect(limitProblem('Top P', LIMITS[1], null)).toBeNull();
    expect(limitProblem('Top P', LIMITS[1], 1.5)).toBe('Top P must be between 0 and 1.');
  });
});
