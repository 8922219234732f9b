import { describe, expect, it, vi } from 'vitest';
import { MarkdownView, handleMarkdownClick, renderMarkdownFragment, renderMarkdownHTML } from './markdown';

function render(text: string): HTMLDivElement {
  const div = document.createElement('div');
  div.append(renderMarkdownFragment(text));
  return div;
}

describe('markdown sanitisation', () => {
  it('removes script tags', () => {
    const div = render('Hello <script>window.pwned = 1</script> world\n\n<script>alert(1)</script>');
    expect(div.querySelector('script')).toBeNull();
    expect(div.innerHTML).not.toContain('<script');
    expect(div.textContent).toContain('Hello');
  });

  it('removes images and their event handlers', () => {
    const div = render('<img src="x" onerror="alert(1)">\n\ntext <img src=x onerror=alert(2)>');
    expect(div.querySelector('img')).toBeNull();
    expect(div.innerHTML).not.toMatch(/onerror/i);
  });

  it('removes every on* handler attribute', () => {
    const div = render('<p onclick="alert(1)" onmouseover="x()">hi</p><div><a onfocus="x()">a</a></div>');
    for (const el of Array.from(div.querySelectorAll('*'))) {
      for (const attr of Array.from(el.attributes)) expect(attr.name.startsWith('on')).toBe(false);
    }
  });

  it('makes javascript: links (and all links) inert', () => {
    const div = render('[click](javascript:alert(1)) and <a href="javascript:alert(2)">raw</a> and [ok](https://example.com)');
    expect(div.innerHTML).not.toMatch(/href=/);
    for (const a of Array.from(div.querySelectorAll('a'))) expect(a.hasAttribute('href')).toBe(false);
    expect(div.innerHTML).not.toMatch(/href\s*=\s*"?javascript:/i);
    // A normal link shows its URL beside the text instead of navigating.
    expect(div.textContent).toContain('ok (https://example.com)');
  });

  it('removes iframes, forms, inputs, objects, styles', () => {
    const div = render(
      '<iframe src="https://evil.example"></iframe>\n\n<form action="/x"><input name="a"><button>go</button></form>\n\n<object data="x"></object><style>body{display:none}</style><embed src="x">',
    );
    for (const tag of ['iframe', 'form', 'input', 'object', 'style', 'embed']) expect(div.querySelector(tag)).toBeNull();
  });

  it('shows markdown images as text, never loads them', () => {
    const div = render('![a cat](https://example.com/cat.png)');
    expect(div.querySelector('img')).toBeNull();
    expect(div.textContent).toContain('[image: a cat]');
  });

  it('keeps ordinary Markdown', () => {
    const html = renderMarkdownHTML('# Title\n\n**bold** and *it* and `code`\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |');
    expect(html).toContain('<h1>Title</h1>');
    expect(html).toContain('<strong>bold</strong>');
    expect(html).toContain('<code>code</code>');
    expect(html).toContain('<li>a</li>');
    expect(html).toContain('<table>');
  });
});

describe('code blocks', () => {
  it('are highlighted and get a Copy button', () => {
    const div = render('```rust\nfn main() { let x = 1; println!("hi"); }\n```\n\n```python\ndef f(x):\n    return x\n```');
    const blocks = div.querySelectorAll('.code-block');
    expect(blocks.length).toBe(2);
    for (const b of Array.from(blocks)) {
      const btn = b.querySelector('button.copy-btn');
      expect(btn).not.toBeNull();
      expect(btn!.getAttribute('aria-label')).toMatch(/Copy/);
      expect(b.querySelector('pre code.hljs')).not.toBeNull();
    }
    expect(blocks[0].querySelector('.hljs-keyword')?.textContent).toBe('fn');
    expect(blocks[0].querySelector('.code-lang')?.textContent).toBe('rust');
    expect(blocks[1].querySelector('.hljs-keyword')?.textContent).toBe('def');
    // The code text is unchanged by highlighting.
    expect(blocks[1].querySelector('code')!.textContent).toBe('def f(x):\n    return x');
  });

  it('escapes HTML inside code', () => {
    const div = render('```html\n<script>alert(1)</script>\n```');
    expect(div.querySelector('script')).toBeNull();
    expect(div.querySelector('code')!.textContent).toBe('<script>alert(1)</script>');
  });

  it('the Copy button copies the block text (clipboard API, then execCommand fallback)', async () => {
    const div = render('```js\nconst a = "x";\n```');
    document.body.append(div);
    div.addEventListener('click', handleMarkdownClick);
    const writeText = vi.fn().mockResolvedValue(undefined);
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    (div.querySelector('.copy-btn') as HTMLButtonElement).click();
    await Promise.resolve();
    expect(writeText).toHaveBeenCalledWith('const a = "x";');

    writeText.mockRejectedValue(new Error('denied'));
    const exec = vi.fn().mockReturnValue(true);
    (document as unknown as { execCommand: unknown }).execCommand = exec;
    (div.querySelector('.copy-btn') as HTMLButtonElement).click();
    await new Promise((r) => setTimeout(r, 0));
    expect(exec).toHaveBeenCalledWith('copy');
    div.remove();
  });

  it('clicking a rendered link does not navigate', () => {
    const div = render('[x](https://example.com)');
    div.addEventListener('click', handleMarkdownClick);
    document.body.append(div);
    const ev = new MouseEvent('click', { bubbles: true, cancelable: true });
    div.querySelector('a')!.dispatchEvent(ev);
    expect(ev.defaultPrevented).toBe(true);
    div.remove();
  });
});

describe('MarkdownView (incremental)', () => {
  it('renders the same DOM as a one-shot render at every prefix', () => {
    const text =
      '# Héllo wörld 👋\n\nSome *text* with `code` and a [link](https://a.b).\n\n```python\nprint("ünïcode ✓")\nfor i in range(3):\n    pass\n```\n\n- one\n- two\n\n1. x\n2. y\n\n> quote\n\nSetext\n---\n\nEnd 日本語.';
    const el = document.createElement('div');
    const view = new MarkdownView(el);
    const chars = Array.from(text);
    for (let i = 1; i <= chars.length; i += 3) {
      const prefix = chars.slice(0, i).join('');
      view.render(prefix);
      expect(el.innerHTML).toBe(renderMarkdownHTML(prefix));
    }
    view.render(text);
    expect(el.innerHTML).toBe(renderMarkdownHTML(text));
  });

  it('keeps unchanged blocks (only the tail is re-rendered)', () => {
    const el = document.createElement('div');
    const view = new MarkdownView(el);
    view.render('first paragraph\n\nsecond');
    const first = el.firstChild;
    view.render('first paragraph\n\nsecond and more');
    expect(el.firstChild).toBe(first);
  });
});

describe('MarkdownView while streaming', () => {
  it('matches a one-shot render after every piece of a long synthetic reply', async () => {
    const { makePieces } = await import('../test/stream-driver');
    const pieces = makePieces(300, 7);
    const el = document.createElement('div');
    const view = new MarkdownView(el);
    let text = '';
    for (const p of pieces) {
      text += p;
      view.render(text);
      expect(el.innerHTML).toBe(renderMarkdownHTML(text));
    }
  });

  it('handles reference links and CRLF text', () => {
    const el = document.createElement('div');
    const view = new MarkdownView(el);
    const text = 'Intro [docs][d] here.\r\n\r\nMore text\r\n\r\n- a\r\n- b\r\n\r\n[d]: https://example.com/docs\r\n';
    let acc = '';
    for (const ch of Array.from(text)) {
      acc += ch;
      view.render(acc);
      expect(el.innerHTML).toBe(renderMarkdownHTML(acc));
    }
  });

  it('re-renders from scratch when the text is replaced', () => {
    const el = document.createElement('div');
    const view = new MarkdownView(el);
    view.render('# one\n\ntwo\n\nthree');
    view.render('completely different');
    expect(el.innerHTML).toBe(renderMarkdownHTML('completely different'));
  });
});
