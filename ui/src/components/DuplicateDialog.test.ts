import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import DuplicateDialog from './DuplicateDialog.svelte';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';

describe('Duplicate with changes…', () => {
  beforeEach(() => {
    resetMock();
    handlers.modelfile_parts = () => ({ system: 'Be brief.', template: '', parameters: 'temperature 0.7' });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    handlers.preview_duplicate = ({ form }: any) =>
      form.parameters.includes('temprature')
        ? Promise.reject({ code: 'invalid_argument', message: 'parameters, line 1: unknown parameter "temprature"' })
        : `FROM ${form.source}\nSYSTEM ${form.system}\nPARAMETER ${form.parameters}\n`;
    handlers.duplicate_model = () => ({ name: 'gemma3-custom:latest', id: 'ab'.repeat(32), size: 1, warnings: [] });
  });

  it('starts from the model, previews the Modelfile and writes the same form it shows', async () => {
    const oncreated = vi.fn();
    render(DuplicateDialog, { source: 'gemma3:270m', oncreated, onclose: () => {} });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-preview').textContent).toContain('PARAMETER temperature 0.7'));
    expect((screen.getByTestId('duplicate-system') as HTMLTextAreaElement).value).toBe('Be brief.');
    await fireEvent.input(screen.getByTestId('duplicate-system'), { target: { value: 'Answer in French.' } });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-preview').textContent).toContain('SYSTEM Answer in French.'));
    await fireEvent.click(screen.getByTestId('duplicate-save'));
    await vi.waitFor(() => expect(oncreated).toHaveBeenCalled());
    expect(callsOf('duplicate_model')[0].args.form).toEqual({ source: 'gemma3:270m', name: 'gemma3-custom', system: 'Answer in French.', template: '', parameters: 'temperature 0.7' });
  });

  it('shows what is wrong and does not let a wrong form be written', async () => {
    render(DuplicateDialog, { source: 'gemma3:270m', oncreated: () => {}, onclose: () => {} });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-preview').textContent).toContain('FROM'));
    await fireEvent.input(screen.getByTestId('duplicate-parameters'), { target: { value: 'temprature 1' } });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-problem').textContent).toContain('unknown parameter'));
    expect((screen.getByTestId('duplicate-save') as HTMLButtonElement).disabled).toBe(true);
    expect(callsOf('duplicate_model')).toHaveLength(0);
  });
});
