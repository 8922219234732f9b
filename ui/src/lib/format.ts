// Small pure formatting helpers shared by the pages.
import type { FitVerdict } from './api';

const BYTE_UNITS: [number, string][] = [
  [1e12, 'TB'],
  [1e9, 'GB'],
  [1e6, 'MB'],
  [1e3, 'KB'],
];

/**
 * The one byte format of the app, Ollama's (and the CLI's `human_bytes`): decimal units,
 * whole numbers from 10 up, one decimal below: "815 B", "851 MB", "1.2 GB", "2 GB".
 */
export function formatBytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n) || n < 0) return '—';
  const unit = BYTE_UNITS.find(([scale]) => n >= scale);
  if (!unit) return `${Math.trunc(n)} B`;
  const value = n / unit[0];
  // From 10 up the number is truncated, as Ollama's Go `int(value)` does (851.9 MB → "851 MB").
  if (value >= 10 || Number.isInteger(value)) return `${Math.trunc(value)} ${unit[1]}`;
  return `${value.toFixed(1)} ${unit[1]}`;
}

export function formatRate(bytesPerSecond: number | null): string {
  if (bytesPerSecond == null || !Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return '—';
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** Seconds → "1 h 02 min", "3 min 05 s", "12 s". */
export function formatDuration(seconds: number | null): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${String(m % 60).padStart(2, '0')} min`;
}

/** An RFC 3339 date as "5 minutes ago" (under a week) or a local date. */
export function formatRelative(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return iso || '—';
  const diff = (now - t) / 1000;
  if (diff < 0 || diff >= 7 * 86400) return new Date(t).toLocaleDateString();
  if (diff < 45) return 'just now';
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  if (diff < 3600) return rtf.format(-Math.round(diff / 60), 'minute');
  if (diff < 86400) return rtf.format(-Math.round(diff / 3600), 'hour');
  return rtf.format(-Math.round(diff / 86400), 'day');
}

export function formatNumber(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '—';
  return n.toLocaleString();
}

/** The fit verdict in words. */
export function verdictWords(v: FitVerdict): string {
  switch (v.verdict) {
    case 'full_gpu':
      return 'Full GPU';
    case 'partial_offload':
      return `Partial offload: ${v.layers} of ${v.of} layers`;
    case 'cpu_only':
      return 'CPU only';
    case 'does_not_fit':
      return 'Does not fit';
    default:
      return String((v as { verdict: string }).verdict);
  }
}

/** A short random id (crypto when available). */
export function newId(prefix = ''): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return prefix + c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function nowIso(): string {
  return new Date().toISOString();
}
