// The configured MCP servers (kept by the Rust side): Settings → Tools edits them, the chat settings
// offer them per conversation, and the tool loop reads which tools each always allows.
import * as api from '../api';
import type { McpServer } from '../api';

class McpStore {
  servers = $state<McpServer[]>([]);
  loaded = $state(false);
  /** Why the list could not be read. */
  error = $state<string | null>(null);
  private loading: Promise<void> | null = null;

  /** Reads the list again. */
  load(): Promise<void> {
    this.loading ??= (async () => {
      try {
        this.servers = await api.mcpServers();
        this.loaded = true;
        this.error = null;
      } catch (e) {
        this.error = api.errorMessage(e);
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  /** The list, read once (a failure leaves it empty, with `error` set). */
  async ensure(): Promise<McpServer[]> {
    if (!this.loaded) await this.load();
    return this.servers;
  }

  /** The rejections (code "cancelled", "invalid_argument", …) are the caller's to show. */
  async save(previous: string | null, server: McpServer): Promise<void> {
    this.set(await api.saveMcpServer(previous, server));
  }

  async remove(name: string): Promise<void> {
    this.set(await api.removeMcpServer(name));
  }

  async importJson(json: string): Promise<void> {
    this.set(await api.importMcpServers(json));
  }

  async setAlwaysAllow(server: string, tool: string, allow: boolean): Promise<void> {
    this.set(await api.setToolAlwaysAllow(server, tool, allow));
  }

  /** Forgets the list (tests). */
  reset(): void {
    this.servers = [];
    this.loaded = false;
    this.error = null;
    this.loading = null;
  }

  private set(list: McpServer[]): void {
    this.servers = list;
    this.loaded = true;
    this.error = null;
  }
}

export const mcp = new McpStore();
