import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen } from '@testing-library/svelte';
import Composer from './Composer.svelte';

describe('Composer keyboard', () => {
  it('Enter sends and clears; Shift+Enter does not send', async () => {
    const onsend = vi.fn(() => true);
    render(Composer, { props: { onsend } });
    const ta = screen.getByLabelText('Message') as HTMLTextAreaElement;
    expect(ta.dataset.testid).toBe('chat-input');

    await fireEvent.input(ta, { target: { value: 'line one' } });
    const shift = new KeyboardEvent('keydown', { key: 'Enter', shiftKey: true, bubbles: true, cancelable: true });
    ta.dispatchEvent(shift);
    expect(onsend).not.toHaveBeenCalled();
    expect(shift.defaultPrevented).toBe(false); // the browser inserts the newline

    const enter = new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true });
    ta.dispatchEvent(enter);
    expect(enter.defaultPrevented).toBe(true);
    expect(onsend).toHaveBeenCalledWith('line one');
    await Promise.resolve();
    expect(ta.value).toBe('');
  });

  it('does not send empty text or while composing', async () => {
    const onsend = vi.fn(() => true);
    render(Composer, { props: { onsend } });
    const ta = screen.getByLabelText('Message');
    await fireEvent.keyDown(ta, { key: 'Enter' });
    await fireEvent.input(ta, { target: { value: 'にほん' } });
    await fireEvent.keyDown(ta, { key: 'Enter', isComposing: true });
    expect(onsend).not.toHaveBeenCalled();
  });

  it('Esc stops while streaming; Stop replaces Send', async () => {
    const onstop = vi.fn();
    render(Composer, { props: { onsend: () => true, onstop, streaming: true } });
    expect(screen.queryByTestId('send')).toBeNull();
    await fireEvent.keyDown(screen.getByLabelText('Message'), { key: 'Escape' });
    expect(onstop).toHaveBeenCalledTimes(1);
    await fireEvent.click(screen.getByTestId('stop'));
    expect(onstop).toHaveBeenCalledTimes(2);
  });

  it('the Send button sends', async () => {
    const onsend = vi.fn(() => true);
    render(Composer, { props: { onsend, initial: 'draft text' } });
    await fireEvent.click(screen.getByTestId('send'));
    expect(onsend).toHaveBeenCalledWith('draft text');
  });
});
