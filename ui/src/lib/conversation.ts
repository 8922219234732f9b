// Pure operations on conversations (no backend, no Svelte): tested in conversation.test.ts.
import { allBranches, versionsToKeep } from './versions';
import type { ChatMessage, ChatParameters, Conversation, StoredMessage } from './api';
import { newId, nowIso } from './format';
import { endInterruptedCalls, toolStepMessages } from './tools';

export const TITLE_MAX = 40;
export const INTERRUPTED = 'Interrupted: Airlock closed while this reply was being written.';

export function defaultParameters(): ChatParameters {
  return { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null, min_p: null, repeat_penalty: null, seed: null, think: null };
}

export function newConversation(model: string | null, now = nowIso()): Conversation {
  return {
    id: newId('c-'),
    title: '',
    model,
    system_prompt: '',
    parameters: defaultParameters(),
    messages: [],
    draft: '',
    created: now,
    updated: now,
  };
}

/** The first ~40 characters of the first user message, on one line, cut at a word if it can. */
export function titleFrom(text: string, max = TITLE_MAX): string {
  const line = text.replace(/\s+/g, ' ').trim();
  if (!line) return 'New chat';
  const chars = Array.from(line); // code points: never split a surrogate pair
  if (chars.length <= max) return line;
  let cut = chars.slice(0, max).join('');
  const space = cut.lastIndexOf(' ');
  if (space >= max * 0.6) cut = cut.slice(0, space);
  return cut.trimEnd() + '…';
}

export function displayTitle(c: Conversation): string {
  return c.title || 'New chat';
}

export function userMessage(content: string, now = nowIso(), images: string[] = []): StoredMessage {
  return images.length ? { id: newId('m-'), role: 'user', content, created: now, images } : { id: newId('m-'), role: 'user', content, created: now };
}

export function assistantPlaceholder(now = nowIso()): StoredMessage {
  return { id: newId('m-'), role: 'assistant', content: '', created: now, streaming: true, stats: null, error: null };
}

/**
 * What the model is sent: the system prompt (if any) first, then the conversation up to (not
 * including) `upTo` when given. Empty assistant messages (failed or interrupted before any text)
 * are left out. A reply that used tools goes as its steps (the text and calls of each, then one
 * `tool` message per result) followed by its final answer, if any.
 */
export function buildChatMessages(systemPrompt: string, messages: readonly StoredMessage[], upTo?: string): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (systemPrompt.trim()) out.push({ role: 'system', content: systemPrompt });
  for (const m of messages) {
    if (upTo !== undefined && m.id === upTo) break;
    if (m.role === 'system' || m.role === 'tool') continue;
    if (m.role === 'assistant' && m.tool_steps?.length) out.push(...toolStepMessages(m.tool_steps));
    if (m.role === 'assistant' && !m.content) continue;
    out.push(m.images?.length ? { role: m.role, content: m.content, images: m.images } : { role: m.role, content: m.content });
  }
  return out;
}

/** Adds a user message (setting the title if it is the first) and an empty streaming reply. */
export function appendTurn(c: Conversation, text: string, now = nowIso(), images: string[] = []): { conversation: Conversation; reply: StoredMessage } {
  const reply = assistantPlaceholder(now);
  const isFirst = !c.messages.some((m) => m.role === 'user');
  return {
    conversation: {
      ...c,
      title: isFirst && !c.title ? titleFrom(text) : c.title,
      messages: [...c.messages, userMessage(text, now, images), reply],
      draft: '',
      updated: now,
    },
    reply,
  };
}

/**
 * Edit-and-resend: the user message `id` gets `text`, everything after it is dropped, and a new
 * empty streaming reply is appended. Null when `id` is not a user message.
 */
export function editAndResend(c: Conversation, id: string, text: string, now = nowIso()): { conversation: Conversation; reply: StoredMessage } | null {
  const i = c.messages.findIndex((m) => m.id === id);
  if (i < 0 || c.messages[i].role !== 'user') return null;
  const reply = assistantPlaceholder(now);
  const branches = allBranches(c.messages, i);
  const firstUser = c.messages.findIndex((m) => m.role === 'user');
  return {
    conversation: {
      ...c,
      title: i === firstUser && c.title === titleFrom(c.messages[i].content) ? titleFrom(text) : c.title,
      // The conversation as it was from this message on stays reachable as a branch (‹ 1/2 ›).
      messages: [...c.messages.slice(0, i), { ...c.messages[i], content: text, previous_branches: branches, branch_index: branches.length }, reply],
      updated: now,
    },
    reply,
  };
}

/** Regenerate: drops the last assistant reply (and anything after it) and appends a new one. */
export function regenerate(c: Conversation, now = nowIso()): { conversation: Conversation; reply: StoredMessage } | null {
  let i = c.messages.length - 1;
  while (i >= 0 && c.messages[i].role !== 'assistant') i--;
  if (i < 0) {
    // No reply yet (e.g. it failed before one was stored): answer the last user message.
    if (!c.messages.length || c.messages[c.messages.length - 1].role !== 'user') return null;
    i = c.messages.length;
  }
  const reply = assistantPlaceholder(now);
  // The reply replaced stays reachable as a version (‹ 1/2 ›).
  const kept = i < c.messages.length ? versionsToKeep(c.messages[i]) : [];
  if (kept.length) Object.assign(reply, { previous_versions: kept, version_index: kept.length });
  return { conversation: { ...c, messages: [...c.messages.slice(0, i), reply], updated: now }, reply };
}

/**
 * On start: a reply stored with `streaming: true` was cut off by the app closing. Its text is
 * kept; it is marked interrupted (shown with Retry / Regenerate) and no longer streaming.
 */
export function restoreInterrupted(c: Conversation): Conversation {
  if (!c.messages.some((m) => m.streaming)) return c;
  return {
    ...c,
    messages: c.messages.map((m) =>
      m.streaming
        ? { ...m, streaming: false, error: m.error || INTERRUPTED, ...(m.tool_steps ? { tool_steps: endInterruptedCalls(m.tool_steps) } : {}) }
        : m,
    ),
  };
}

/** Fills the fields an older or hand-written file may lack. */
export function normalizeConversation(c: Partial<Conversation> & { id: string }): Conversation {
  return {
    id: c.id,
    title: c.title ?? '',
    model: c.model ?? null,
    system_prompt: c.system_prompt ?? '',
    parameters: { ...defaultParameters(), ...(c.parameters || {}) },
    messages: Array.isArray(c.messages) ? c.messages : [],
    draft: c.draft ?? '',
    created: c.created ?? nowIso(),
    updated: c.updated ?? c.created ?? nowIso(),
    ...(Array.isArray(c.tool_servers) ? { tool_servers: c.tool_servers } : {}),
    ...(Array.isArray(c.allowed_tools) ? { allowed_tools: c.allowed_tools } : {}),
  };
}

/** Most recently updated first. */
export function sortByUpdated(list: readonly Conversation[]): Conversation[] {
  return [...list].sort((a, b) => (a.updated < b.updated ? 1 : a.updated > b.updated ? -1 : 0));
}

/** Case-insensitive search over titles and message text. */
export function searchConversations(list: readonly Conversation[], query: string): Conversation[] {
  const q = query.trim().toLowerCase();
  if (!q) return [...list];
  return list.filter(
    (c) => displayTitle(c).toLowerCase().includes(q) || c.messages.some((m) => m.content.toLowerCase().includes(q)),
  );
}

/** "" → null; otherwise a finite number (integers where `integer`), else null. */
export function parseParam(value: string, integer = false): number | null {
  const s = value.trim();
  if (!s) return null;
  const n = Number(s);
  if (!Number.isFinite(n)) return null;
  return integer ? Math.trunc(n) : n;
}
