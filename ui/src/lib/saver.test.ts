import { describe, expect, it } from 'vitest';
import type { Conversation } from './api';
import { newConversation } from './conversation';
import { Saver } from './saver';

describe('Saver', () => {
  it('writes one at a time per conversation and the newest snapshot last', async () => {
    const written: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const saver = new Saver(async (c: Conversation) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      written.push(c.draft);
      inFlight--;
    });
    const base = newConversation(null);
    for (let i = 0; i < 10; i++) void saver.save({ ...base, draft: String(i) });
    await saver.idle();
    expect(maxInFlight).toBe(1);
    expect(written[0]).toBe('0');
    expect(written[written.length - 1]).toBe('9');
    expect(written.length).toBeLessThan(10); // coalesced
  });

  it('reports errors and carries on', async () => {
    const errors: unknown[] = [];
    let n = 0;
    const saver = new Saver(
      async () => {
        if (n++ === 0) throw { code: 'io', message: 'disk full' };
      },
      (e) => errors.push(e),
    );
    const c = newConversation(null);
    await saver.save(c);
    await saver.save(c);
    expect(errors).toHaveLength(1);
    expect(n).toBe(2);
  });
});
