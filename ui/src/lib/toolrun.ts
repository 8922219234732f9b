// One round of tool calls in a reply: asks the person where needed (an approval card waits on
// `answer`), runs the allowed calls in parallel, each with its own request ID, and reports every
// change of a call through `update`. Stop denies what waits and cancels what runs. No backend or
// Svelte here: the chat store passes the hooks (tested in toolrun.test.ts).
import type { McpCallResult, McpServer, ToolCallRecord } from './api';
import { errorMessage } from './api';
import { newId } from './format';
import { approvalFor, DENIED, type Decision } from './tools';

export interface ToolRunHooks {
  /** A call changed (status, result, duration): write it into the reply and save. */
  update(callId: string, patch: Partial<ToolCallRecord>): void;
  call(requestId: string, server: string, tool: string, args: Record<string, unknown>): Promise<McpCallResult>;
  cancel(requestId: string): void;
  /** The person allowed the tool for this conversation, or always (Settings). */
  allow(server: string, tool: string, how: 'conversation' | 'always'): Promise<void> | void;
}

/**
 * The calls' first status: `running` where the server always allows the tool or the conversation
 * does, else `awaiting_approval`. Calls already failed (unknown tool) stay as they are.
 */
export function withApprovals(calls: ToolCallRecord[], servers: readonly McpServer[], allowed: readonly string[] | undefined): ToolCallRecord[] {
  return calls.map((c) => {
    if (c.status !== 'running' && c.status !== 'awaiting_approval') return c;
    return { ...c, status: approvalFor(c.server, c.tool, servers, allowed) === 'ask' ? 'awaiting_approval' : 'running' };
  });
}

export class ToolRun {
  stopped = false;
  private approvals = new Map<string, { call: ToolCallRecord; resolve: (d: Decision) => void }>();
  private pending = new Set<string>();

  constructor(private hooks: ToolRunHooks) {}

  /** Calls waiting for the person's answer. */
  get waiting(): number {
    return this.approvals.size;
  }

  /** Runs the calls (statuses from `withApprovals`); resolves when every one has ended. */
  async run(calls: readonly ToolCallRecord[]): Promise<void> {
    await Promise.all(calls.map((c) => this.one(c)));
  }

  /** The person's answer on the approval card of call `id`; false when it is not waiting. */
  answer(id: string, d: Decision): boolean {
    const a = this.approvals.get(id);
    if (!a) return false;
    this.approvals.delete(id);
    if (d === 'conversation' || d === 'always') {
      // The same tool waiting elsewhere in this round is allowed by the same answer.
      for (const [other, b] of [...this.approvals]) {
        if (b.call.server === a.call.server && b.call.tool === a.call.tool) {
          this.approvals.delete(other);
          b.resolve('allow');
        }
      }
    }
    a.resolve(d);
    return true;
  }

  /** Stop: waiting calls count as denied, running ones are cancelled (their servers keep running). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const [id, a] of [...this.approvals]) {
      this.approvals.delete(id);
      a.resolve('deny');
    }
    for (const rid of this.pending) this.hooks.cancel(rid);
  }

  private async one(c: ToolCallRecord): Promise<void> {
    if (c.status !== 'running' && c.status !== 'awaiting_approval') return;
    if (c.status === 'awaiting_approval') {
      const d: Decision = this.stopped ? 'deny' : await new Promise<Decision>((resolve) => this.approvals.set(c.id, { call: c, resolve }));
      if (d === 'deny') {
        this.hooks.update(c.id, { status: 'denied', result: DENIED, is_error: true });
        return;
      }
      if (d === 'conversation' || d === 'always') {
        try {
          await this.hooks.allow(c.server, c.tool, d);
        } catch {
          /* the hook reports its own failure; this call was allowed all the same */
        }
      }
    }
    if (this.stopped) {
      this.hooks.update(c.id, { status: 'cancelled', result: 'Cancelled: the reply was stopped before this call ran.', is_error: true });
      return;
    }
    this.hooks.update(c.id, { status: 'running' });
    const rid = newId('t-');
    this.pending.add(rid);
    const t0 = Date.now();
    try {
      const r = await this.hooks.call(rid, c.server, c.tool, c.arguments);
      const status = !r.is_error ? 'done' : this.stopped ? 'cancelled' : 'error';
      this.hooks.update(c.id, { status, result: r.text, is_error: r.is_error, duration_ms: r.duration_ms });
    } catch (e) {
      this.hooks.update(c.id, { status: 'error', result: `Error: ${errorMessage(e)}`, is_error: true, duration_ms: Date.now() - t0 });
    } finally {
      this.pending.delete(rid);
    }
  }
}
