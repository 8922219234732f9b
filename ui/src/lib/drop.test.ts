import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Dropped } from './api';
import { claimDrops, resetDrops, routeDrop } from './drop';

const item = (path: string, kind: Dropped['kind']): Dropped => ({ handle: `h-${path}`, path, kind });

describe('routeDrop', () => {
  beforeEach(resetDrops);

  it('imports models and keeps unclaimed documents for the page that claims them', () => {
    const imported = vi.fn();
    const unclaimed = routeDrop([item('/m.zip', 'model'), item('/a.pdf', 'document')], imported);
    expect(imported).toHaveBeenCalledWith([item('/m.zip', 'model')]);
    expect(unclaimed).toEqual(['document']);

    const attach = vi.fn();
    const release = claimDrops('document', attach);
    expect(attach).toHaveBeenCalledWith([item('/a.pdf', 'document')]);

    routeDrop([item('/b.md', 'document')], imported);
    expect(attach).toHaveBeenLastCalledWith([item('/b.md', 'document')]);
    expect(imported).toHaveBeenCalledTimes(1);

    release();
    expect(routeDrop([item('/c.txt', 'document')], imported)).toEqual(['document']);
    expect(attach).toHaveBeenCalledTimes(2);
  });

  it('lets a page take models instead of the import queue', () => {
    const imported = vi.fn();
    const take = vi.fn();
    claimDrops('model', take);
    expect(routeDrop([item('/x.gguf', 'model')], imported)).toEqual([]);
    expect(take).toHaveBeenCalledOnce();
    expect(imported).not.toHaveBeenCalled();
  });
});
