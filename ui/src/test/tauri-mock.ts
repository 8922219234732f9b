// A stand-in for @tauri-apps/api/core in tests:
//   vi.mock('@tauri-apps/api/core', () => import('../test/tauri-mock'));
// Commands are answered by `handlers[cmd](args)`; every call is recorded in `calls`.
import { vi } from 'vitest';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Handler = (args: any) => unknown;

export const handlers: Record<string, Handler> = {};
export const calls: { cmd: string; args: Record<string, unknown> }[] = [];

let nextId = 1;
export class Channel<T = unknown> {
  id = nextId++;
  onmessage: (message: T) => void = () => {};
}

export const invoke = vi.fn(async (cmd: string, args: Record<string, unknown> = {}) => {
  calls.push({ cmd, args: structuredClone(stripChannels(args)) });
  const h = handlers[cmd];
  if (!h) throw { code: 'not_found', message: `no mock for ${cmd}` };
  return h(args);
});

function stripChannels(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) out[k] = v instanceof Channel ? '[channel]' : v;
  return out;
}

export function resetMock(): void {
  for (const k of Object.keys(handlers)) delete handlers[k];
  calls.length = 0;
  invoke.mockClear();
}

export function callsOf(cmd: string) {
  return calls.filter((c) => c.cmd === cmd);
}

export function transformCallback(): number {
  return 0;
}
