// Saves conversations one write at a time per conversation, newest snapshot wins: while one
// save is in flight, later requests coalesce into one follow-up write of the latest snapshot, so
// an older snapshot can never land after a newer one.
import type { Conversation } from './api';

export class Saver {
  private running = new Map<string, Promise<void>>();
  private pending = new Map<string, Conversation>();

  constructor(
    private write: (c: Conversation) => Promise<void>,
    private onError: (e: unknown, c: Conversation) => void = () => {},
  ) {}

  /** Queues `c` (a plain snapshot); resolves once it, or a newer snapshot, is written. */
  save(c: Conversation): Promise<void> {
    this.pending.set(c.id, c);
    let run = this.running.get(c.id);
    if (!run) {
      run = this.drain(c.id);
      this.running.set(c.id, run);
    }
    return run;
  }

  /** Forget a queued (not yet started) write, e.g. when the conversation is deleted. */
  drop(id: string): void {
    this.pending.delete(id);
  }

  /** Resolves when nothing is queued or in flight. */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.all([...this.running.values()]);
  }

  private async drain(id: string): Promise<void> {
    try {
      for (;;) {
        const next = this.pending.get(id);
        if (!next) break;
        this.pending.delete(id);
        try {
          await this.write(next);
        } catch (e) {
          this.onError(e, next);
        }
      }
    } finally {
      this.running.delete(id);
    }
  }
}

/** A per-key debounce. */
export class Debouncer {
  private timers = new Map<string, ReturnType<typeof setTimeout>>();
  constructor(private ms: number) {}

  schedule(key: string, fn: () => void): void {
    this.cancel(key);
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        fn();
      }, this.ms),
    );
  }

  cancel(key: string): void {
    const t = this.timers.get(key);
    if (t !== undefined) clearTimeout(t);
    this.timers.delete(key);
  }

  /** Runs a scheduled call now (if any). */
  flush(key: string, fn: () => void): void {
    if (this.timers.has(key)) {
      this.cancel(key);
      fn();
    }
  }
}
