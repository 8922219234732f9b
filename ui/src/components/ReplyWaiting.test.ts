import { afterEach, describe, expect, it, vi } from 'vitest';
import { render, screen } from '@testing-library/svelte';
import ReplyWaiting from './ReplyWaiting.svelte';
import { LiveReply } from '../lib/stream';

afterEach(() => vi.useRealTimers());

describe('ReplyWaiting', () => {
  it('counts while the model loads and ends at the first word, though nothing re-renders it', async () => {
    vi.useFakeTimers();
    const live = new LiveReply('c1', 'm1', 'r1');
    live.model = 'gemma3:270m';
    live.loading = true;
    render(ReplyWaiting, { props: { live } });
    expect(screen.getByTestId('waiting-text').textContent).toBe('Loading gemma3:270m…');
    // A long load (a runner that died and was started again): the line keeps counting…
    await vi.advanceTimersByTimeAsync(3000);
    expect(screen.getByTestId('waiting-elapsed').textContent).toBe('3.0 s');
    // …and is gone within a tick of the first word, with no new props from the parent.
    live.append('Hello');
    await vi.advanceTimersByTimeAsync(150);
    expect(screen.queryByTestId('typing')).toBeNull();
  });
});
