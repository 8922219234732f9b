// MCP tools in the chat, the parts without a backend or Svelte: what the model is offered, which
// call needs the person's approval, how a reply's tool steps go back to the model, and the text
// helpers of the Settings → Tools form. Tested in tools.test.ts.
import type { ChatMessage, ChatParameters, McpServer, McpTool, ToolCall, ToolCallRecord, ToolDef, ToolStep } from './api';
import { newId } from './format';

export const DEFAULT_TOOL_STEPS = 8;
export const MIN_TOOL_STEPS = 1;
export const MAX_TOOL_STEPS = 50;
/** The result the model gets for a call the person denied. */
export const DENIED = 'The user denied this call.';
/** A result is shown up to this many characters until "Show all". */
export const RESULT_PREVIEW_CHARS = 1500;

/** How a call gets to run: allowed always (Settings), for this conversation, or ask first. */
export type Approval = 'always' | 'conversation' | 'ask';
/** The person's answer on an approval card. */
export type Decision = 'allow' | 'conversation' | 'always' | 'deny';

/** The conversation's step limit, 8 when unset, kept within 1–50. */
export function maxToolSteps(p: ChatParameters | null | undefined): number {
  const n = p?.max_tool_steps;
  if (typeof n !== 'number' || !Number.isFinite(n)) return DEFAULT_TOOL_STEPS;
  return Math.min(MAX_TOOL_STEPS, Math.max(MIN_TOOL_STEPS, Math.trunc(n)));
}

/** Why a typed step limit is refused, or null when it is fine (empty = the default). */
export function toolStepsProblem(value: number | null): string | null {
  if (value === null) return null;
  if (!Number.isInteger(value) || value < MIN_TOOL_STEPS || value > MAX_TOOL_STEPS) {
    return `Tool steps must be a whole number between ${MIN_TOOL_STEPS} and ${MAX_TOOL_STEPS}.`;
  }
  return null;
}

/** The tools as `startChat` offers them to the model. */
export function toolDefs(tools: readonly McpTool[]): ToolDef[] {
  return tools.map((t) => ({ type: 'function', function: { name: t.function_name, description: t.description, parameters: t.parameters } }));
}

/** How `allowed_tools` names a tool of a server. */
export function allowedKey(server: string, tool: string): string {
  return `${server}/${tool}`;
}

/** Whether a call of `tool` on `server` runs without asking, and why. */
export function approvalFor(server: string, tool: string, servers: readonly McpServer[], allowed: readonly string[] | undefined): Approval {
  if (servers.find((s) => s.name === server)?.always_allow.includes(tool)) return 'always';
  if (allowed?.includes(allowedKey(server, tool))) return 'conversation';
  return 'ask';
}

/** The arguments as an object: models sometimes send a JSON string. Null when they are neither. */
export function normalizeArguments(a: unknown): Record<string, unknown> | null {
  if (a === undefined || a === null || a === '') return {};
  if (typeof a === 'string') {
    try {
      return normalizeArguments(JSON.parse(a));
    } catch {
      return null;
    }
  }
  return typeof a === 'object' && !Array.isArray(a) ? (a as Record<string, unknown>) : null;
}

export function unknownToolText(name: string): string {
  return `Error: the model called an unknown tool "${name}"; it was not run.`;
}

/**
 * The records of the calls a reply made: each mapped back to its tool. A name no tool has, or
 * arguments that are not an object, become an `error` record (sent back to the model as such).
 */
export function callRecords(calls: readonly ToolCall[], tools: readonly McpTool[]): ToolCallRecord[] {
  return calls.map((call) => {
    const name = call.function?.name ?? '';
    const id = call.id || newId('call-');
    const tool = tools.find((t) => t.function_name === name);
    const args = normalizeArguments(call.function?.arguments);
    if (!tool) {
      return { id, server: '', tool: name, function_name: name, arguments: args ?? {}, status: 'error', result: unknownToolText(name), is_error: true };
    }
    const base = { id, server: tool.server, tool: tool.name, function_name: name };
    if (!args) {
      return { ...base, arguments: {}, status: 'error', result: `Error: the arguments of this call are not a JSON object: ${String(call.function.arguments).slice(0, 200)}`, is_error: true };
    }
    return { ...base, arguments: args, status: 'running' };
  });
}

/** What the model is told a call gave (its result, or why there is none). */
export function callResultText(c: ToolCallRecord): string {
  if (c.result !== undefined) return c.result;
  switch (c.status) {
    case 'denied':
      return DENIED;
    case 'cancelled':
      return 'The call was cancelled.';
    case 'awaiting_approval':
      return 'The call was not made: the reply ended before the user answered.';
    default:
      return 'The call did not finish.';
  }
}

/** A reply's tool steps as the model sees them: per step its text with the calls, then each result. */
export function toolStepMessages(steps: readonly ToolStep[] | undefined): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const step of steps ?? []) {
    if (!step.calls.length) {
      if (step.content) out.push({ role: 'assistant', content: step.content });
      continue;
    }
    out.push({
      role: 'assistant',
      content: step.content,
      tool_calls: step.calls.map((c) => ({ id: c.id, function: { name: c.function_name, arguments: c.arguments } })),
    });
    for (const c of step.calls) out.push({ role: 'tool', content: callResultText(c), tool_name: c.function_name, tool_call_id: c.id });
  }
  return out;
}

export const INTERRUPTED_CALL = 'Interrupted: the reply ended before this call finished.';

export const STOPPED_CALL = 'Cancelled: the reply was stopped before this call finished.';

const unfinished = (c: ToolCallRecord) => c.status === 'awaiting_approval' || c.status === 'running';

export function hasUnfinishedCalls(steps: readonly ToolStep[] | undefined): boolean {
  return !!steps?.some((s) => s.calls.some(unfinished));
}

/** Calls still waiting or running when a reply ended (stopped, app closed): cancelled, saying so. */
export function endInterruptedCalls(steps: ToolStep[], text = INTERRUPTED_CALL): ToolStep[] {
  return steps.map((s): ToolStep =>
    s.calls.some(unfinished)
      ? { ...s, calls: s.calls.map((c): ToolCallRecord => (unfinished(c) ? { ...c, status: 'cancelled', result: c.result ?? text, is_error: true } : c)) }
      : s,
  );
}

/** JSON with its object keys sorted, to compare two calls' arguments. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * Whether every call of a round was already made in this reply (same function, same arguments):
 * small models, given a tool's result, often only ask for it again. Such calls are not run again;
 * the model is asked once more without tools, to answer from the results it has.
 */
export function onlyRepeats(calls: ToolCall[], steps: ToolStep[] | undefined): boolean {
  const made = new Set((steps ?? []).flatMap((s) => s.calls.map((x) => `${x.function_name} ${canonical(x.arguments)}`)));
  return calls.length > 0 && calls.every((c) => made.has(`${c.function.name} ${canonical(c.function.arguments)}`));
}

export function limitNote(steps: number): string {
  return `Stopped after ${steps} tool step${steps === 1 ? '' : 's'}; raise the limit in chat settings to let it go on.`;
}

/** `text` cut to `max` characters (whole code points) unless `all`. */
export function previewText(text: string, all: boolean, max = RESULT_PREVIEW_CHARS): { shown: string; truncated: boolean } {
  if (all || text.length <= max) return { shown: text, truncated: false };
  const chars = Array.from(text);
  if (chars.length <= max) return { shown: text, truncated: false };
  return { shown: chars.slice(0, max).join('') + '…', truncated: true };
}

export function prettyJson(v: unknown): string {
  try {
    return JSON.stringify(v ?? {}, null, 2) ?? String(v);
  } catch {
    return String(v);
  }
}

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || ms === null) return '';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// ---- Settings → Tools form ---------------------------------------------------------------------

/** One argument per line; blank lines are left out. */
export function parseArgs(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** `KEY=VALUE` lines (blank lines left out); `problem` names the first line that is not one. */
export function parseEnv(text: string): { env: Record<string, string>; problem: string | null } {
  const env: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) return { env, problem: `Environment line ${i + 1} is not KEY=VALUE: ${line.slice(0, 40)}` };
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  return { env, problem: null };
}

export function envText(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
}

function quoted(s: string): string {
  return s === '' || /[\s"'\\$`]/.test(s) ? JSON.stringify(s) : s;
}

/** What the server starts (`command args…`, quoted where needed) or reaches (the URL). */
export function launchLine(s: McpServer): string {
  if (s.url) return s.url;
  return [s.command ?? '', ...s.args].map(quoted).join(' ');
}
