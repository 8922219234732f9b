// The one place the UI talks to the Rust side (src-tauri/desktop/commands.rs): every Tauri
// command, its argument names and the shapes it returns. Keep the two files in step.

import { Channel, invoke } from '@tauri-apps/api/core';
import type { Source } from './documents';

/** Every command rejects with this shape; `message` is written for the user. */
export interface CommandError {
  /** Machine-readable: "import", "not_found", "invalid_argument", "engine", "busy", "io", "cancelled", … */
  code: string;
  message: string;
}

/** The person said no in a native confirmation: nothing was done. */
export function notConfirmed(e: unknown): boolean {
  return !!e && typeof e === 'object' && (e as CommandError).code === 'not_confirmed';
}

export function errorMessage(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e) return String((e as CommandError).message);
  return String(e);
}

// ---- Models -------------------------------------------------------------------------------

export interface LayerInfo {
  media_type: string;
  digest: string;
  size: number;
}

export interface ModelDetails {
  name: string;
  id: string;
  size: number;
  architecture: string | null;
  /** e.g. "268.10M" */
  parameters: string | null;
  parameter_count: number | null;
  /** e.g. "Q4_K_M" */
  quantization: string | null;
  context_length: number | null;
  embedding_length: number | null;
  block_count: number | null;
  chat_template: boolean;
  license: string | null;
  layers: LayerInfo[];
  runnable: boolean;
  not_runnable_reason: string | null;
  /** RFC 3339 */
  modified: string;
}

/** `ModelDetails` plus what only the details view needs. */
export interface ModelFullDetails extends ModelDetails {
  /** The chat template (Jinja from the GGUF, or the Ollama template layer), if any. */
  template: string | null;
  /** GGUF metadata as [key, value shown as text] pairs, arrays shortened. */
  metadata: [string, string][];
}

export const listModels = () => invoke<ModelDetails[]>('list_models');
export const modelDetails = (name: string) => invoke<ModelFullDetails>('model_details', { name });
export const deleteModel = (name: string) => invoke<void>('delete_model', { name });
export const openStoreFolder = () => invoke<void>('open_store_folder');

/**
 * A model's own system prompt, Ollama template and parameters (`name value` lines), and the name
 * of the model in the store whose weights are its draft for speculative decoding ("" for none).
 */
export interface ModelfileParts {
  system: string;
  template: string;
  parameters: string;
  draft: string;
}

/** "Duplicate with changes…": a new model on top of `source` (the same layers `airlock create` writes). */
export interface DuplicateForm {
  source: string;
  name: string;
  system: string;
  template: string;
  parameters: string;
  /** A model in the store to use as the new model's draft; "" keeps the source's draft (if any). */
  draft: string;
}

export interface CreatedModel {
  name: string;
  id: string;
  size: number;
  warnings: string[];
}

export const modelfileParts = (name: string) => invoke<ModelfileParts>('modelfile_parts', { name });
/** The Modelfile the form amounts to; rejects with what is wrong (a parameter line, the template). */
export const previewDuplicate = (form: DuplicateForm) => invoke<string>('preview_duplicate', { form });
export const duplicateModel = (form: DuplicateForm) => invoke<CreatedModel>('duplicate_model', { form });

/**
 * A path the person chose in a native dialog (or dropped on the window). The Rust side keeps the
 * path; the UI passes `handle` back and only shows `path`. (The web view renders model output, so
 * it never names a file itself: docs/desktop-security.md.)
 */
export interface Chosen {
  handle: string;
  path: string;
}

/**
 * A path argument: a chosen file's handle, or a path typed into a field, which the app uses only
 * after the person confirms it in a native dialog (refused: the command rejects with code
 * "not_confirmed" and does nothing).
 */
export type PathArg = { handle: string } | { typed: string };

/** The argument for a field that holds either a chosen path (shown as typed) or typed text. */
export function pathArg(text: string, chosen: Chosen | null): PathArg {
  const t = text.trim();
  return chosen && chosen.path === t ? { handle: chosen.handle } : { typed: t };
}

/**
 * A native file or folder dialog. Returns null when the user cancels, and when another dialog is
 * already open (a second click while the first is on screen opens nothing).
 */
export type PickKind =
  | 'bundle_folder'
  | 'bundle_file'
  | 'public_key'
  | 'secret_key'
  | 'export_file'
  | 'export_folder'
  | 'conversation_markdown'
  | 'conversation_json'
  | 'conversation_file'
  | 'library_folder';
/** `name`: the file name a save dialog suggests (without extension). */
export async function pickPath(kind: PickKind, name?: string): Promise<Chosen | null> {
  try {
    return await invoke<Chosen | null>('pick_path', name === undefined ? { kind } : { kind, name });
  } catch (e) {
    if (e && typeof e === 'object' && (e as CommandError).code === 'busy') return null;
    throw e;
  }
}

// ---- Import / export progress ---------------------------------------------------------------

export interface Progress {
  /** "importing", "exporting", … */
  phase: string;
  /** The model and blob (or file) being worked on, e.g. "gemma3:latest sha256:a5fd…". */
  item: string;
  done_bytes: number;
  total_bytes: number;
}

export interface Signer {
  key_id: string;
  trusted_comment: string;
}

export interface ImportReport {
  models: { name: string; id: string; size: number }[];
  blobs_copied: number;
  blobs_linked: number;
  blobs_already_present: number;
  bytes_copied: number;
  /** Bytes cloned (copy-on-write) instead of copied: they take no extra space. */
  bytes_linked: number;
  signer: Signer | null;
  warnings: string[];
}

/** Imports a bundle folder, a `.zip`, a first volume `.zip.001`, or a `.gguf` (then `name` is used). */
export function importPath(source: PathArg, name: string | null, onProgress: (p: Progress) => void) {
  const channel = new Channel<Progress>();
  channel.onmessage = onProgress;
  return invoke<ImportReport>('import_path', { source, name, onProgress: channel });
}
// ---- Import from an ordinary folder (Hugging Face cache, LM Studio, Jan, GPT4All, .gguf files) ---

/** A model found in a folder, as `scan_import_folder` proposes to import it. */
export interface FoundModel {
  /** Stable key: the first file's path relative to the folder. */
  id: string;
  /** Proposed name, e.g. "qwen2.5-coder:0.5b-instruct-q4_K_M". */
  name: string;
  /** e.g. "qwen2.5-coder:0.5b-instruct-q4_K_M is already in the store; named …-2". */
  note: string | null;
  /** Paths relative to the folder (the parts of a split model, in order). */
  files: string[];
  /** Relative path of the vision projector (mmproj) paired with it. */
  projector: string | null;
  /** Bytes of the files plus the projector. */
  size: number;
  /** "qwen2", "gemma3", … */
  architecture: string;
  /** "494.03M" */
  parameters: string;
  /** "Q4_K_M" */
  quantization: string;
  /** "Hugging Face cache" | "LM Studio" | "Jan" | "GPT4All" | "folder" */
  layout: string;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface FolderScan {
  /** The folder; pass `{ handle: source.handle }` to `importFound`. */
  source: Chosen;
  /** The folder is a bundle, an Ollama models folder or a transfer kit: import it with `importPath`. */
  bundle: boolean;
  models: FoundModel[];
  /** Files looked at and left out, with why (at most 200). */
  skipped: SkippedFile[];
  /** How many more were left out beyond those listed. */
  skipped_more: number;
  /** What was looked for, in a sentence (shown when `models` is empty). */
  looked_for: string;
}

/** A checked model, with its name as edited. */
export interface FoundPick {
  id: string;
  name: string;
}

export const scanImportFolder = (source: PathArg) => invoke<FolderScan>('scan_import_folder', { source });

/** Imports the picked models of a scanned folder; an invalid name rejects with code "invalid". */
export function importFound(source: PathArg, picks: FoundPick[], onProgress: (p: Progress) => void) {
  const channel = new Channel<Progress>();
  channel.onmessage = onProgress;
  return invoke<ImportReport>('import_found', { source, picks, onProgress: channel });
}

/** Cancels the running import or export; it then rejects with code "cancelled". */
export const cancelTransfer = () => invoke<void>('cancel_transfer');

export interface ExportOptions {
  /** e.g. "100M", "4G"; null for one file. Only for a `.zip` output. */
  split_size: string | null;
  fat32: boolean;
  /** A minisign secret key (`.key`) to sign with, or null. */
  sign_key: PathArg | null;
  /** Password of that key; null when it is unencrypted (an encrypted key without one is refused
   * with code "signature": "this key is encrypted: enter its password"). */
  key_password: string | null;
  /** Write a transfer kit into the folder `out`: Airlock itself, the models and SHA256SUMS. */
  kit: boolean;
}

export interface ExportReport {
  models: { name: string; id: string; size: number }[];
  blobs_written: number;
  blobs_excluded: number;
  bytes_written: number;
  /** Files written: the zip, its volumes, or the folder. */
  outputs: string[];
  /** Key ID of the signing key, when signed. */
  signed_by: string | null;
  /** A transfer kit: `outputs` are its files. */
  kit: boolean;
}

/** `out` ending in `.zip` writes a zip (optionally split); anything else a bundle folder (or, with
 * `kit`, a transfer kit). */
export function exportModels(models: string[], out: PathArg, options: ExportOptions, onProgress: (p: Progress) => void) {
  const channel = new Channel<Progress>();
  channel.onmessage = onProgress;
  return invoke<ExportReport>('export_models', { models, out, options, onProgress: channel });
}

/** Paths dropped on the window, delivered as they happen (the UI subscribes once). */
/** What a dropped path will be used for, decided by the backend from what it looks like. */
export type DropKind = 'model' | 'document' | 'image';
export interface Dropped extends Chosen {
  kind: DropKind;
}

export function onDrop(handler: (dropped: Dropped[]) => void) {
  const channel = new Channel<Dropped[]>();
  channel.onmessage = handler;
  return invoke<void>('subscribe_drops', { onDrop: channel });
}

// ---- Hardware -------------------------------------------------------------------------------

export interface GpuDevice {
  name: string;
  device: string;
  backend: string;
  memory_total_bytes: number;
  memory_free_bytes: number;
  driver: string | null;
}

/** A llama.cpp RPC worker the engine may use (`AIRLOCK_RPC`); `error` says why it is left out. */
export interface RpcWorker {
  endpoint: string;
  devices: GpuDevice[];
  error: string | null;
}

export type FitVerdict =
  | { verdict: 'full_gpu' }
  | { verdict: 'partial_offload'; layers: number; of: number }
  | { verdict: 'cpu_only' }
  | { verdict: 'does_not_fit' };

export type FitEstimate = FitVerdict & {
  need_bytes: number;
  weights_bytes: number;
  kv_bytes: number;
  /** Every slot's sliding-window checkpoints, kept in RAM. */
  checkpoint_bytes: number;
  overhead_bytes: number;
  vram_free_bytes: number;
  ram_available_bytes: number;
  /** The numbers behind the verdict, in words. */
  explanation: string;
};

export interface ModelFit {
  name: string;
  num_ctx?: number;
  parallel?: number;
  layers?: number;
  fit?: FitEstimate;
  error?: string;
}

export interface HardwareReport {
  cpu: {
    model: string;
    physical_cores: number;
    logical_cores: number;
    threads_used: number;
    cpu_variant: string | null;
  };
  memory: { total_bytes: number; available_bytes: number };
  gpus: GpuDevice[];
  gpu_backends_built: string[];
  /** Why no GPU is usable, in words; null when `gpus` is not empty. */
  no_gpu_reason: string | null;
  /** The configured RPC workers; their devices are in `gpus` (backend `RPC`). */
  rpc_workers?: RpcWorker[];
  models: ModelFit[];
  /** Models the app has loaded, with their memory per GPU device (ggml's name) and in RAM. */
  loaded: LoadedModelUse[];
}

export interface LoadedModelUse {
  name: string;
  /** e.g. "100% GPU (Vulkan0, 19/19 layers)" or "100% CPU (why)". */
  runs_on: string;
  /** Per GPU device: bytes held and layers placed there. */
  devices: { name: string; bytes: number; layers?: number }[];
  ram_bytes: number;
}

/** Probes again each call (a few hundred ms: the device probe runs in a child process). */
export const hardware = () => invoke<HardwareReport>('hardware');

// ---- Chat -----------------------------------------------------------------------------------

/** A tool the model asked to call (`done` event), or one sent back on an assistant message. */
export interface ToolCall {
  id?: string;
  function: { name: string; arguments: Record<string, unknown> };
}

/** A tool offered to the model (`startChat`'s `tools`). */
export interface ToolDef {
  type: 'function';
  function: { name: string; description: string; parameters: unknown };
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  /** Base64 images the message shows the model (models with a vision projector only). */
  images?: string[];
  /** On an assistant message: the tools it called (its `content` may then be ""). */
  tool_calls?: ToolCall[];
  /** On a `tool` message: the function name the model called, and the call's ID. */
  tool_name?: string;
  tool_call_id?: string;
}

/** A dropped image file, read for attaching (granted for that only). */
export interface AttachedImage {
  name: string;
  mime: string;
  /** The file's bytes, base64. */
  data: string;
}
export const readImage = (handle: string) => invoke<AttachedImage>('read_image', { handle });

export interface ChatParameters {
  temperature: number | null;
  top_p: number | null;
  top_k: number | null;
  /** Max tokens of the reply; null = until the model stops or the context is full. */
  num_predict: number | null;
  /** Context length; null = the model's default. */
  num_ctx: number | null;
  /** Absent in chats saved before these settings existed (read as null = the model's default). */
  min_p?: number | null;
  repeat_penalty?: number | null;
  /** -1 or null: a random seed each reply. */
  seed?: number | null;
  /** Think before answering (models whose template supports it); null = the model's default. */
  think?: boolean | null;
  /** Rounds of tool calls one reply may make (1–50); absent or null = 8. Used by the UI only. */
  max_tool_steps?: number | null;
}

export interface ChatStats {
  /** "stop", "length", "cancel" */
  done_reason: string;
  prompt_tokens: number;
  eval_tokens: number;
  prompt_eval_ms: number;
  eval_ms: number;
  load_ms: number;
  tokens_per_second: number;
  /** Where the model ran, e.g. "100% GPU (Vulkan0, 19/19 layers)"; absent in older saved chats. */
  runs_on?: string;
  /** The model's context length (tokens); absent in older saved chats. */
  num_ctx?: number;
  /** How much of the context the prompt may fill before the oldest messages are left out. */
  prompt_budget?: number;
  /** How many of the oldest messages were left out of this reply's prompt to fit the context. */
  dropped_messages?: number;
}

export type ChatEvent =
  /** The text of `tokens` tokens (the Rust side batches them, ~25 messages/s at most). */
  | { kind: 'piece'; text: string; tokens?: number; /** Reasoning, apart from the answer (docs/tools-and-thinking.md). */ thinking?: string }
  /** `tool_calls`: the tools the reply called ([] when none; absent from older backends). Their
   * text never arrives as `piece` text. */
  | { kind: 'done'; stats: ChatStats; tool_calls?: ToolCall[] }
  | { kind: 'error'; message: string };

/**
 * Starts a reply to `messages` (the system prompt, if any, first). Resolves once the reply has
 * started streaming; events arrive on the channel, always ending with one "done" or "error".
 * `requestId` is chosen by the UI and names the reply for `stopChat`. `tools`: what the model
 * may call (none: an empty list).
 */
export function startChat(
  requestId: string,
  model: string,
  messages: ChatMessage[],
  parameters: ChatParameters,
  onEvent: (e: ChatEvent) => void,
  tools: ToolDef[] = [],
) {
  const channel = new Channel<ChatEvent>();
  channel.onmessage = onEvent;
  return invoke<void>('start_chat', { requestId, model, messages, parameters, tools, onEvent: channel });
}
export const stopChat = (requestId: string) => invoke<void>('stop_chat', { requestId });

// ---- Conversations (persisted by the Rust side, one file each, written atomically) ----------

export interface StoredMessage extends ChatMessage {
  id: string;
  /** RFC 3339 */
  created: string;
  stats?: ChatStats | null;
  /** The model's reasoning before this reply, shown folded above it; never sent back to the model. */
  thinking?: string;
  /** An error shown inline under this (assistant) message, with Retry. */
  error?: string | null;
  /** True while the reply was streaming when last saved (shown as interrupted after a restart). */
  streaming?: boolean;
  /** Earlier (or later) versions of this reply that Regenerate kept; see lib/versions.ts. */
  previous_versions?: { content: string; stats?: ChatStats | null; created: string; thinking?: string; tool_steps?: ToolStep[]; tool_notes?: string[] }[];
  /** Where the shown version stands among all of them (0-based). */
  version_index?: number;
  /** On an edited user message: the conversation's earlier tails from here on (edit-and-resend). */
  previous_branches?: StoredMessage[][];
  /** Where the shown branch stands among all of them (0-based). */
  branch_index?: number;
  /** The document passages this reply was given (lib/documents.ts). */
  sources?: Source[];
  /** On a reply that used tools: each round of calls, in order (its `content` is the final answer). */
  tool_steps?: ToolStep[];
  /** Notes about the tools of this reply (a server that did not start, the step limit). UI only. */
  tool_notes?: string[];
}

/** One round of tool calls in a reply: the text the model wrote before calling, and the calls. */
export interface ToolStep {
  content: string;
  thinking?: string;
  calls: ToolCallRecord[];
}

export type ToolCallStatus = 'awaiting_approval' | 'running' | 'done' | 'denied' | 'error' | 'cancelled';

export interface ToolCallRecord {
  id: string;
  server: string;
  /** The tool's name on its server. */
  tool: string;
  /** The name the model called it by. */
  function_name: string;
  arguments: Record<string, unknown>;
  status: ToolCallStatus;
  /** What the call gave back (or what went wrong), sent to the model as the `tool` message. */
  result?: string;
  is_error?: boolean;
  duration_ms?: number;
}

export interface Conversation {
  id: string;
  title: string;
  model: string | null;
  system_prompt: string;
  parameters: ChatParameters;
  messages: StoredMessage[];
  /** Text typed but not sent yet. */
  draft: string;
  created: string;
  updated: string;
  /** MCP servers whose tools this conversation offers the model (none when absent). */
  tool_servers?: string[];
  /** `server/tool` calls allowed without asking in this conversation. */
  allowed_tools?: string[];
}

export const listConversations = () => invoke<Conversation[]>('list_conversations');
export const saveConversation = (conversation: Conversation) => invoke<void>('save_conversation', { conversation });
export const deleteConversation = (id: string) => invoke<void>('delete_conversation', { id });

// ---- Settings -------------------------------------------------------------------------------

export type SignaturePolicy = 'off' | 'warn' | 'require';
export type Theme = 'light' | 'dark' | 'system';

export interface ApiServerStatus {
  enabled: boolean;
  port: number;
  /** Bearer token required by the server; null for none. */
  token: string | null;
  running: boolean;
  /** e.g. "http://127.0.0.1:11434" while running */
  url: string | null;
  /** Why it is not running although enabled (port taken, …). */
  error: string | null;
}

export interface TrustedKey {
  key_id: string;
  /** The key file's untrusted comment, to tell keys apart. */
  comment: string;
  path: string;
}

export interface Settings {
  store_path: string;
  /** Where the store location comes from. */
  store_source: 'AIRLOCK_MODELS' | 'OLLAMA_MODELS' | 'default';
  api: ApiServerStatus;
  signature_policy: SignaturePolicy;
  trusted_keys: TrustedKey[];
  theme: Theme;
  /** Last-used page, chat model etc.; free-form for the UI. */
  ui: Record<string, unknown>;
  /** The site's OCI registry (`host:port`, or `http://host:port`), or null when none is configured. */
  registry: string | null;
  /** What `airlock --version` prints (several lines). */
  version: string;
}

export const getSettings = () => invoke<Settings>('get_settings');
/** Starts, stops or restarts the API server; resolves with its new status (an error inside). */
export const setApiServer = (enabled: boolean, port: number, token: string | null) =>
  invoke<ApiServerStatus>('set_api_server', { enabled, port, token });
/** A weaker policy asks the person in a native dialog first (refused: code "not_confirmed"). */
export const setSignaturePolicy = (policy: SignaturePolicy) => invoke<void>('set_signature_policy', { policy });
export const setTheme = (theme: Theme) => invoke<void>('set_theme', { theme });
export const setUiState = (ui: Record<string, unknown>) => invoke<void>('set_ui_state', { ui });
/** Trusts the public key chosen with `pickPath('public_key')`, once the person confirms its ID in a
 * native dialog; resolves with the key ID. */
export const trustAdd = (handle: string) => invoke<string>('trust_add', { handle });
export const trustRemove = (keyId: string) => invoke<void>('trust_remove', { keyId });
/** Sets (or, with null, clears) the site registry; rejects an invalid address. */
export const setRegistry = (registry: string | null) => invoke<void>('set_registry', { registry });

// ---- Site registry ----------------------------------------------------------------------------

export interface PullReport {
  /** The name in the store, e.g. "gemma3:270m". */
  name: string;
  /** host/namespace/model:tag */
  reference: string;
  /** The model ID (SHA-256 of the manifest), 64 hex digits. */
  id: string;
  size: number;
  blobs_downloaded: number;
  blobs_already_present: number;
  bytes_downloaded: number;
  bytes_resumed: number;
  signer: Signer | null;
  warnings: string[];
}

/** Pulls a model from the site registry (Settings), verified like an import; cancel with `cancelTransfer`. */
export function pullFromRegistry(name: string, onProgress: (p: Progress) => void) {
  const channel = new Channel<Progress>();
  channel.onmessage = onProgress;
  return invoke<PullReport>('pull_from_registry', { name, onProgress: channel });
}

// ---- Model state, conversation files, dragging (src-tauri/desktop/model_state.rs, conversation_file.rs) ----

/** A loaded model (what `airlock ps` lists): where it runs and what it holds. */
export interface LoadedModel extends LoadedModelUse {
  context_length: number;
  /** Seconds until it unloads itself when idle. */
  expires_in_s: number;
}

export const loadedModels = () => invoke<LoadedModel[]>('loaded_models');
/** Unloads the model (as `keep_alive: 0` does); resolves with whether it was loaded. */
export const unloadModel = (name: string) => invoke<boolean>('unload_model', { name });
/** "completion", and "tools" / "thinking" when the model's template has them. */
export const modelCapabilities = (name: string) => invoke<string[]>('model_capabilities', { name });

export type ConversationFormat = 'markdown' | 'json';
/** Writes the conversation to the file chosen with `pickPath('conversation_markdown' | 'conversation_json')`; resolves with its path. */
export const exportConversation = (conversation: Conversation, format: ConversationFormat, handle: string) =>
  invoke<string>('export_conversation', { conversation, format, handle });
/** Reads a JSON export chosen with `pickPath('conversation_file')` and saves it as a new conversation. */
export const importConversation = (handle: string) => invoke<Conversation>('import_conversation', { handle });

/** Files being dragged over the window: what a drop would do with them. */
export interface Dragging {
  over: boolean;
  kinds: DropKind[];
}
export function onDrag(handler: (d: Dragging) => void) {
  const channel = new Channel<Dragging>();
  channel.onmessage = handler;
  return invoke<void>('subscribe_drag', { onDrag: channel });
}

// ---- MCP tools (src-tauri/mcp) ----------------------------------------------------------------

/** A configured MCP server: a local command (stdio) or a URL (Streamable HTTP), exactly one. */
export interface McpServer {
  name: string;
  command: string | null;
  args: string[];
  env: Record<string, string>;
  url: string | null;
  /** Tools (by their name on the server) it may run without asking. */
  always_allow: string[];
}

export interface McpTool {
  server: string;
  /** The tool's name on its server. */
  name: string;
  /** What the model sees: the name, or `server__name` when two servers offer the same one. */
  function_name: string;
  description: string;
  /** JSON schema of its arguments. */
  parameters: unknown;
}

export interface McpToolList {
  tools: McpTool[];
  /** Servers that could not start or list their tools; the others still work. */
  problems: { server: string; message: string }[];
}

/** A call's outcome; a tool's own failure (crash, timeout, cancel) is `is_error`, never a rejection. */
export interface McpCallResult {
  text: string;
  is_error: boolean;
  duration_ms: number;
}

export const mcpServers = () => invoke<McpServer[]>('mcp_servers');
/** Adds (`previous` null) or replaces the server named `previous`. A new or changed command or URL
 * is confirmed in a native dialog first: Cancel rejects with code "cancelled"; bad input with
 * "invalid_argument". Resolves with every server. */
export const saveMcpServer = (previous: string | null, server: McpServer) => invoke<McpServer[]>('save_mcp_server', { previous, server });
/** Removes the server (stopping it if it runs). */
export const removeMcpServer = (name: string) => invoke<McpServer[]>('remove_mcp_server', { name });
/** The `{"mcpServers": {…}}` JSON of Claude Desktop, Cursor, LM Studio or Jan; one native confirmation. */
export const importMcpServers = (json: string) => invoke<McpServer[]>('import_mcp_servers', { json });
export const setToolAlwaysAllow = (server: string, tool: string, allow: boolean) => invoke<McpServer[]>('set_tool_always_allow', { server, tool, allow });
/** Starts the named servers that are not running and lists their tools. */
export const mcpTools = (servers: string[]) => invoke<McpToolList>('mcp_tools', { servers });
/** Calls a tool; `requestId` (chosen by the UI) names the call for `mcpCancel`. */
export const mcpCall = (requestId: string, server: string, tool: string, args: Record<string, unknown>) =>
  invoke<McpCallResult>('mcp_call', { requestId, server, tool, arguments: args });
/** Ends the pending call at once (it resolves with `is_error` "cancelled: …"); the server keeps running. */
export const mcpCancel = (requestId: string) => invoke<void>('mcp_cancel', { requestId });
/** Stops the running servers not in `keep`. */
export const mcpRelease = (keep: string[]) => invoke<void>('mcp_release', { keep });
