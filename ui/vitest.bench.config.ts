import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';

// `npm run bench:stream`: UI cost per streamed token, the real path vs a plain text node, both
// throttled by LiveReply. jsdom does no layout or paint: see src/bench/stream.perf.ts for what the
// figure counts and leaves out.
export default defineConfig({
  plugins: [svelte(), svelteTesting()],
  test: {
    environment: 'jsdom',
    include: ['src/bench/**/*.perf.ts'],
    setupFiles: ['src/test/setup.ts'],
    testTimeout: 120000,
  },
});
