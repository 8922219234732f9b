import { describe, expect, it } from 'vitest';
import { formatBytes } from './format';

describe('formatBytes: one byte format, Ollama\'s (the same cases as the CLI\'s human_bytes test)', () => {
  it('prints decimal units, whole numbers from 10 up, one decimal below', () => {
    const cases: [number, string][] = [
      [815, '815 B'],
      [253_000_000, '253 MB'],
      [851_300_000, '851 MB'],
      [851_900_000, '851 MB'], // truncated like Go's int(), not rounded up
      [1_500_000_000, '1.5 GB'],
      [1_234_000_000, '1.2 GB'],
      [2_000_000_000, '2 GB'],
      [4_920_000_000, '4.9 GB'],
      [4 * 1024 ** 3 - 1, '4.3 GB'],
      [12_500_000_000_000, '12 TB'],
    ];
    for (const [n, want] of cases) expect(formatBytes(n)).toBe(want);
  });

  it('never prints binary units', () => {
    for (const n of [1023, 1024 ** 2, 7.6 * 1024 ** 3]) expect(formatBytes(n)).not.toMatch(/iB/);
  });

  it('shows a dash for what is not a size', () => {
    expect([formatBytes(null), formatBytes(undefined), formatBytes(NaN), formatBytes(-1)]).toEqual(['—', '—', '—', '—']);
  });
});
