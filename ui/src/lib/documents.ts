// The documents commands (src-tauri/desktop/documents.rs): files attached to a conversation,
// libraries (folders several conversations use), indexing with progress, and the context for a
// question. Files are named by handles from a dialog or a drop, never by a path from here.

import { Channel, invoke } from '@tauri-apps/api/core';
import type { ChatMessage, Chosen, CommandError } from './api';

export interface Attachment {
  id: number;
  name: string;
  path: string;
  chunks: number;
  /** Why it cannot be read (the extractor's words), if so. */
  error: string | null;
  /** False until indexed for the first time. */
  indexed: boolean;
}

export interface Library {
  id: number;
  name: string;
  path: string;
  files: number;
  chunks: number;
  /** [path, why] of the files in it that cannot be read. */
  failed: [string, string][];
  /** The conversation asked about uses it. */
  used: boolean;
}

export interface ConversationDocuments {
  attachments: Attachment[];
  libraries: Library[];
  /** The embedding model chosen in Settings; null: the chat model embeds. */
  embedding_model: string | null;
  indexing: boolean;
}

export interface Failed {
  file: string;
  path: string;
  reason: string;
}

export type IndexEvent =
  | { kind: 'progress'; done: number; total: number; file: string }
  | { kind: 'finished'; indexed: number; unchanged: number; chunks: number; failed: Failed[]; cancelled: boolean }
  | { kind: 'error'; message: string };

/** A source under a reply (saved with the message). */
export interface Source {
  /** The number the prompt cites it by. */
  n: number;
  file: string;
  path: string;
  /** "page 3", a heading, or "". */
  location: string;
  snippet: string;
  /** The whole chunk, for the viewer. */
  text: string;
}

export interface Retrieved {
  /** The context block for the prompt; null when nothing was found. */
  context: string | null;
  sources: Source[];
  tokens: number;
  budget: number;
  counted_by: string;
}

function channel(onEvent: (e: IndexEvent) => void): Channel<IndexEvent> {
  const c = new Channel<IndexEvent>();
  c.onmessage = onEvent;
  return c;
}

export const documentsOf = (conversation: string) => invoke<ConversationDocuments>('documents_of', { conversation });

/** The multi-select document dialog; [] on cancel (or while another dialog is open). */
export const pickDocuments = () => invoke<Chosen[]>('pick_documents');

export const attachDocuments = (conversation: string, handles: string[], model: string, onEvent: (e: IndexEvent) => void) =>
  invoke<ConversationDocuments>('attach_documents', { conversation, handles, model, onEvent: channel(onEvent) });
export const detachDocument = (conversation: string, id: number) => invoke<ConversationDocuments>('detach_document', { conversation, id });

/** `handle`: a folder from `pickPath('library_folder')`. */
export const addLibrary = (conversation: string, handle: string, model: string, onEvent: (e: IndexEvent) => void) =>
  invoke<ConversationDocuments>('add_library', { conversation, handle, model, onEvent: channel(onEvent) });
export const removeLibrary = (conversation: string, id: number) => invoke<ConversationDocuments>('remove_library', { conversation, id });
export const useLibraries = (conversation: string, ids: number[], model: string, onEvent: (e: IndexEvent) => void) =>
  invoke<ConversationDocuments>('use_libraries', { conversation, ids, model, onEvent: channel(onEvent) });
/** Starts re-indexing what changed (files on disk, the embedding model); false: all current. */
export const syncDocuments = (conversation: string, model: string, onEvent: (e: IndexEvent) => void) =>
  invoke<boolean>('sync_documents', { conversation, model, onEvent: channel(onEvent) });
export const cancelIndexing = () => invoke<void>('cancel_indexing');

export const embeddingSettings = () => invoke<{ model: string | null }>('embedding_settings');
export const setEmbeddingModel = (model: string | null) => invoke<void>('set_embedding_model', { model });

export const retrieveDocuments = (conversation: string, model: string, question: string, numCtx: number | null, onEvent: (e: IndexEvent) => void) =>
  invoke<Retrieved>('retrieve_documents', { conversation, model, question, numCtx, onEvent: channel(onEvent) });

/**
 * The messages to send with the documents' context: the block goes before the question in the
 * last user message (only in what is sent; the conversation keeps the question as typed). Not a
 * system message: some chat templates refuse one, and a model's own system prompt stays.
 */
export function withContext(messages: ChatMessage[], context: string | null): ChatMessage[] {
  if (!context) return messages;
  const i = messages.map((m) => m.role).lastIndexOf('user');
  if (i < 0) return messages;
  const out = messages.slice();
  out[i] = { ...out[i], content: `${context}\n\nQuestion: ${out[i].content}` };
  return out;
}

export function isBusy(e: unknown): boolean {
  return !!e && typeof e === 'object' && (e as CommandError).code === 'busy';
}
