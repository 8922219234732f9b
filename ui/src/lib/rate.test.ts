import { describe, expect, it } from 'vitest';
import { addSample, estimate, type RateSample } from './rate';

function feed(points: [number, number][], windowMs = 5000): RateSample[] {
  let s: RateSample[] = [];
  for (const [t, bytes] of points) s = addSample(s, { t, bytes }, windowMs);
  return s;
}

describe('rate and ETA', () => {
  it('is unknown until there is enough data', () => {
    expect(estimate([], 100)).toEqual({ rate: null, eta: null, fraction: null });
    expect(estimate(feed([[0, 10]]), 100)).toEqual({ rate: null, eta: null, fraction: 0.1 });
    expect(estimate(feed([[0, 0], [100, 10]]), 100).rate).toBeNull(); // under 250 ms
  });

  it('computes a steady rate and the time left', () => {
    // 10 MB/s for 3 s, of 100 MB.
    const s = feed([[0, 0], [1000, 10e6], [2000, 20e6], [3000, 30e6]]);
    const e = estimate(s, 100e6);
    expect(e.rate).toBeCloseTo(10e6, 0);
    expect(e.eta).toBeCloseTo(7, 5);
    expect(e.fraction).toBeCloseTo(0.3, 5);
  });

  it('smooths over the last few seconds only', () => {
    // 1 MB/s for 10 s, then 10 MB/s for 5 s: the 5 s window sees only the fast part.
    const pts: [number, number][] = [];
    let bytes = 0;
    for (let t = 0; t <= 10000; t += 500) pts.push([t, (bytes = t * 1000)]);
    for (let t = 10500; t <= 15000; t += 500) pts.push([t, (bytes += 5e6)]);
    const s = feed(pts);
    expect(s[s.length - 1].t - s[0].t).toBeLessThanOrEqual(5000);
    const e = estimate(s, 200e6);
    expect(e.rate).toBeCloseTo(10e6, -3);
    expect(e.eta).toBeCloseTo((200e6 - bytes) / 10e6, 1);
  });

  it('keeps bursty progress smooth', () => {
    // 4 MB every 2 s, reported in bursts: the rate stays near 2 MB/s rather than jumping.
    const s = feed([[0, 0], [100, 4e6], [2000, 4e6], [2100, 8e6], [4000, 8e6], [4100, 12e6]]);
    expect(estimate(s, 100e6).rate).toBeCloseTo(12e6 / 4.1, -4);
  });

  it('starts over when progress goes backwards (a new item)', () => {
    const s = feed([[0, 0], [1000, 50], [2000, 100], [2500, 5]]);
    expect(s).toEqual([{ t: 2500, bytes: 5 }]);
    expect(estimate(s, 100).rate).toBeNull();
  });

  it('reports no ETA while stalled, and 0 when done', () => {
    expect(estimate(feed([[0, 10], [1000, 10]]), 100)).toMatchObject({ rate: 0, eta: null });
    expect(estimate(feed([[0, 50], [1000, 100]]), 100)).toMatchObject({ rate: 50, eta: 0, fraction: 1 });
  });

  it('does not mutate its input', () => {
    const a: RateSample[] = [{ t: 0, bytes: 0 }];
    const b = addSample(a, { t: 10, bytes: 1 });
    expect(a).toHaveLength(1);
    expect(b).toHaveLength(2);
  });
});
