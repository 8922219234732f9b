import { describe, expect, it } from 'vitest';
import { editAndResend, regenerate } from './conversation';
import { allBranches, allVersions, showBranch, showVersion } from './versions';
import type { Conversation, StoredMessage } from './api';

const user: StoredMessage = { id: 'u1', role: 'user', content: 'Hi', created: '2024-01-01T00:00:00Z' };
const reply = (content: string, over: Partial<StoredMessage> = {}): StoredMessage => ({ id: 'a1', role: 'assistant', content, created: '2024-01-01T00:00:01Z', stats: null, ...over });
const conv = (messages: StoredMessage[]): Conversation => ({
  id: 'c1', title: 'T', model: 'm', system_prompt: '', draft: '', created: '', updated: '', messages,
  parameters: { temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null },
});

describe('reply versions', () => {
  it('regenerate keeps the replaced reply as version 1 of 2, then 2 of 3', () => {
    const r1 = regenerate(conv([user, reply('first')]), '2024-01-01T00:00:02Z')!;
    const second = { ...r1.reply, content: 'second', streaming: false };
    expect(allVersions(second).map((v) => v.content)).toEqual(['first', 'second']);
    expect(second.version_index).toBe(1);
    const r2 = regenerate(conv([user, second]), '2024-01-01T00:00:03Z')!;
    const third = { ...r2.reply, content: 'third', streaming: false };
    expect(allVersions(third).map((v) => v.content)).toEqual(['first', 'second', 'third']);
    expect(third.version_index).toBe(2);
  });

  it('switching shows an earlier version as the message itself, and back', () => {
    const r = regenerate(conv([user, reply('first')]), '2024-01-01T00:00:02Z')!;
    const latest = { ...r.reply, content: 'second', streaming: false };
    const back = showVersion(latest, 0);
    expect([back.content, back.version_index, back.previous_versions!.map((v) => v.content)]).toEqual(['first', 0, ['second']]);
    expect(allVersions(back).map((v) => v.content)).toEqual(['first', 'second']);
    const again = showVersion(back, 1);
    expect([again.content, again.version_index]).toEqual(['second', 1]);
    expect(showVersion(again, 5)).toBe(again);
  });

  it('each version keeps its own thinking', () => {
    const r = regenerate(conv([user, reply('first', { thinking: 'A greeting.' })]), '2024-01-01T00:00:02Z')!;
    const latest: StoredMessage = { ...r.reply, content: 'second', streaming: false };
    expect(latest.thinking).toBeUndefined();
    const back = showVersion(latest, 0);
    expect([back.content, back.thinking]).toEqual(['first', 'A greeting.']);
    const again = showVersion(back, 1);
    expect([again.content, again.thinking]).toEqual(['second', undefined]);
    expect(again.previous_versions![0]).toMatchObject({ content: 'first', thinking: 'A greeting.' });
  });

  it('a failed or empty reply is not kept as a version', () => {
    const r = regenerate(conv([user, reply('', { error: 'the model process exited' })]))!;
    expect(r.reply.previous_versions).toBeUndefined();
    const r2 = regenerate(conv([user, { ...reply('good'), previous_versions: [{ content: 'older', created: '2024-01-01T00:00:00Z' }], version_index: 1 }]))!;
    const failed = { ...r2.reply, content: 'part', error: 'stopped' };
    const r3 = regenerate(conv([user, failed]))!;
    expect(r3.reply.previous_versions!.map((v) => v.content)).toEqual(['older', 'good']);
  });
});

describe('edit-and-resend branches', () => {
  const a = (id: string, content: string): StoredMessage => ({ id, role: 'assistant', content, created: '2024-01-01T00:00:01Z' });
  const u = (id: string, content: string): StoredMessage => ({ id, role: 'user', content, created: '2024-01-01T00:00:00Z' });

  it('the old branch stays reachable and switching swaps the whole tail', () => {
    const c = conv([u('u1', 'Hi'), a('a1', 'Hello'), u('u2', 'Tell a joke'), a('a2', 'Joke one')]);
    const edited = editAndResend(c, 'u2', 'Tell a poem')!;
    const msgs = [...edited.conversation.messages.slice(0, -1), { ...edited.reply, content: 'A poem', streaming: false }];
    expect(msgs.map((m) => m.content)).toEqual(['Hi', 'Hello', 'Tell a poem', 'A poem']);
    expect(msgs[2].branch_index).toBe(1);
    expect(allBranches(msgs, 2).map((b) => b.map((m) => m.content))).toEqual([['Tell a joke', 'Joke one'], ['Tell a poem', 'A poem']]);

    const old = showBranch(msgs, 2, 0);
    expect(old.map((m) => m.content)).toEqual(['Hi', 'Hello', 'Tell a joke', 'Joke one']);
    expect(old[2].branch_index).toBe(0);
    expect(showBranch(old, 2, 1).map((m) => m.content)).toEqual(['Hi', 'Hello', 'Tell a poem', 'A poem']);
    expect(showBranch(old, 2, 7)).toBe(old);
  });

  it('editing again adds a third branch', () => {
    const c = conv([u('u1', 'one'), a('a1', 'r1')]);
    const e1 = editAndResend(c, 'u1', 'two')!.conversation;
    const e2 = editAndResend({ ...e1, messages: e1.messages.slice(0, -1).concat(a('a2', 'r2')) }, 'u1', 'three')!.conversation;
    expect(allBranches(e2.messages, 0).map((b) => b[0].content)).toEqual(['one', 'two', 'three']);
    expect(e2.messages[0].branch_index).toBe(2);
  });
});
