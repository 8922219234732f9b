// The open conversation's documents: attachments, libraries, indexing progress. Indexing runs
// in the background (the backend reports on a channel); the chat never waits for it, except
// for the quick re-check before a question (files changed on disk are read again first).
import * as api from '../api';
import type { ChatMessage, Chosen } from '../api';
import * as docs from '../documents';
import type { Attachment, Failed, IndexEvent, Library, Source } from '../documents';

export interface IndexProgress {
  done: number;
  total: number;
  file: string;
}

export class DocumentsStore {
  /** The conversation shown. */
  convId = $state<string | null>(null);
  attachments = $state<Attachment[]>([]);
  libraries = $state<Library[]>([]);
  /** Jobs running (each attach, library or sync is one). */
  jobs = $state(0);
  progress = $state<IndexProgress | null>(null);
  /** Files the last jobs could not read, and why. */
  failed = $state<Failed[]>([]);
  /** A problem in words (an attach refused, indexing failed, the search failed). */
  notice = $state<string | null>(null);
  /** Set while the question's documents are searched before a reply. */
  searching = $state(false);

  indexing = $derived(this.jobs > 0);
  used = $derived(this.libraries.filter((l) => l.used));
  hasDocuments = $derived(this.attachments.length > 0 || this.libraries.some((l) => l.used));

  private apply(view: docs.ConversationDocuments, convId: string): void {
    if (this.convId !== convId) return;
    this.attachments = view.attachments;
    this.libraries = view.libraries;
  }

  async load(convId: string | null): Promise<void> {
    if (convId !== this.convId) this.failed = [];
    this.convId = convId;
    if (!convId) {
      this.attachments = [];
      this.libraries = [];
      return;
    }
    try {
      this.apply(await docs.documentsOf(convId), convId);
    } catch (e) {
      this.notice = `Could not read the conversation's documents: ${api.errorMessage(e)}`;
    }
  }

  /** A channel handler for one job of `convId`. */
  private job(convId: string): (e: IndexEvent) => void {
    this.jobs++;
    return (e) => {
      if (e.kind === 'progress') {
        this.progress = { done: e.done, total: e.total, file: e.file };
        return;
      }
      this.jobs = Math.max(0, this.jobs - 1);
      if (!this.jobs) this.progress = null;
      if (e.kind === 'error') this.notice = `Indexing failed: ${e.message}`;
      else {
        const others = this.failed.filter((f) => !e.failed.some((g) => g.path === f.path));
        this.failed = [...others, ...e.failed];
      }
      if (this.convId === convId) void this.load(convId).then(() => undefined);
    };
  }

  private async run(convId: string, start: (onEvent: (e: IndexEvent) => void) => Promise<docs.ConversationDocuments | void>): Promise<void> {
    const onEvent = this.job(convId);
    try {
      const view = await start(onEvent);
      if (view) this.apply(view, convId);
    } catch (e) {
      // The job never started: no event will end it.
      onEvent({ kind: 'error', message: api.errorMessage(e) });
    }
  }

  /** Attaches chosen or dropped files (handles) and indexes them in the background. */
  attach(convId: string, chosen: Chosen[], model: string): Promise<void> {
    if (!chosen.length) return Promise.resolve();
    this.notice = null;
    return this.run(convId, (on) => docs.attachDocuments(convId, chosen.map((c) => c.handle), model, on));
  }

  /** The attach button: the native multi-select dialog, then [`attach`]. */
  async pickAndAttach(convId: string, model: string): Promise<void> {
    try {
      await this.attach(convId, await docs.pickDocuments(), model);
    } catch (e) {
      this.notice = `Could not open the file dialog: ${api.errorMessage(e)}`;
    }
  }

  async detach(convId: string, id: number): Promise<void> {
    try {
      this.apply(await docs.detachDocument(convId, id), convId);
    } catch (e) {
      this.notice = `Could not remove the file: ${api.errorMessage(e)}`;
    }
  }

  /** Add folder as library: the folder dialog, then indexing in the background. */
  async addLibrary(convId: string, model: string): Promise<void> {
    let chosen: Chosen | null;
    try {
      chosen = await api.pickPath('library_folder');
    } catch (e) {
      this.notice = `Could not open the folder dialog: ${api.errorMessage(e)}`;
      return;
    }
    if (!chosen) return;
    const handle = chosen.handle;
    await this.run(convId, (on) => docs.addLibrary(convId, handle, model, on));
  }

  async removeLibrary(convId: string, id: number): Promise<void> {
    try {
      this.apply(await docs.removeLibrary(convId, id), convId);
    } catch (e) {
      this.notice = `Could not remove the library: ${api.errorMessage(e)}`;
    }
  }

  /** Uses (or stops using) library `id` in the conversation. */
  toggleLibrary(convId: string, id: number, model: string): Promise<void> {
    const ids = this.libraries.filter((l) => (l.id === id ? !l.used : l.used)).map((l) => l.id);
    return this.run(convId, (on) => docs.useLibraries(convId, ids, model, on));
  }

  /** Opening a conversation: what changed since (files, the embedding model) is read again in the background. */
  async refresh(convId: string, model: string): Promise<void> {
    if (convId !== this.convId || !this.hasDocuments || this.indexing) return;
    // Counted as a job only when one starts (most of the time everything is current).
    let onEvent: ((e: IndexEvent) => void) | null = null;
    try {
      const started = await docs.syncDocuments(convId, model, (e) => (onEvent ??= this.job(convId))(e));
      if (started) onEvent ??= this.job(convId);
    } catch (e) {
      this.notice = `Could not check the documents for changes: ${api.errorMessage(e)}`;
    }
  }

  cancel(): void {
    docs.cancelIndexing().catch(() => {});
  }

  /**
   * The messages to send for a reply, with the conversation's documents searched for the last
   * question, and the sources to show under the reply. Never throws: when the search fails the
   * reply goes ahead without documents and the notice says why.
   */
  async forReply(convId: string, model: string, messages: ChatMessage[], numCtx: number | null): Promise<{ messages: ChatMessage[]; sources: Source[] }> {
    const none = { messages, sources: [] as Source[] };
    const question = [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';
    if (convId !== this.convId || !this.hasDocuments || !question.trim()) return none;
    this.searching = true;
    const onEvent = this.job(convId);
    try {
      const found = await docs.retrieveDocuments(convId, model, question, numCtx, (e) => {
        // Progress of a re-index before the question; its end is the search's own end below.
        if (e.kind === 'progress') onEvent(e);
        else if (e.kind === 'finished' && e.failed.length) this.failed = e.failed;
      });
      return { messages: docs.withContext(messages, found.context), sources: found.sources };
    } catch (e) {
      this.notice = `The documents were not searched for this reply: ${api.errorMessage(e)}`;
      return none;
    } finally {
      this.searching = false;
      onEvent({ kind: 'finished', indexed: 0, unchanged: 0, chunks: 0, failed: [], cancelled: false });
    }
  }
}

export const documents = new DocumentsStore();
