// Markdown for untrusted model output: marked → DOMPurify → code blocks highlighted by
// highlight.js with a Copy button. Links are rendered inert (no href: the text, then the URL
// shown beside it), images as text, raw HTML is sanitised (no scripts, handlers, iframes, forms).

import { Marked, type Token, type Tokens, type TokensList } from 'marked';
import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/core';
import javascript from 'highlight.js/lib/languages/javascript';
import typescript from 'highlight.js/lib/languages/typescript';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import bash from 'highlight.js/lib/languages/bash';
import shell from 'highlight.js/lib/languages/shell';
import json from 'highlight.js/lib/languages/json';
import c from 'highlight.js/lib/languages/c';
import cpp from 'highlight.js/lib/languages/cpp';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import sql from 'highlight.js/lib/languages/sql';
import yaml from 'highlight.js/lib/languages/yaml';
import xml from 'highlight.js/lib/languages/xml';
import css from 'highlight.js/lib/languages/css';
import markdown from 'highlight.js/lib/languages/markdown';
import { copyText } from './clipboard';

hljs.registerLanguage('javascript', javascript);
hljs.registerLanguage('typescript', typescript);
hljs.registerLanguage('python', python);
hljs.registerLanguage('rust', rust);
hljs.registerLanguage('bash', bash);
hljs.registerLanguage('shell', shell);
hljs.registerLanguage('json', json);
hljs.registerLanguage('c', c);
hljs.registerLanguage('cpp', cpp);
hljs.registerLanguage('go', go);
hljs.registerLanguage('java', java);
hljs.registerLanguage('sql', sql);
hljs.registerLanguage('yaml', yaml);
hljs.registerLanguage('xml', xml);
hljs.registerLanguage('css', css);
hljs.registerLanguage('markdown', markdown);
hljs.registerAliases(['sh', 'zsh', 'console'], { languageName: 'bash' });
hljs.registerAliases(['html', 'svg'], { languageName: 'xml' });

/** Auto-detection only for short blocks (it tries every language). */
const AUTO_DETECT_MAX = 2000;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

export function highlightCode(code: string, lang: string | undefined): { html: string; lang: string } {
  const name = (lang || '').trim().split(/\s+/)[0].toLowerCase();
  try {
    if (name && hljs.getLanguage(name)) {
      return { html: hljs.highlight(code, { language: name, ignoreIllegals: true }).value, lang: name };
    }
    if (!name && code.length <= AUTO_DETECT_MAX && code.trim()) {
      const r = hljs.highlightAuto(code);
      if (r.language && r.relevance >= 5) return { html: r.value, lang: r.language };
    }
  } catch {
    /* fall through to plain text */
  }
  return { html: escapeHtml(code), lang: name };
}

const md = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    code({ text, lang }: Tokens.Code): string {
      const { html, lang: used } = highlightCode(text.replace(/\n$/, ''), lang);
      const cls = used ? `hljs language-${escapeHtml(used)}` : 'hljs';
      return `<pre><code class="${cls}">${html}</code></pre>\n`;
    },
    link(this: { parser: { parseInline(tokens: Token[]): string } }, { href, tokens }: Tokens.Link): string {
      const text = this.parser.parseInline(tokens);
      const shown = escapeHtml(href || '');
      // No href: a link must never navigate the app window. The URL is shown beside the text.
      const sameAsText = (tokens.length === 1 && tokens[0].type === 'text' && (tokens[0] as Tokens.Text).text === href) ||
        text === shown;
      return `<a class="md-link" title="${shown}">${text}</a>${sameAsText || !href ? '' : ` <span class="md-href">(${shown})</span>`}`;
    },
    image({ href, text }: Tokens.Image): string {
      const alt = escapeHtml(text || 'image');
      return `<span class="md-image" title="${escapeHtml(href || '')}">[image: ${alt}]</span>`;
    },
  },
});

const purify = DOMPurify(typeof window !== 'undefined' ? window : undefined);
const FORBID_TAGS = [
  'script', 'style', 'iframe', 'frame', 'frameset', 'object', 'embed', 'applet', 'form', 'input', 'button',
  'textarea', 'select', 'option', 'link', 'meta', 'base', 'img', 'picture', 'video', 'audio', 'source',
  'track', 'svg', 'math', 'dialog', 'template', 'noscript', 'canvas', 'portal', 'marquee',
];
const FORBID_ATTR = ['style', 'id', 'name', 'target', 'action', 'formaction', 'srcset', 'ping', 'background', 'poster', 'xlink:href'];

if (purify.isSupported) {
  purify.addHook('afterSanitizeAttributes', (node) => {
    if (node.nodeName === 'A') {
      const el = node as Element;
      const href = el.getAttribute('href');
      el.removeAttribute('href');
      if (href && !el.getAttribute('title')) el.setAttribute('title', href);
      el.classList.add('md-link');
    }
  });
}

/** Sanitises an HTML string into a fragment of the current document. */
function sanitize(html: string): DocumentFragment {
  return purify.sanitize(html, {
    FORBID_TAGS,
    FORBID_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ALLOW_UNKNOWN_PROTOCOLS: false,
    RETURN_DOM_FRAGMENT: true,
  }) as unknown as DocumentFragment;
}

/** Wraps every <pre> in a code block with a language label and a Copy button. */
function decorateCodeBlocks(frag: DocumentFragment): void {
  const pres = frag.querySelectorAll('pre');
  for (const pre of Array.from(pres)) {
    const code = pre.querySelector('code');
    const m = code?.className.match(/language-([\w+#.-]+)/);
    const wrap = document.createElement('div');
    wrap.className = 'code-block';
    const head = document.createElement('div');
    head.className = 'code-head';
    const label = document.createElement('span');
    label.className = 'code-lang';
    label.textContent = m ? m[1] : 'text';
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'copy-btn';
    btn.textContent = 'Copy';
    btn.setAttribute('aria-label', `Copy ${m ? m[1] + ' ' : ''}code`);
    head.append(label, btn);
    pre.replaceWith(wrap);
    wrap.append(head, pre);
  }
}

function renderTokensToFragment(tokens: Token[], links: TokensList['links']): DocumentFragment {
  const list = Object.assign(tokens.slice(), { links }) as TokensList;
  const html = md.parser(list);
  const frag = sanitize(html);
  decorateCodeBlocks(frag);
  return frag;
}

/** The whole text at once (what the message shows when it is not streaming). */
export function renderMarkdownFragment(text: string): DocumentFragment {
  const tokens = md.lexer(text);
  return renderTokensToFragment(tokens, tokens.links);
}

/** The same as an HTML string (tests, copy-as-HTML). */
export function renderMarkdownHTML(text: string): string {
  const div = document.createElement('div');
  div.append(renderMarkdownFragment(text));
  return div.innerHTML;
}

/**
 * Renders Markdown into an element, incrementally: top-level blocks whose source did not
 * change keep their DOM nodes; only the changed tail (usually the last block, while a reply
 * streams) is parsed, sanitised and replaced. When the text only grew (streaming), only the last
 * two blocks are lexed again, so a frame costs about the same at the end of a long reply as at
 * its start.
 */
export class MarkdownView {
  private blocks: { raw: string; start: number; type: string; nodes: ChildNode[] }[] = [];
  private linksKey = '';
  private text: string | null = null;
  /** Reference-style link definitions seen: every render lexes the whole text (they apply anywhere). */
  private fullLex = false;

  constructor(readonly el: HTMLElement) {}

  render(text: string): void {
    if (text === this.text) return;
    const prev = this.text;
    this.text = text;

    // Where lexing starts: 0, or (append-only) the start of the second-to-last non-space block.
    let from = 0;
    let keep = 0;
    if (!this.fullLex && prev !== null && text.startsWith(prev) && text.indexOf('\r') < 0) {
      let f = this.blocks.length - 1;
      let seen = 0;
      while (f > 0) {
        if (this.blocks[f].type !== 'space' && ++seen === 2) break;
        f--;
      }
      if (f > 0) {
        const b = this.blocks[f];
        if (text.startsWith(b.raw, b.start)) {
          from = b.start;
          keep = f;
        }
      }
    }

    const tokens = md.lexer(from ? text.slice(from) : text);
    const linksKey = tokens.links && Object.keys(tokens.links).length ? JSON.stringify(tokens.links) : '';
    if (linksKey && !this.fullLex) {
      this.fullLex = true;
      if (from) {
        this.text = prev;
        this.render(text);
        return;
      }
    }

    let i = keep;
    if (linksKey === this.linksKey) {
      const n = Math.min(keep + tokens.length, this.blocks.length);
      while (i < n && tokens[i - keep].raw === this.blocks[i].raw) i++;
    } else {
      this.linksKey = linksKey;
      i = 0;
    }
    if (i === 0 && this.blocks.length === 0) this.el.replaceChildren();
    for (let j = this.blocks.length - 1; j >= i; j--) for (const node of this.blocks[j].nodes) node.remove();
    this.blocks.length = i;
    let start = i > 0 ? this.blocks[i - 1].start + this.blocks[i - 1].raw.length : 0;
    if (i - keep < tokens.length) {
      const out = document.createDocumentFragment();
      for (let j = Math.max(0, i - keep); j < tokens.length; j++) {
        const tok = tokens[j];
        const frag = tok.type === 'space' ? null : renderTokensToFragment([tok], tokens.links);
        this.blocks.push({ raw: tok.raw, start, type: tok.type, nodes: frag ? Array.from(frag.childNodes) : [] });
        start += tok.raw.length;
        if (frag) out.append(frag);
      }
      this.el.append(out);
    }
  }

  reset(): void {
    this.blocks = [];
    this.text = null;
    this.linksKey = '';
    this.fullLex = false;
    this.el.replaceChildren();
  }
}

/**
 * Click handling for rendered Markdown, installed once on a container: Copy buttons copy their
 * block; links never navigate.
 */
export function handleMarkdownClick(e: MouseEvent): void {
  const target = e.target as Element | null;
  if (!target || typeof target.closest !== 'function') return;
  const link = target.closest('a');
  if (link) {
    e.preventDefault();
    return;
  }
  const btn = target.closest('.copy-btn') as HTMLButtonElement | null;
  if (!btn) return;
  const code = btn.closest('.code-block')?.querySelector('pre code, pre');
  if (!code) return;
  e.preventDefault();
  void copyText(code.textContent || '').then((ok) => {
    btn.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => (btn.textContent = 'Copy'), 1500);
  });
}
