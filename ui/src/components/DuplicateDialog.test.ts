import { beforeEach, describe, expect, it, vi } from 'vitest';
vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
import { fireEvent, render, screen } from '@testing-library/svelte';
import DuplicateDialog from './DuplicateDialog.svelte';
import { callsOf, handlers, resetMock } from '../test/tauri-mock';
import { model } from '../test/fixtures';

describe('Duplicate with changes…', () => {
  beforeEach(() => {
    resetMock();
    handlers.modelfile_parts = () => ({ system: 'Be brief.', template: '', parameters: 'temperature 0.7', draft: '' });
    handlers.list_models = () => [model('gemma3:270m'), model('gemma3:1b'), model('qwen3:0.6b')];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    handlers.preview_duplicate = ({ form }: any) =>
      form.parameters.includes('temprature')
        ? Promise.reject({ code: 'invalid_argument', message: 'parameters, line 1: unknown parameter "temprature"' })
        : form.draft.startsWith('qwen3')
          ? Promise.reject({ code: 'invalid_argument', message: `${form.draft} cannot draft for this model: its vocabulary differs` })
          : `FROM ${form.source}\nSYSTEM ${form.system}\nPARAMETER ${form.parameters}\n${form.draft ? `DRAFT ${form.draft}\n` : ''}`;
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
    expect(callsOf('duplicate_model')[0].args.form).toEqual({ source: 'gemma3:270m', name: 'gemma3-custom', system: 'Answer in French.', template: '', parameters: 'temperature 0.7', draft: '' });
  });

  it('offers the models in the store as the draft and sends the one chosen', async () => {
    const oncreated = vi.fn();
    render(DuplicateDialog, { source: 'gemma3:270m', oncreated, onclose: () => {} });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-preview').textContent).toContain('FROM'));
    const select = screen.getByTestId('duplicate-draft') as HTMLSelectElement;
    await vi.waitFor(() => expect([...select.options].map((o) => o.textContent)).toEqual(['none', 'gemma3:1b', 'gemma3:270m', 'qwen3:0.6b']));
    expect(select.value).toBe('');
    expect(screen.getByText(/proposes tokens the model checks in one batch/)).toBeTruthy();
    await fireEvent.change(select, { target: { value: 'gemma3:270m' } });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-preview').textContent).toContain('DRAFT gemma3:270m'));
    expect(callsOf('preview_duplicate').at(-1)!.args.form).toMatchObject({ draft: 'gemma3:270m' });
    await fireEvent.click(screen.getByTestId('duplicate-save'));
    await vi.waitFor(() => expect(oncreated).toHaveBeenCalled());
    expect(callsOf('duplicate_model')[0].args.form).toEqual({ source: 'gemma3:270m', name: 'gemma3-custom', system: 'Be brief.', template: '', parameters: 'temperature 0.7', draft: 'gemma3:270m' });
  });

  it("keeps the source's draft unless another is chosen", async () => {
    handlers.modelfile_parts = () => ({ system: '', template: '', parameters: '', draft: 'gemma3:270m' });
    const oncreated = vi.fn();
    render(DuplicateDialog, { source: 'gemma3:1b', oncreated, onclose: () => {} });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-preview').textContent).toContain('FROM'));
    const select = screen.getByTestId('duplicate-draft') as HTMLSelectElement;
    expect(select.options[0].textContent).toBe('keep gemma3:270m');
    expect(select.value).toBe('');
    await fireEvent.click(screen.getByTestId('duplicate-save'));
    await vi.waitFor(() => expect(oncreated).toHaveBeenCalled());
    expect(callsOf('duplicate_model')[0].args.form).toMatchObject({ draft: '' });
  });

  it('shows a draft with another vocabulary as a problem', async () => {
    render(DuplicateDialog, { source: 'gemma3:270m', oncreated: () => {}, onclose: () => {} });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-preview').textContent).toContain('FROM'));
    const select = screen.getByTestId('duplicate-draft') as HTMLSelectElement;
    await vi.waitFor(() => expect(select.options).toHaveLength(4));
    await fireEvent.change(select, { target: { value: 'qwen3:0.6b' } });
    await vi.waitFor(() => expect(screen.getByTestId('duplicate-problem').textContent).toContain('cannot draft for this model'));
    expect((screen.getByTestId('duplicate-save') as HTMLButtonElement).disabled).toBe(true);
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
