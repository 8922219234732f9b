// Which sidebars are collapsed. Below the breakpoint they start collapsed (at the 720 px minimum
// window the thread would otherwise be ≈ 280 px wide); a toggle overrides that, and the choice is
// remembered in the UI state.
import { app } from './app.svelte';

/** Narrower than this, sidebars collapse unless the user opened them. */
export const NARROW_QUERY = '(max-width: 960px)';

export type Sidebar = 'nav' | 'conversations';
const KEYS: Record<Sidebar, string> = { nav: 'nav_collapsed', conversations: 'conversations_collapsed' };

class Layout {
  narrow = $state(false);

  /** Follows the window width; returns the unsubscribe function. */
  watch(): () => void {
    if (typeof window === 'undefined' || typeof window.matchMedia !== 'function') return () => {};
    const media = window.matchMedia(NARROW_QUERY);
    const update = () => (this.narrow = media.matches);
    update();
    media.addEventListener?.('change', update);
    return () => media.removeEventListener?.('change', update);
  }

  collapsed(which: Sidebar): boolean {
    const chosen = app.ui[KEYS[which]];
    return typeof chosen === 'boolean' ? chosen : this.narrow;
  }

  toggle(which: Sidebar): void {
    void app.setUi({ [KEYS[which]]: !this.collapsed(which) });
  }
}

export const layout = new Layout();
