// Files dropped on the window go where they make sense: models to the import queue, documents and
// images to the page that claims them (the open conversation). A drop that no page claims yet is
// kept and handed to the first page that does, so dropping a PDF on the Models page opens the chat
// with it attached instead of losing it.
import type { DropKind, Dropped } from './api';

type Handler = (items: Dropped[]) => void;

const claims = new Map<DropKind, Handler>();
const pending = new Map<DropKind, Dropped[]>();

/** A page takes drops of `kind` while mounted; returns the release. Pending drops arrive at once. */
export function claimDrops(kind: DropKind, handler: Handler): () => void {
  claims.set(kind, handler);
  const waiting = pending.get(kind);
  if (waiting?.length) {
    pending.delete(kind);
    handler(waiting);
  }
  return () => {
    if (claims.get(kind) === handler) claims.delete(kind);
  };
}

/**
 * Hands each kind of dropped item to its claimant; `importModels` takes models unless a page
 * claimed them. Returns the kinds nobody claimed (kept pending), so the caller can open the page
 * that takes them.
 */
export function routeDrop(items: Dropped[], importModels: Handler): DropKind[] {
  const unclaimed: DropKind[] = [];
  for (const kind of ['model', 'document', 'image'] as DropKind[]) {
    const these = items.filter((d) => d.kind === kind);
    if (!these.length) continue;
    const claim = claims.get(kind);
    if (claim) claim(these);
    else if (kind === 'model') importModels(these);
    else {
      pending.set(kind, [...(pending.get(kind) ?? []), ...these]);
      unclaimed.push(kind);
    }
  }
  return unclaimed;
}

/** For tests: forget every claim and pending drop. */
export function resetDrops(): void {
  claims.clear();
  pending.clear();
}
