// Import and export: one transfer at a time, with progress, rate/ETA, cancel, and the result.
import * as api from '../api';
import type { ExportOptions, ExportReport, FolderScan, FoundPick, ImportReport, PathArg, Progress, PullReport } from '../api';
import { addSample, estimate, type RateEstimate, type RateSample } from '../rate';
import { app } from './app.svelte';

export interface ProgressView extends Progress, RateEstimate {}

/** Progress events can come thousands of times a second; the panel updates at most this often. */
const PROGRESS_UI_MS = 100;

class ProgressTracker {
  view = $state<ProgressView | null>(null);
  private samples: RateSample[] = [];
  private latest: Progress | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  start(phase: string): void {
    this.samples = [];
    this.latest = null;
    this.view = { phase, item: '', done_bytes: 0, total_bytes: 0, rate: null, eta: null, fraction: null };
  }

  push = (p: Progress): void => {
    this.samples = addSample(this.samples, { t: performance.now(), bytes: p.done_bytes });
    this.latest = p;
    if (!this.timer) this.timer = setTimeout(() => this.publish(), PROGRESS_UI_MS);
  };

  private publish(): void {
    this.timer = null;
    const p = this.latest;
    if (!p) return;
    this.view = { ...p, ...estimate(this.samples, p.total_bytes) };
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.view = null;
  }
}

export interface QueuedImport {
  /** A chosen file's handle, or a typed path (the app confirms it in a native dialog). */
  source: PathArg;
  /** The path, to show. */
  label: string;
  name: string | null;
  /** The models picked from a scanned folder (`import_found`); absent: `import_path`. */
  picks?: FoundPick[];
}

class Transfers {
  busy = $state<'import' | 'export' | 'pull' | null>(null);
  progress = new ProgressTracker();
  current = $state<QueuedImport | null>(null);
  queue = $state<QueuedImport[]>([]);
  cancelling = $state(false);

  importResult = $state<ImportReport | null>(null);
  importError = $state<{ path: string; message: string } | null>(null);
  importCancelled = $state<string | null>(null);

  pulling = $state<string | null>(null);
  pullResult = $state<PullReport | null>(null);
  pullError = $state<string | null>(null);
  pullCancelled = $state<string | null>(null);

  exportResult = $state<ExportReport | null>(null);
  exportError = $state<string | null>(null);
  exportCancelled = $state(false);

  /** Closes the result (or error, or "cancelled") panel of the last import, pull or export. */
  dismiss(kind: 'import' | 'pull' | 'export'): void {
    if (kind === 'import') [this.importResult, this.importError, this.importCancelled] = [null, null, null];
    else if (kind === 'pull') [this.pullResult, this.pullError, this.pullCancelled] = [null, null, null];
    else [this.exportResult, this.exportError, this.exportCancelled] = [null, null, false];
  }

  /** Set while an import dialog is open (and while the chosen folder is looked through). */
  picking = $state(false);
  /** The folder being looked through for models, while it is. */
  scanning = $state<string | null>(null);
  /** A looked-through folder that is not a bundle: the models found, for the person to pick. */
  folderScan = $state<FolderScan | null>(null);

  /**
   * Opens the native dialog for a folder or a bundle file. A file (a `.zip`, or a `.gguf` named
   * `ggufName`) is queued. A folder is looked through first: a bundle, an Ollama models folder
   * or a transfer kit is queued; any other folder's models are offered in `folderScan`.
   * Throws what the dialog or the scan reported.
   */
  async pickAndImport(kind: 'bundle_folder' | 'bundle_file', ggufName: string | null = null): Promise<void> {
    if (this.picking) return;
    this.picking = true;
    try {
      const chosen = await api.pickPath(kind);
      if (!chosen) return;
      if (kind === 'bundle_folder') {
        this.scanning = chosen.path;
        let scan: FolderScan;
        try {
          scan = await api.scanImportFolder({ handle: chosen.handle });
        } finally {
          this.scanning = null;
        }
        if (!scan.bundle) {
          this.folderScan = scan;
          return;
        }
        this.enqueue([{ source: { handle: chosen.handle }, label: chosen.path, name: null }]);
        return;
      }
      const name = /\.gguf$/i.test(chosen.path) ? ggufName : null;
      this.enqueue([{ source: { handle: chosen.handle }, label: chosen.path, name }]);
    } finally {
      this.picking = false;
    }
  }

  /** Queues the import of the models picked from `folderScan` (their names as edited) and closes it. */
  importFound(scan: FolderScan, picks: FoundPick[]): void {
    this.folderScan = null;
    if (!picks.length) return;
    this.enqueue([{ source: { handle: scan.source.handle }, label: scan.source.path, name: null, picks: picks.map((p) => ({ id: p.id, name: p.name.trim() })) }]);
  }

  /** Closes the models found in a folder without importing. */
  closeFolderScan(): void {
    this.folderScan = null;
  }

  /** Queues imports; they run one after another. */
  enqueue(items: QueuedImport[]): void {
    const clean = items.filter((i) => ('handle' in i.source ? i.source.handle : i.source.typed.trim()));
    if (!clean.length) return;
    this.queue = [...this.queue, ...clean.map((i) => ({ ...i, name: i.name?.trim() || null }))];
    if (!this.busy) void this.runQueue();
  }

  private async runQueue(): Promise<void> {
    while (this.queue.length && !this.busy) {
      const [next, ...rest] = this.queue;
      this.queue = rest;
      await this.importOne(next);
    }
  }

  private async importOne(item: QueuedImport): Promise<void> {
    this.busy = 'import';
    this.cancelling = false;
    this.current = item;
    this.importResult = null;
    this.importError = null;
    this.importCancelled = null;
    this.progress.start('importing');
    try {
      const source = $state.snapshot(item.source);
      const report = item.picks
        ? await api.importFound(source, $state.snapshot(item.picks), this.progress.push)
        : await api.importPath(source, item.name, this.progress.push);
      this.importResult = report;
    } catch (e) {
      if (isCancelled(e) || api.notConfirmed(e)) {
        this.importCancelled = item.label;
        this.queue = []; // cancelling stops the rest of a dropped batch too
      } else {
        this.importError = { path: item.label, message: api.errorMessage(e) };
      }
    } finally {
      this.progress.stop();
      this.busy = null;
      this.current = null;
      this.cancelling = false;
      await app.refreshModels();
    }
  }

  async exportModels(models: string[], out: PathArg, options: ExportOptions): Promise<void> {
    if (this.busy) return;
    this.busy = 'export';
    this.cancelling = false;
    this.exportResult = null;
    this.exportError = null;
    this.exportCancelled = false;
    this.progress.start('exporting');
    try {
      this.exportResult = await api.exportModels(models, out, options, this.progress.push);
    } catch (e) {
      if (isCancelled(e) || api.notConfirmed(e)) this.exportCancelled = true;
      else this.exportError = api.errorMessage(e);
    } finally {
      this.progress.stop();
      this.busy = null;
      this.cancelling = false;
      if (this.queue.length) void this.runQueue();
    }
  }

  /** Pulls `name` from the site registry; one transfer at a time, like imports. */
  async pull(name: string): Promise<void> {
    const n = name.trim();
    if (this.busy || !n) return;
    this.busy = 'pull';
    this.cancelling = false;
    this.pulling = n;
    this.pullResult = null;
    this.pullError = null;
    this.pullCancelled = null;
    this.progress.start('pulling');
    try {
      this.pullResult = await api.pullFromRegistry(n, this.progress.push);
    } catch (e) {
      if (isCancelled(e)) this.pullCancelled = n;
      else this.pullError = api.errorMessage(e);
    } finally {
      this.progress.stop();
      this.busy = null;
      this.pulling = null;
      this.cancelling = false;
      await app.refreshModels();
      if (this.queue.length) void this.runQueue();
    }
  }

  async cancel(): Promise<void> {
    if (!this.busy) return;
    this.cancelling = true;
    try {
      await api.cancelTransfer();
    } catch {
      /* the transfer may have just finished */
    }
  }
}

function isCancelled(e: unknown): boolean {
  return !!e && typeof e === 'object' && (e as { code?: string }).code === 'cancelled';
}

export const transfers = new Transfers();
