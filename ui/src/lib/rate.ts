// Transfer rate and ETA, smoothed over the last few seconds of progress samples. Pure.

export interface RateSample {
  /** Milliseconds (any monotonic clock). */
  t: number;
  /** Bytes done at that time. */
  bytes: number;
}

export interface RateEstimate {
  /** Bytes per second over the window; null until there is enough to tell. */
  rate: number | null;
  /** Seconds left at that rate; null when unknown. */
  eta: number | null;
  /** 0..1, or null when the total is unknown. */
  fraction: number | null;
}

export const DEFAULT_WINDOW_MS = 5000;

/**
 * Adds a sample and drops those older than the window (keeping one just outside it as the
 * anchor). A sample that goes backwards (a new phase or a new item restarting at 0) starts over.
 * Returns a new array; the input is not changed.
 */
export function addSample(samples: readonly RateSample[], sample: RateSample, windowMs = DEFAULT_WINDOW_MS): RateSample[] {
  const last = samples[samples.length - 1];
  if (last && (sample.bytes < last.bytes || sample.t < last.t)) return [sample];
  const out = [...samples, sample];
  // Keep the newest sample at or before (now - window) as the anchor of the window.
  let start = 0;
  while (start + 1 < out.length && out[start + 1].t <= sample.t - windowMs) start++;
  return start > 0 ? out.slice(start) : out;
}

/** Rate and ETA from the samples (as kept by `addSample`) and the total. */
export function estimate(samples: readonly RateSample[], total: number, minSpanMs = 250): RateEstimate {
  const last = samples[samples.length - 1];
  const fraction = last && total > 0 ? Math.min(1, Math.max(0, last.bytes / total)) : null;
  if (!last || samples.length < 2) return { rate: null, eta: null, fraction };
  const first = samples[0];
  const span = last.t - first.t;
  if (span < minSpanMs) return { rate: null, eta: null, fraction };
  const rate = ((last.bytes - first.bytes) * 1000) / span;
  if (!(rate > 0)) return { rate: 0, eta: null, fraction };
  const left = Math.max(0, total - last.bytes);
  return { rate, eta: total > 0 ? left / rate : null, fraction };
}
