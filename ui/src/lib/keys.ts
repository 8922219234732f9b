// Keyboard behaviour of the message input, as a pure function of the key event.

export type InputAction = 'send' | 'stop' | null;

export interface KeyLike {
  key: string;
  shiftKey?: boolean;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
  isComposing?: boolean;
  keyCode?: number;
}

/** Enter sends, Shift+Enter is a newline, Esc stops; nothing while an IME is composing. */
export function inputKeyAction(e: KeyLike): InputAction {
  if (e.isComposing || e.keyCode === 229) return null;
  if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) return 'send';
  if (e.key === 'Escape') return 'stop';
  return null;
}

/** Ctrl+N (Cmd+N on macOS) starts a new chat. */
export function isNewChatShortcut(e: KeyLike): boolean {
  return !!(e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && (e.key === 'n' || e.key === 'N');
}
