// Conversations and the streaming reply. Everything the user does in the chat goes through here.
import { replyAnnouncement } from '../announce';
import { showBranch as showBranchOp, showVersion as showVersionOp } from '../versions';
import * as api from '../api';
import type { ChatEvent, ChatMessage, ChatParameters, ChatStats, Conversation, McpTool, StoredMessage, ToolCall, ToolCallRecord, ToolDef, ToolStep } from '../api';
import {
  appendTurn,
  editAndResend,
  newConversation,
  normalizeConversation,
  regenerate as regenerateOp,
  restoreInterrupted,
  searchConversations,
  sortByUpdated,
  buildChatMessages,
  titleFrom,
} from '../conversation';
import { newId, nowIso } from '../format';
import { Debouncer, Saver } from '../saver';
import { LiveReply } from '../stream';
import { documents } from './documents.svelte';
import { modelState } from './models.svelte';
import { mcp } from './mcp.svelte';
import { allowedKey, callRecords, endInterruptedCalls, hasUnfinishedCalls, limitNote, maxToolSteps, onlyRepeats, STOPPED_CALL, toolDefs, toolStepMessages, type Decision } from '../tools';
import { ToolRun, withApprovals } from '../toolrun';

/** While a reply streams it is saved this often (with `streaming: true`). */
export const STREAM_SAVE_MS = 300;
/** Typing is saved this long after the last keystroke. */
export const DRAFT_SAVE_MS = 300;
/** After Stop, give the backend this long to answer "done" before finishing locally. */
const STOP_GRACE_MS = 3000;

/** The tool loop of a reply in a conversation that offers tools. */
interface ReplyRun {
  convId: string;
  replyId: string;
  model: string;
  /** Sent with each round (without the UI's own `max_tool_steps`). */
  parameters: ChatParameters;
  /** The conversation up to the reply (with the documents' passages): each round adds the steps. */
  base: ChatMessage[];
  tools: McpTool[];
  defs: ToolDef[];
  max: number;
  steps: number;
  phase: 'preparing' | 'streaming' | 'calling';
  stopped: boolean;
  /** The round's calls while they wait or run. */
  calls: ToolRun | null;
}

export class ChatStore {
  conversations = $state<Conversation[]>([]);
  currentId = $state<string | null>(null);
  /** The reply being streamed, if any (one at a time). */
  live = $state.raw<LiveReply | null>(null);
  search = $state('');
  /** A problem not tied to a message (saving failed, …). */
  notice = $state<string | null>(null);
  /** The last finished reply in one sentence, for the polite live region. */
  announcement = $state('');

  current = $derived(this.conversations.find((c) => c.id === this.currentId) ?? null);
  visible = $derived(sortByUpdated(searchConversations(this.conversations, this.search)));

  private saver = new Saver(
    (c) => api.saveConversation(c),
    (e) => (this.notice = `Could not save the conversation: ${api.errorMessage(e)}`),
  );
  private debounce = new Debouncer(DRAFT_SAVE_MS);
  /** Conversations that exist on disk (so deleting one that was never saved needs no call). */
  private stored = new Set<string>();
  /** The tool loop of the reply being written, when its conversation offers tools. */
  private run: ReplyRun | null = null;
  /** The conversation the tool servers were last released for (see `openedChanged`). */
  private releasedFor: string | null | undefined = undefined;

  /** Loads the saved conversations and opens the most recently updated one. */
  async load(): Promise<void> {
    const list = await api.listConversations();
    this.setConversations(list);
  }

  setConversations(list: Conversation[]): void {
    const restored = list.map((c) => restoreInterrupted(normalizeConversation(c)));
    for (const c of restored) this.stored.add(c.id);
    this.conversations = sortByUpdated(restored);
    this.currentId = this.conversations[0]?.id ?? null;
  }

  private find(id: string | null): Conversation | undefined {
    return id ? this.conversations.find((c) => c.id === id) : undefined;
  }

  private replace(c: Conversation): void {
    const i = this.conversations.findIndex((x) => x.id === c.id);
    if (i >= 0) this.conversations[i] = c;
    else this.conversations.unshift(c);
  }

  /** A plain copy of the conversation as it should be on disk right now. */
  snapshot(id: string): Conversation | null {
    const c = this.find(id);
    if (!c) return null;
    const snap = $state.snapshot(c) as Conversation;
    const live = this.live;
    if (live && live.convId === id && !live.finished) {
      snap.messages = snap.messages.map((m) => (m.id === live.msgId ? { ...m, content: live.text, ...(live.thinking ? { thinking: live.thinking } : {}), streaming: true } : m));
    }
    return snap;
  }

  /** Writes the conversation now (after any write in flight). */
  saveNow(id: string): Promise<void> {
    this.debounce.cancel(id);
    const snap = this.snapshot(id);
    if (!snap) return Promise.resolve();
    this.stored.add(id);
    return this.saver.save(snap);
  }

  saveSoon(id: string): void {
    this.debounce.schedule(id, () => void this.saveNow(id));
  }

  /** Resolves when every save has been written (tests, shutdown). */
  async flushSaves(): Promise<void> {
    for (const c of this.conversations) this.debounce.flush(c.id, () => void this.saveNow(c.id));
    await this.saver.idle();
  }

  // ---- Conversation list ------------------------------------------------------------------

  /** Starts a new chat (reuses the current one when it is still empty). */
  newChat(model: string | null): Conversation {
    const cur = this.current;
    if (cur && cur.messages.length === 0) {
      this.search = '';
      return cur;
    }
    const c = newConversation(model);
    this.conversations.unshift(c);
    this.currentId = c.id;
    this.search = '';
    return c;
  }

  select(id: string): void {
    if (this.find(id)) this.currentId = id;
  }

  rename(id: string, title: string): void {
    const c = this.find(id);
    if (!c) return;
    c.title = title.trim() || c.title;
    c.updated = nowIso();
    void this.saveNow(id);
  }

  async remove(id: string): Promise<void> {
    if (this.live?.convId === id) this.stop();
    const i = this.conversations.findIndex((c) => c.id === id);
    if (i < 0) return;
    // Out of the list first, so no periodic or debounced save can write it again.
    const [removed] = this.conversations.splice(i, 1);
    if (this.currentId === id) this.currentId = sortByUpdated(this.conversations)[0]?.id ?? null;
    this.debounce.cancel(id);
    this.saver.drop(id);
    if (!this.stored.has(id)) return;
    await this.saver.idle();
    try {
      await api.deleteConversation(id);
      this.stored.delete(id);
    } catch (e) {
      this.conversations.splice(Math.min(i, this.conversations.length), 0, removed);
      throw e;
    }
  }

  // ---- Per-conversation settings ----------------------------------------------------------

  setDraft(text: string): void {
    const c = this.current;
    if (!c || c.draft === text) return;
    c.draft = text;
    this.saveSoon(c.id);
  }

  setModel(model: string): void {
    const c = this.current;
    if (!c || c.model === model) return;
    c.model = model;
    if (c.messages.length || this.stored.has(c.id)) this.saveSoon(c.id);
  }

  setSystemPrompt(text: string): void {
    const c = this.current;
    if (!c) return;
    c.system_prompt = text;
    this.saveSoon(c.id);
  }

  setParameter<K extends keyof ChatParameters>(key: K, value: ChatParameters[K]): void {
    const c = this.current;
    if (!c) return;
    c.parameters[key] = value;
    this.saveSoon(c.id);
  }

  /** The MCP servers whose tools this conversation offers. */
  setToolServers(servers: string[]): void {
    const c = this.current;
    if (!c) return;
    if (servers.length) c.tool_servers = [...servers];
    else delete c.tool_servers;
    this.saveSoon(c.id);
  }

  /**
   * The open conversation changed: tool servers that neither it nor a reply still being written
   * uses are stopped. (The first call, when the app starts, only notes the conversation.)
   */
  openedChanged(): void {
    const id = this.currentId;
    if (id === this.releasedFor) return;
    const first = this.releasedFor === undefined;
    this.releasedFor = id;
    if (first) return;
    const keep = new Set(this.current?.tool_servers ?? []);
    if (this.run && !this.run.stopped) for (const s of this.find(this.run.convId)?.tool_servers ?? []) keep.add(s);
    api.mcpRelease([...keep]).catch(() => {});
  }

  // ---- Sending and streaming --------------------------------------------------------------

  get busy(): boolean {
    return !!this.live;
  }

  /** Sends `text` (with `images`, base64) as a user message in the current (or a new) conversation. */
  send(text: string, model: string | null, images: string[] = []): boolean {
    if (!text.trim() || this.live) return false;
    let c = this.current;
    if (!c) c = this.newChat(model);
    if (model) c.model = model;
    const { conversation, reply } = appendTurn($state.snapshot(c) as Conversation, text, undefined, images);
    this.replace(conversation);
    this.debounce.cancel(conversation.id);
    void this.startReply(conversation.id, reply.id);
    return true;
  }

  /** Answers the last user message again (replacing the last reply). */
  regenerate(): boolean {
    const c = this.current;
    if (!c || this.live) return false;
    const r = regenerateOp($state.snapshot(c) as Conversation);
    if (!r) return false;
    this.replace(r.conversation);
    void this.startReply(r.conversation.id, r.reply.id);
    return true;
  }

  /** Shows version `j` of reply `msgId` (it becomes what the next turn sends). */
  showVersion(msgId: string, j: number): void {
    const c = this.current;
    if (!c || this.live) return;
    const snap = $state.snapshot(c) as Conversation;
    this.replace({ ...snap, messages: snap.messages.map((m) => (m.id === msgId ? showVersionOp(m, j) : m)), updated: nowIso() });
    void this.saveNow(snap.id);
  }

  /** Shows branch `j` of the conversation from user message `msgId` on (kept by edit-and-resend). */
  showBranch(msgId: string, j: number): void {
    const c = this.current;
    if (!c || this.live) return;
    const snap = $state.snapshot(c) as Conversation;
    const i = snap.messages.findIndex((m) => m.id === msgId);
    if (i < 0) return;
    this.replace({ ...snap, messages: showBranchOp(snap.messages, i, j), updated: nowIso() });
    void this.saveNow(snap.id);
  }

  /** Retry after an inline error: the same as regenerating that reply. */
  retry(): boolean {
    return this.regenerate();
  }

  /** Edit-and-resend: replaces a user message, drops what follows it, and asks again. */
  editResend(messageId: string, text: string): boolean {
    const c = this.current;
    if (!c || this.live || !text.trim()) return false;
    const r = editAndResend($state.snapshot(c) as Conversation, messageId, text);
    if (!r) return false;
    this.replace(r.conversation);
    void this.startReply(r.conversation.id, r.reply.id);
    return true;
  }

  /** Adds a conversation read from a file (already saved by the backend) and opens it. */
  adopt(c: Conversation): void {
    const conversation = normalizeConversation(c);
    this.stored.add(conversation.id);
    this.conversations.unshift(conversation);
    this.currentId = conversation.id;
    this.search = '';
  }

  /** Stops the reply in progress: the streaming round, or the tool calls waiting or running. */
  stop(): void {
    const live = this.live;
    if (!live || live.finished || live.stopRequested) return;
    live.stopRequested = true;
    const run = this.run?.replyId === live.msgId ? this.run : null;
    if (run) run.stopped = true;
    if (run && run.phase !== 'streaming') {
      if (!run.calls) return this.finish(live, { stopped: true });
      // Waiting calls are denied, running ones cancelled; the round then ends the reply.
      run.calls.stop();
      setTimeout(() => {
        if (!live.finished) this.finish(live, { stopped: true });
      }, STOP_GRACE_MS);
      return;
    }
    api.stopChat(live.requestId).catch(() => {});
    setTimeout(() => {
      if (!live.finished) this.finish(live, { stopped: true });
    }, STOP_GRACE_MS);
  }

  private async startReply(convId: string, replyId: string): Promise<void> {
    const c = this.find(convId);
    if (!c) return;
    const model = c.model;
    const live = new LiveReply(convId, replyId, newId('r-'));
    live.model = model ?? '';
    live.loading = !!model && !modelState.isLoaded(model);
    this.live = live;
    void this.saveNow(convId); // immediately on send: the user message and an empty streaming reply
    if (!model) {
      this.finish(live, { error: 'Choose a model first (Models page: import one if the list is empty).' });
      return;
    }
    // Saves the round being streamed (a reply with tools streams several, one LiveReply each).
    const timer = setInterval(() => {
      const cur = this.live;
      if (!cur || cur.msgId !== replyId || cur.finished) return clearInterval(timer);
      if (cur.dirty) {
        cur.dirty = false;
        void this.saveNow(convId);
      }
    }, STREAM_SAVE_MS);
    live.onFinished = () => clearInterval(timer);
    const { max_tool_steps: _max, ...parameters } = $state.snapshot(c.parameters) as ChatParameters;
    const servers = [...(c.tool_servers ?? [])];
    // The conversation's documents searched for the question (none: the messages as they are).
    const found = await documents.forReply(convId, model, buildChatMessages(c.system_prompt, $state.snapshot(c.messages) as StoredMessage[], replyId), parameters.num_ctx);
    if (live.finished) return;
    const reply = this.find(convId)?.messages.find((m) => m.id === replyId);
    if (reply) reply.sources = found.sources.length ? found.sources : undefined;
    let run: ReplyRun | null = null;
    if (servers.length) {
      run = { convId, replyId, model, parameters, base: found.messages, tools: [], defs: [], max: maxToolSteps(c.parameters), steps: 0, phase: 'preparing', stopped: false, calls: null };
      this.run = run;
      await this.offerTools(run, servers);
      if (live.finished || run.stopped) return;
      run.phase = 'streaming';
    }
    await this.round(live, model, found.messages, parameters, run);
  }

  /** Starts the conversation's tool servers and lists their tools; each problem is noted on the reply. */
  private async offerTools(run: ReplyRun, servers: string[]): Promise<void> {
    try {
      const [list] = await Promise.all([api.mcpTools(servers), mcp.ensure()]);
      run.tools = list.tools;
      run.defs = toolDefs(list.tools);
      for (const p of list.problems) this.note(run, `Tool server ${p.server} is not available: ${p.message}`);
    } catch (e) {
      this.note(run, `The tools could not be started: ${api.errorMessage(e)}`);
    }
  }

  private reply(run: ReplyRun): StoredMessage | undefined {
    return this.find(run.convId)?.messages.find((m) => m.id === run.replyId);
  }

  /** A note shown on the reply (and saved with it). */
  private note(run: ReplyRun, text: string): void {
    const m = this.reply(run);
    if (m) m.tool_notes = [...(m.tool_notes ?? []), text];
  }

  private async round(live: LiveReply, model: string, messages: ChatMessage[], parameters: ChatParameters, run: ReplyRun | null): Promise<void> {
    try {
      await api.startChat(live.requestId, model, messages, parameters, (e) => this.onEvent(live, e, run), run?.defs ?? []);
    } catch (e) {
      this.finish(live, { error: api.errorMessage(e) });
    }
  }

  /** The channel handler: every event of a reply comes through here, in order. */
  onEvent(live: LiveReply, e: ChatEvent, run: ReplyRun | null = null): void {
    if (live.finished) return;
    switch (e.kind) {
      case 'piece':
        if (e.thinking) live.appendThinking(e.thinking);
        live.append(e.text, e.tokens ?? 1);
        break;
      case 'done':
        if (run && e.tool_calls?.length && !live.stopRequested && !run.stopped) void this.toolStep(live, run, e.tool_calls, e.stats);
        else this.finish(live, { stats: e.stats });
        break;
      case 'error':
        this.finish(live, { error: e.message });
        break;
    }
  }

  /**
   * The round ended calling tools: its text and the calls become a step of the reply, the calls
   * run (after the person's approval where needed), and the next round is asked with the results,
   * up to the conversation's step limit.
   */
  private async toolStep(live: LiveReply, run: ReplyRun, toolCalls: ToolCall[], stats: ChatStats): Promise<void> {
    const m = this.reply(run);
    const c = this.find(run.convId);
    if (!m || !c) return this.finish(live, { stats });
    const atLimit = run.steps >= run.max;
    if (atLimit || onlyRepeats(toolCalls, m.tool_steps)) {
      // These calls are not made: asked once more without tools, the model answers from the
      // results it has; asked so already, what it wrote is the reply.
      if (atLimit) this.note(run, limitNote(run.max));
      if (!run.defs.length) return this.finish(live, { stats });
      run.defs = [];
      return this.round(this.nextRound(live, run), run.model, this.roundMessages(run), run.parameters, run);
    }
    run.steps++;
    run.phase = 'calling';
    const step: ToolStep = {
      content: live.text,
      ...(live.thinking ? { thinking: live.thinking } : {}),
      calls: withApprovals(callRecords(toolCalls, run.tools), mcp.servers, c.allowed_tools),
    };
    // The next round's reply from now on: the tool cards show while it waits for the calls.
    const next = this.nextRound(live, run);
    m.tool_steps = [...(m.tool_steps ?? []), step];
    const at = m.tool_steps.length - 1;
    void this.saveNow(run.convId);
    const waiting = step.calls.filter((x) => x.status === 'awaiting_approval');
    if (waiting.length) this.announcement = `Approval needed: the model wants to run ${waiting.map((x) => `${x.tool} (${x.server})`).join(', ')}.`;

    const calls = new ToolRun({
      update: (id, patch) => this.updateCall(run, at, id, patch),
      call: (rid, server, tool, args) => api.mcpCall(rid, server, tool, args),
      cancel: (rid) => void api.mcpCancel(rid).catch(() => {}),
      allow: (server, tool, how) => this.allowTool(run.convId, server, tool, how),
    });
    run.calls = calls;
    if (run.stopped) calls.stop();
    await calls.run(step.calls);
    run.calls = null;
    if (next.finished) return;
    if (run.stopped || next.stopRequested) return this.finish(next, { stopped: true });
    run.phase = 'streaming';
    await this.round(next, run.model, this.roundMessages(run), run.parameters, run);
  }

  /** The reply's next round streams into a new LiveReply, which takes over the save timer. */
  private nextRound(live: LiveReply, run: ReplyRun): LiveReply {
    const next = new LiveReply(run.convId, run.replyId, newId('r-'));
    next.model = live.model;
    next.onFinished = live.onFinished;
    live.onFinished = undefined;
    live.finish();
    this.live = next;
    return next;
  }

  /** What the next round sends: the conversation, then the reply's steps and their results. */
  private roundMessages(run: ReplyRun): ChatMessage[] {
    const steps = $state.snapshot(this.reply(run)?.tool_steps) as ToolStep[] | undefined;
    return [...run.base, ...toolStepMessages(steps)];
  }

  private updateCall(run: ReplyRun, step: number, id: string, patch: Partial<ToolCallRecord>): void {
    const call = this.reply(run)?.tool_steps?.[step]?.calls.find((x) => x.id === id);
    if (!call) return;
    Object.assign(call, patch);
    void this.saveNow(run.convId);
  }

  private async allowTool(convId: string, server: string, tool: string, how: 'conversation' | 'always'): Promise<void> {
    if (how === 'conversation') {
      const c = this.find(convId);
      if (!c) return;
      const key = allowedKey(server, tool);
      if (!c.allowed_tools?.includes(key)) c.allowed_tools = [...(c.allowed_tools ?? []), key];
      void this.saveNow(convId);
      return;
    }
    try {
      await mcp.setAlwaysAllow(server, tool, true);
    } catch (e) {
      this.notice = `Could not always allow ${tool} of ${server}: ${api.errorMessage(e)}`;
    }
  }

  /** The person's answer on the approval card of call `callId` in reply `msgId`. */
  answer(msgId: string, callId: string, decision: Decision): void {
    const run = this.run;
    if (run?.replyId === msgId) run.calls?.answer(callId, decision);
  }

  private finish(live: LiveReply, r: { stats?: ChatStats; error?: string; stopped?: boolean }): void {
    if (live.finished) return;
    live.finish();
    live.onFinished?.();
    const c = this.find(live.convId);
    const m = c?.messages.find((x) => x.id === live.msgId) as StoredMessage | undefined;
    if (c && m) {
      m.content = live.text;
      if (live.thinking) m.thinking = live.thinking;
      else delete m.thinking;
      m.streaming = false;
      m.stats = r.stats ?? null;
      m.error = r.error ?? null;
      if (hasUnfinishedCalls(m.tool_steps)) m.tool_steps = endInterruptedCalls(m.tool_steps!, STOPPED_CALL);
      c.updated = nowIso();
    }
    if (this.run?.replyId === live.msgId) {
      this.run.stopped = true; // a round still answering (after the grace time) changes nothing now
      this.run.calls?.stop();
      this.run = null;
    }
    if (this.live === live) this.live = null;
    this.announcement = replyAnnouncement(live.text, r);
    void modelState.refresh(); // the model is loaded now (or failed to load): the Models page's list

    void this.saveNow(live.convId); // immediately on done / error / stop
  }
}

export { titleFrom };
export const chat = new ChatStore();
