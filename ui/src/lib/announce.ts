// What a screen reader hears when a reply ends: one short sentence, not every token.
import type { ChatStats } from './api';

const PREVIEW_CHARS = 80;

export function replyAnnouncement(text: string, r: { stats?: ChatStats; error?: string; stopped?: boolean }): string {
  if (r.error) return `The reply failed: ${r.error}`;
  const words = text.trim() ? text.trim().split(/\s+/).length : 0;
  const flat = text.replace(/\s+/g, ' ').trim();
  const preview = flat.length > PREVIEW_CHARS ? `${flat.slice(0, PREVIEW_CHARS).trimEnd()}…` : flat;
  const what = r.stopped ? 'Reply stopped' : 'Reply finished';
  return `${what}, ${words} word${words === 1 ? '' : 's'}${preview ? `: ${preview}` : '.'}`;
}
