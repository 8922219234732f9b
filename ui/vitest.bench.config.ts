import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';

// `npm run bench:stream`: UI cost per streamed token, the real path vs a plain text node.
export default defineConfig({
  plugins: [svelte(), svelteTesting()],
  test: {
    environment: 'jsdom',
    include: ['src/bench/**/*.perf.ts'],
    setupFiles: ['src/test/setup.ts'],
    testTimeout: 120000,
  },
});
