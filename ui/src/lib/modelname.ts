// Model names as the store accepts them (src-tauri/store/name.rs, `ModelName::parse`):
// `[host/][namespace/]model[:tag]`, Ollama's defaults filled in. The UI checks a name as it is
// typed; the Rust side checks it again and has the last word.

export const DEFAULT_HOST = 'registry.ollama.ai';
export const DEFAULT_NAMESPACE = 'library';
export const DEFAULT_TAG = 'latest';

export interface ModelName {
  host: string;
  namespace: string;
  model: string;
  tag: string;
}

export type NameCheck = { ok: true; name: ModelName } | { ok: false; reason: string };

type Part = 'host' | 'namespace' | 'model' | 'tag';

function checkPart(kind: Part, s: string): string | null {
  const max = kind === 'host' ? 350 : 80;
  if (s.length === 0 || s.length > max) return `the ${kind} must be 1 to ${max} characters`;
  if (s.includes('..')) return `the ${kind} must not contain ".."`;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    const ok =
      /[A-Za-z0-9_]/.test(c) || (i > 0 && c === '-') || (i > 0 && c === '.' && kind !== 'namespace') || (i > 0 && c === ':' && kind === 'host');
    if (!ok) {
      const what = c === ' ' ? 'a space' : `"${c}"`;
      const where = i === 0 && (c === '-' || c === '.') ? ' at the start' : '';
      return `the ${kind} "${s}" has ${what}${where}, which is not allowed there; use letters, digits, '_', '-' and '.'`;
    }
  }
  return null;
}

/** Parses a name the way the store does; `reason` says what is wrong, in words. */
export function parseModelName(input: string): NameCheck {
  const s = input.trim();
  if (!s) return { ok: false, reason: 'enter a name' };
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(s)) return { ok: false, reason: 'leave out the scheme (such as http://): a name is [host/][namespace/]model[:tag]' };
  if (s.includes('@')) return { ok: false, reason: 'digest references (@sha256:…) are not supported here' };
  // A ':' is a tag separator only after the last '/' (before it, it is a host's port).
  const lastSlash = s.lastIndexOf('/') + 1;
  const colon = s.slice(lastSlash).lastIndexOf(':');
  const path = colon < 0 ? s : s.slice(0, lastSlash + colon);
  const tag = colon < 0 ? DEFAULT_TAG : s.slice(lastSlash + colon + 1);
  const parts = path.split('/');
  let name: ModelName;
  if (parts.length === 1) name = { host: DEFAULT_HOST, namespace: DEFAULT_NAMESPACE, model: parts[0], tag };
  else if (parts.length === 2) name = { host: DEFAULT_HOST, namespace: parts[0], model: parts[1], tag };
  else if (parts.length === 3) name = { host: parts[0], namespace: parts[1], model: parts[2], tag };
  else return { ok: false, reason: 'expected [host/][namespace/]model[:tag]' };
  for (const kind of ['host', 'namespace', 'model', 'tag'] as const) {
    const problem = checkPart(kind, name[kind]);
    if (problem) return { ok: false, reason: problem };
  }
  return { ok: true, name };
}

/** What is wrong with `input` as a model name, or null when it is a valid one. */
export function nameProblem(input: string): string | null {
  const r = parseModelName(input);
  return r.ok ? null : r.reason;
}

/**
 * The key two names share when the store takes them for the same model: every part, defaults
 * filled in (`gemma3` is `gemma3:latest`), compared case-insensitively. Null for an invalid name.
 */
export function nameKey(input: string): string | null {
  const r = parseModelName(input);
  if (!r.ok) return null;
  const { host, namespace, model, tag } = r.name;
  return `${host}/${namespace}/${model}:${tag}`.toLowerCase();
}
