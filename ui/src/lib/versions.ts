// Earlier versions of a reply: Regenerate keeps what it replaces, and ‹ 2/3 › switches between them.
// The version shown is the message's own content (what the next turn sends); the others wait in
// `previous_versions`, in order, with the shown one at `version_index` among them all.
import type { ChatStats, StoredMessage, ToolStep } from './api';

export interface ReplyVersion {
  content: string;
  stats?: ChatStats | null;
  created: string;
  /** The model's reasoning before this version, if it thought. */
  thinking?: string;
  /** The tools this version called, if any. */
  tool_steps?: ToolStep[];
  tool_notes?: string[];
}

/** Every version of the reply in order (one when it was never regenerated). */
export function allVersions(m: StoredMessage): ReplyVersion[] {
  const current: ReplyVersion = {
    content: m.content,
    stats: m.stats ?? null,
    created: m.created,
    ...(m.thinking ? { thinking: m.thinking } : {}),
    ...(m.tool_steps?.length ? { tool_steps: m.tool_steps } : {}),
    ...(m.tool_notes?.length ? { tool_notes: m.tool_notes } : {}),
  };
  const before = m.previous_versions ?? [];
  const at = Math.min(Math.max(m.version_index ?? before.length, 0), before.length);
  return [...before.slice(0, at), current, ...before.slice(at)];
}

/** The versions a regenerated reply carries: all of the old one's, unless it was failed or empty. */
export function versionsToKeep(old: StoredMessage): ReplyVersion[] {
  const all = allVersions(old);
  const keptCurrent = (old.content.trim() !== '' || !!old.tool_steps?.length) && !old.error;
  return keptCurrent ? all : all.filter((_, i) => i !== (old.version_index ?? all.length - 1));
}

/** `m` showing version `j` (0-based) instead. */
export function showVersion(m: StoredMessage, j: number): StoredMessage {
  const all = allVersions(m);
  if (j < 0 || j >= all.length) return m;
  const v = all[j];
  const { thinking: _t, tool_steps: _s, tool_notes: _n, ...rest } = m;
  return {
    ...rest,
    content: v.content,
    stats: v.stats ?? null,
    created: v.created,
    ...(v.thinking ? { thinking: v.thinking } : {}),
    ...(v.tool_steps?.length ? { tool_steps: v.tool_steps } : {}),
    ...(v.tool_notes?.length ? { tool_notes: v.tool_notes } : {}),
    error: null,
    previous_versions: all.filter((_, i) => i !== j),
    version_index: j,
  };
}

// Edit-and-resend keeps the old branch the same way: the edited user message holds the earlier
// tails of the conversation (that message and everything after it) in `previous_branches`.

function bare(m: StoredMessage): StoredMessage {
  const { previous_branches: _b, branch_index: _i, ...rest } = m;
  return rest;
}

/** Every branch starting at message `i`, in order (the current one at its `branch_index`). */
export function allBranches(messages: StoredMessage[], i: number): StoredMessage[][] {
  const head = messages[i];
  const current = [bare(head), ...messages.slice(i + 1)];
  const before = head.previous_branches ?? [];
  const at = Math.min(Math.max(head.branch_index ?? before.length, 0), before.length);
  return [...before.slice(0, at), current, ...before.slice(at)];
}

/** The messages with branch `j` of the one starting at `i` shown instead of the current one. */
export function showBranch(messages: StoredMessage[], i: number, j: number): StoredMessage[] {
  const all = allBranches(messages, i);
  if (j < 0 || j >= all.length) return messages;
  const [head, ...rest] = all[j];
  return [...messages.slice(0, i), { ...head, previous_branches: all.filter((_, k) => k !== j), branch_index: j }, ...rest];
}
