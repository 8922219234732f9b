import { describe, expect, it } from 'vitest';
import { nameKey, nameProblem, parseModelName } from './modelname';

describe('model names (the store’s ModelName::parse rules)', () => {
  it('accepts every form and fills in the defaults', () => {
    expect(parseModelName('qwen2.5-coder:0.5b-instruct-q4_K_M')).toEqual({
      ok: true,
      name: { host: 'registry.ollama.ai', namespace: 'library', model: 'qwen2.5-coder', tag: '0.5b-instruct-q4_K_M' },
    });
    expect(parseModelName('my/model:tag')).toEqual({ ok: true, name: { host: 'registry.ollama.ai', namespace: 'my', model: 'model', tag: 'tag' } });
    expect(parseModelName('registry.local:5000/team/m:1')).toEqual({ ok: true, name: { host: 'registry.local:5000', namespace: 'team', model: 'm', tag: '1' } });
    expect(parseModelName('registry.local:5000/team/m')).toEqual({ ok: true, name: { host: 'registry.local:5000', namespace: 'team', model: 'm', tag: 'latest' } });
    for (const good of ['llama3', 'gemma3:270m', 'library/llama3.2:1b', '_x', 'a-b_c.d', '  padded:1  ', 'm'.repeat(80), `${'h'.repeat(350)}/n/m`]) {
      expect(nameProblem(good), good).toBeNull();
    }
  });

  it('refuses what the store refuses, saying why', () => {
    const bad = [
      '-x',
      '.x',
      'a..b',
      'x:..',
      'http://x',
      'https://registry.local/team/m',
      'x@sha256:abcd',
      '',
      '   ',
      'm'.repeat(81),
      'm:' + 't'.repeat(81),
      `${'h'.repeat(351)}/n/m`,
      'bad name!',
      'a/b/c/d',
      '/abs',
      'x:',
      ':tag',
      'ns.x/model',
      'a\\b',
      '../x',
      'host/ns/m-:',
      'ümlaut',
    ];
    for (const b of bad) expect(nameProblem(b), JSON.stringify(b)).not.toBeNull();
    expect(nameProblem('-x')).toContain('at the start');
    expect(nameProblem('a..b')).toContain('".."');
    expect(nameProblem('http://x')).toContain('scheme');
    expect(nameProblem('x@sha256:abcd')).toContain('digest');
    expect(nameProblem('')).toBe('enter a name');
    expect(nameProblem('m'.repeat(81))).toContain('1 to 80 characters');
    expect(nameProblem('bad name!')).toContain('a space');
  });

  it('gives names the store takes for the same model the same key', () => {
    expect(nameKey('Gemma3')).toBe(nameKey('gemma3:latest'));
    expect(nameKey('library/gemma3:LATEST')).toBe(nameKey('gemma3'));
    expect(nameKey('gemma3:270m')).not.toBe(nameKey('gemma3'));
    expect(nameKey('bad name!')).toBeNull();
  });
});
