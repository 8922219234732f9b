import { describe, expect, it } from 'vitest';
import type { Conversation, StoredMessage } from './api';
import {
  INTERRUPTED,
  appendTurn,
  buildChatMessages,
  editAndResend,
  newConversation,
  normalizeConversation,
  parseParam,
  regenerate,
  restoreInterrupted,
  searchConversations,
  sortByUpdated,
  titleFrom,
} from './conversation';

function msg(role: StoredMessage['role'], content: string, extra: Partial<StoredMessage> = {}): StoredMessage {
  return { id: `${role}-${content}`, role, content, created: '2024-01-01T00:00:00Z', ...extra };
}

function conv(messages: StoredMessage[], extra: Partial<Conversation> = {}): Conversation {
  return { ...newConversation('m', '2024-01-01T00:00:00Z'), messages, ...extra };
}

describe('titles', () => {
  it('uses the first ~40 characters of the first user message', () => {
    expect(titleFrom('Why is the sky blue?')).toBe('Why is the sky blue?');
    const long = 'Explain in great detail how a transformer language model predicts the next token';
    const t = titleFrom(long);
    expect(t.endsWith('…')).toBe(true);
    expect(Array.from(t).length).toBeLessThanOrEqual(41);
    expect(long.startsWith(t.slice(0, -1))).toBe(true);
  });
  it('flattens whitespace and never splits a multi-byte character', () => {
    expect(titleFrom('  hello\n\n  world  ')).toBe('hello world');
    const emoji = '😀'.repeat(50);
    const t = titleFrom(emoji);
    expect(t).toBe('😀'.repeat(40) + '…');
  });
  it('is set by the first message only', () => {
    const c1 = appendTurn(conv([]), 'First question here').conversation;
    expect(c1.title).toBe('First question here');
    const c2 = appendTurn(c1, 'Second one').conversation;
    expect(c2.title).toBe('First question here');
  });
});

describe('sending', () => {
  it('appends the user message and an empty streaming reply, clearing the draft', () => {
    const { conversation, reply } = appendTurn(conv([], { draft: 'hi' }), 'hi');
    expect(conversation.messages.map((m) => [m.role, m.content])).toEqual([
      ['user', 'hi'],
      ['assistant', ''],
    ]);
    expect(reply.streaming).toBe(true);
    expect(conversation.messages[1].id).toBe(reply.id);
    expect(conversation.draft).toBe('');
  });
});

describe('the message list sent to the model', () => {
  const messages = [msg('user', 'a'), msg('assistant', 'b'), msg('user', 'c'), msg('assistant', '', { streaming: true, id: 'r' })];
  it('puts the system prompt first', () => {
    expect(buildChatMessages('Be brief.', messages, 'r')).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'b' },
      { role: 'user', content: 'c' },
    ]);
  });
  it('leaves out an empty system prompt and empty (failed) replies', () => {
    const list = [msg('user', 'a'), msg('assistant', '', { error: 'boom' }), msg('user', 'a2')];
    expect(buildChatMessages('   ', list)).toEqual([
      { role: 'user', content: 'a' },
      { role: 'user', content: 'a2' },
    ]);
  });
  it('stops at the reply being generated', () => {
    expect(buildChatMessages('', messages, 'assistant-b')).toEqual([{ role: 'user', content: 'a' }]);
  });
});

describe('edit and resend', () => {
  it('replaces the message, drops everything after it and appends a new reply', () => {
    const c = conv([msg('user', 'one'), msg('assistant', 'r1'), msg('user', 'two'), msg('assistant', 'r2'), msg('user', 'three'), msg('assistant', 'r3')]);
    const r = editAndResend(c, 'user-two', 'TWO!')!;
    expect(r.conversation.messages.map((m) => m.content)).toEqual(['one', 'r1', 'TWO!', '']);
    expect(r.conversation.messages[2].id).toBe('user-two');
    expect(r.conversation.messages[3].id).toBe(r.reply.id);
    expect(buildChatMessages('', r.conversation.messages, r.reply.id).map((m) => m.content)).toEqual(['one', 'r1', 'TWO!']);
  });
  it('retitles when the first message was edited and the title was automatic', () => {
    const c = conv([msg('user', 'old first'), msg('assistant', 'x')], { title: 'old first' });
    expect(editAndResend(c, 'user-old first', 'new first')!.conversation.title).toBe('new first');
    const renamed = conv([msg('user', 'old first')], { title: 'My chat' });
    expect(editAndResend(renamed, 'user-old first', 'new first')!.conversation.title).toBe('My chat');
  });
  it('refuses assistant messages and unknown ids', () => {
    const c = conv([msg('user', 'a'), msg('assistant', 'b')]);
    expect(editAndResend(c, 'assistant-b', 'x')).toBeNull();
    expect(editAndResend(c, 'nope', 'x')).toBeNull();
  });
});

describe('regenerate', () => {
  it('replaces the last reply', () => {
    const c = conv([msg('user', 'a'), msg('assistant', 'b'), msg('user', 'c'), msg('assistant', 'd', { stats: null })]);
    const r = regenerate(c)!;
    expect(r.conversation.messages.map((m) => m.content)).toEqual(['a', 'b', 'c', '']);
    expect(r.conversation.messages[3].streaming).toBe(true);
  });
  it('answers a trailing user message that has no reply', () => {
    const r = regenerate(conv([msg('user', 'a')]))!;
    expect(r.conversation.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
  });
  it('does nothing on an empty conversation', () => {
    expect(regenerate(conv([]))).toBeNull();
  });
});

describe('restoring after a crash', () => {
  it('marks a reply saved while streaming as interrupted and keeps its text', () => {
    const c = conv([msg('user', 'a'), msg('assistant', 'partial ans', { streaming: true })]);
    const r = restoreInterrupted(c);
    expect(r.messages[1]).toMatchObject({ content: 'partial ans', streaming: false, error: INTERRUPTED });
    expect(regenerate(r)!.conversation.messages.map((m) => m.content)).toEqual(['a', '']);
  });
  it('leaves finished conversations alone', () => {
    const c = conv([msg('user', 'a'), msg('assistant', 'b')]);
    expect(restoreInterrupted(c)).toBe(c);
  });
  it('fills missing fields', () => {
    const c = normalizeConversation({ id: 'x', messages: [] } as unknown as Conversation);
    expect(c.parameters).toEqual({ temperature: null, top_p: null, top_k: null, num_predict: null, num_ctx: null, min_p: null, repeat_penalty: null, seed: null, think: null });
    expect(c.draft).toBe('');
  });
});

describe('list', () => {
  const a = conv([msg('user', 'talk about Rust lifetimes')], { id: 'a', title: 'Rust', updated: '2024-01-02T00:00:00Z' });
  const b = conv([msg('user', 'Pasta recipe'), msg('assistant', 'Boil water, add salt')], { id: 'b', title: 'Cooking', updated: '2024-01-03T00:00:00Z' });
  it('sorts by last update', () => {
    expect(sortByUpdated([a, b]).map((c) => c.id)).toEqual(['b', 'a']);
  });
  it('searches titles and message text, case-insensitively', () => {
    expect(searchConversations([a, b], 'rust').map((c) => c.id)).toEqual(['a']);
    expect(searchConversations([a, b], 'SALT').map((c) => c.id)).toEqual(['b']);
    expect(searchConversations([a, b], 'lifetimes').map((c) => c.id)).toEqual(['a']);
    expect(searchConversations([a, b], '  ').length).toBe(2);
    expect(searchConversations([a, b], 'nothing')).toEqual([]);
  });
});

describe('parameters', () => {
  it('empty is null (the default)', () => {
    expect(parseParam('')).toBeNull();
    expect(parseParam('  ')).toBeNull();
    expect(parseParam('0.7')).toBe(0.7);
    expect(parseParam('40.9', true)).toBe(40);
    expect(parseParam('abc')).toBeNull();
  });
});
