// Parameter ranges, as the backend accepts them (command `parameter_limits`, the same table the
// HTTP API's option parser checks), so a field never allows what the reply will then refuse.
import { invoke } from '@tauri-apps/api/core';

export interface ParamLimit {
  key: string;
  label: string;
  min: number;
  max: number;
  integer: boolean;
  /** What the lowest value means when it is special ("-1 or -2 = until done"). */
  special_min: string | null;
}

let cached: Promise<ParamLimit[]> | null = null;

/** The backend's limits, asked once; an empty list when they cannot be read (fields stay unbounded). */
export function parameterLimits(): Promise<ParamLimit[]> {
  cached ??= invoke<ParamLimit[]>('parameter_limits').catch(() => {
    cached = null;
    return [];
  });
  return cached;
}

/** For tests: forget the cached answer. */
export function forgetLimits(): void {
  cached = null;
}

/** Why `value` is refused ("Context length must be between 256 and 16777216"), or null if it is fine. */
export function limitProblem(label: string, limit: ParamLimit | undefined, value: number | null): string | null {
  if (value === null || !limit) return null;
  const whole = limit.integer && !Number.isInteger(value);
  if (whole || value < limit.min || value > limit.max) {
    const special = limit.special_min ? ` (${limit.special_min})` : '';
    return `${label} must be ${limit.integer ? 'a whole number ' : ''}between ${limit.min} and ${limit.max}${special}.`;
  }
  return null;
}
