// Synthetic model output for the streaming tests and the bench: Markdown with headings, lists,
// inline code, code fences and multi-byte text (accents, CJK, emoji), cut into small pieces the
// way a tokenizer would (whole code points, 1–6 at a time).

const PARAGRAPHS = [
  '## Résumé of the plan 📋\n\nHere is what we will do, step by step — with **care** and *attention*. Ünïcödé, 日本語のテキスト, emoji 👋🏽🚀.\n\n',
  '1. Read the `config.toml` file\n2. Parse it with `serde`\n3. Print the result: ✓\n\n',
  '```rust\nfn main() {\n    let greeting = "héllo, 世界";\n    for (i, ch) in greeting.chars().enumerate() {\n        println!("{i}: {ch}");\n    }\n}\n```\n\n',
  '> A quote with a [link](https://example.com) and `inline <code>` & ampersands.\n\n',
  '| Name | Value |\n|------|-------|\n| α | 1 |\n| β | 2 |\n\n',
  '```python\ndef fib(n: int) -> int:\n    """Return the n-th Fibonacci number (ñ)."""\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```\n\n',
  '- bullet one with émoji 🎉\n- bullet two: *nested* **bold** ~~struck~~\n  - sub-item ✨\n\n',
  'Plain prose keeps going; the quick brown fox jumps over the lazy dog. Ça va? Grüße aus Köln. Привет мир.\n\n',
];

/** At least `count` pieces whose concatenation is a long Markdown document. */
export function makePieces(count: number, seed = 42): string[] {
  let state = seed >>> 0;
  const rand = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const pieces: string[] = [];
  let n = 0;
  while (pieces.length < count) {
    const chars = Array.from(`${PARAGRAPHS[n % PARAGRAPHS.length]}Section ${n} done.\n\n`);
    n++;
    let i = 0;
    while (i < chars.length) {
      const len = 1 + Math.floor(rand() * 6);
      pieces.push(chars.slice(i, i + len).join(''));
      i += len;
    }
  }
  return pieces;
}

/**
 * Delivers the pieces with real timers: `burst` pieces every `intervalMs`. Resolves with the
 * achieved rate (pieces per second).
 */
export async function deliver(pieces: string[], onPiece: (p: string) => void, burst = 8, intervalMs = 5): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < pieces.length; i += burst) {
    for (let j = i; j < Math.min(i + burst, pieces.length); j++) onPiece(pieces[j]);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return (pieces.length * 1000) / (performance.now() - t0);
}

export function nextFrame(): Promise<void> {
  return new Promise((r) => requestAnimationFrame(() => r()));
}
