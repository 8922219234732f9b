import { describe, expect, it } from 'vitest';
import { inputKeyAction, isNewChatShortcut } from './keys';

describe('input keys', () => {
  it('Enter sends, Shift+Enter does not', () => {
    expect(inputKeyAction({ key: 'Enter' })).toBe('send');
    expect(inputKeyAction({ key: 'Enter', shiftKey: true })).toBeNull();
  });
  it('nothing while an IME is composing', () => {
    expect(inputKeyAction({ key: 'Enter', isComposing: true })).toBeNull();
    expect(inputKeyAction({ key: 'Enter', keyCode: 229 })).toBeNull();
  });
  it('Esc stops', () => {
    expect(inputKeyAction({ key: 'Escape' })).toBe('stop');
  });
  it('other keys do nothing', () => {
    expect(inputKeyAction({ key: 'a' })).toBeNull();
  });
  it('Ctrl+N / Cmd+N start a new chat', () => {
    expect(isNewChatShortcut({ key: 'n', ctrlKey: true })).toBe(true);
    expect(isNewChatShortcut({ key: 'n', metaKey: true })).toBe(true);
    expect(isNewChatShortcut({ key: 'n' })).toBe(false);
    expect(isNewChatShortcut({ key: 'N', ctrlKey: true, shiftKey: true })).toBe(false);
  });
});
