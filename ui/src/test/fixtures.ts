import type { Conversation, ModelDetails, Settings } from '../lib/api';
import { handlers } from './tauri-mock';

export function model(name: string, runnable = true): ModelDetails {
  return {
    name,
    id: 'a'.repeat(12),
    size: 291_000_000,
    architecture: 'gemma3',
    parameters: '268.10M',
    parameter_count: 268_100_000,
    quantization: 'Q8_0',
    context_length: 32768,
    embedding_length: 640,
    block_count: 18,
    chat_template: true,
    license: null,
    layers: [],
    runnable,
    not_runnable_reason: runnable ? null : 'unsupported architecture',
    modified: new Date().toISOString(),
  };
}

export function settings(): Settings {
  return {
    store_path: '/home/u/.ollama/models',
    store_source: 'default',
    api: { enabled: false, port: 11434, token: null, running: false, url: null, error: null },
    signature_policy: 'warn',
    trusted_keys: [],
    theme: 'system',
    ui: {},
    registry: null,
    version: 'Airlock 0.1.0 (commit abc)\nllama.cpp: test',
  };
}

/** Default answers for what the app calls on start and while chatting. */
export function installDefaults(opts: { conversations?: Conversation[]; models?: ModelDetails[] } = {}) {
  handlers.get_settings = () => settings();
  handlers.list_models = () => opts.models ?? [model('gemma3:270m')];
  handlers.list_conversations = () => opts.conversations ?? [];
  handlers.save_conversation = () => undefined;
  handlers.delete_conversation = () => undefined;
  handlers.set_ui_state = () => undefined;
  handlers.subscribe_drops = () => undefined;
  handlers.stop_chat = () => undefined;
  handlers.documents_of = () => ({ attachments: [], libraries: [], embedding_model: null, indexing: false });
  handlers.embedding_settings = () => ({ model: null });
  handlers.sync_documents = () => false;
  handlers.loaded_models = () => [];
  handlers.subscribe_drag = () => undefined;
  handlers.model_capabilities = () => ['completion'];
  handlers.mcp_servers = () => [];
  handlers.mcp_release = () => undefined;
  handlers.hardware = () => {
    throw { code: 'io', message: 'no hardware in tests' };
  };
}
