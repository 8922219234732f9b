import { describe, expect, it } from 'vitest';
import { LiveReply, resetStreamStats, streamStats } from './stream';

describe('LiveReply', () => {
  it('keeps batched pieces in order and counts the tokens each carries', () => {
    resetStreamStats();
    const reply = new LiveReply('c1', 'm1', 'r1');
    reply.append('Hello', 1);
    reply.append(', big ', 2);
    reply.append('world', 3);
    reply.append('', 4); // an empty piece changes nothing
    expect(reply.text).toBe('Hello, big world');
    expect(reply.pieces).toBe(6);
    expect(streamStats().tokens).toBe(6);
  });
});
