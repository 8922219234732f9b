// Earlier versions of a reply: Regenerate keeps what it replaces, and ‹ 2/3 › switches between them.
// The version shown is the message's own content (what the next turn sends); the others wait in
// `previous_versions`, in order, with the shown one at `version_index` among them all.
import type { ChatStats, StoredMessage } from './api';

export interface ReplyVersion {
  content: string;
  stats?: ChatStats | null;
  created: string;
}

/** Every version of the reply in order (one when it was never regenerated). */
export function allVersions(m: StoredMessage): ReplyVersion[] {
  const current: ReplyVersion = { content: m.content, stats: m.stats ?? null, created: m.created };
  const before = m.previous_versions ?? [];
  const at = Math.min(Math.max(m.version_index ?? before.length, 0), before.length);
  return [...before.slice(0, at), current, ...before.slice(at)];
}

/** The versions a regenerated reply carries: all of the old one's, unless it was failed or empty. */
export function versionsToKeep(old: StoredMessage): ReplyVersion[] {
  const all = allVersions(old);
  const keptCurrent = old.content.trim() !== '' && !old.error;
  return keptCurrent ? all : all.filter((_, i) => i !== (old.version_index ?? all.length - 1));
}

/** `m` showing version `j` (0-based) instead. */
export function showVersion(m: StoredMessage, j: number): StoredMessage {
  const all = allVersions(m);
  if (j < 0 || j >= all.length) return m;
  const v = all[j];
  return { ...m, content: v.content, stats: v.stats ?? null, created: v.created, error: null, previous_versions: all.filter((_, i) => i !== j), version_index: j };
}
