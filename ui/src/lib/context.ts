// How much of the model's context a conversation fills, from the counts the backend returned with
// its last reply (prompt tokens + reply tokens = what the next prompt starts from).
import type { ChatStats, StoredMessage } from './api';

export interface ContextUsage {
  used: number;
  total: number;
  /** Past this many prompt tokens the oldest messages are left out of the next reply. */
  budget: number;
  /** 'near': within 10 % of the budget; 'over': the next reply will leave older messages out. */
  level: 'ok' | 'near' | 'over';
}

/** The usage after the latest reply that reported its context, or null when none did yet. */
export function contextUsage(messages: StoredMessage[]): ContextUsage | null {
  const stats = [...messages].reverse().find((m) => m.role === 'assistant' && m.stats?.num_ctx)?.stats as ChatStats | undefined;
  if (!stats?.num_ctx) return null;
  const total = stats.num_ctx;
  const budget = stats.prompt_budget ?? total;
  const used = stats.prompt_tokens + stats.eval_tokens;
  const level = used > budget ? 'over' : used >= budget * 0.9 ? 'near' : 'ok';
  return { used, total, budget, level };
}

/** "3 earlier messages are outside the context", or null when none were left out. */
export function droppedNote(stats: ChatStats | null | undefined): string | null {
  const n = stats?.dropped_messages ?? 0;
  if (n <= 0) return null;
  return n === 1 ? '1 earlier message is outside the context' : `${n} earlier messages are outside the context`;
}
