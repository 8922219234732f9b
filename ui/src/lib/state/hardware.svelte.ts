import * as api from '../api';
import type { HardwareReport } from '../api';

class HardwareState {
  report = $state<HardwareReport | null>(null);
  loading = $state(false);
  error = $state<string | null>(null);

  async refresh(): Promise<void> {
    if (this.loading) return;
    this.loading = true;
    this.error = null;
    try {
      this.report = await api.hardware();
    } catch (e) {
      this.error = api.errorMessage(e);
    } finally {
      this.loading = false;
    }
  }
}

export const hw = new HardwareState();
