/**
 * The README is a guide a person follows line by line: every `backupctl` command it shows must
 * exist with the options it uses, every config snippet must load, every JSON block must parse,
 * every link must point at a file of the repository, and it stays short.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { parseConfig } from '../src/config/load';

const execFileAsync = promisify(execFile);
const README = readFileSync('README.md', 'utf8');

/** The variables a snippet names (its `...Env` fields), set as a worker's environment would set them. */
function environmentOf(yaml: string): NodeJS.ProcessEnv {
  return Object.fromEntries([...yaml.matchAll(/\w+Env:\s*([A-Z][A-Z0-9_]*)/g)].map(([, name]) => [name, 'set-in-the-test']));
}

interface Block { language: string; text: string; line: number }

function codeBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const open = /^```(\w*)\s*$/.exec(lines[i] ?? '');
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i += 1; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i += 1) body.push(lines[i] ?? '');
    blocks.push({ language: open[1] ?? '', text: body.join('\n'), line: start + 1 });
  }
  return blocks;
}

/** Each `backupctl …` invocation: from shell blocks (commands joined by && or ;, comments cut) and from inline code. */
function invocations(markdown: string): { words: string[]; where: string }[] {
  const found: { words: string[]; where: string }[] = [];
  const take = (command: string, where: string) => {
    const words = command.trim().split(/\s+/).filter(Boolean);
    while (words.length > 0 && /^[A-Z_]+=/.test(words[0] ?? '')) words.shift();
    // Placeholders (<workflowId>, COMMAND) stand for what the reader types.
    if (words[0] === 'backupctl') found.push({ words: words.slice(1).filter((w) => !w.startsWith('<') && !/^[A-Z]+$/.test(w)), where });
  };
  for (const block of codeBlocks(markdown).filter((b) => b.language === 'sh')) {
    block.text.split('\n').forEach((line, index) => {
      for (const part of line.replace(/\s#\s.*$/, '').split(/&&|;|\|/)) take(part, `README.md:${block.line + 1 + index}`);
    });
  }
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '');
  for (const [, span] of prose.matchAll(/`(backupctl [^`]+)`/g)) take(span ?? '', `inline \`${span}\``);
  return found;
}

async function help(words: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['bin/backupctl.js', ...words, '--help'], {
      env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1', LOG_LEVEL: 'warn' }, timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe('the README guide', () => {
  test('stays a guide: at most 280 lines, no line over 300 characters', () => {
    const lines = README.split('\n');
    assert.ok(lines.length <= 280, `README.md has ${lines.length} lines`);
    const long = lines.map((l, i) => ({ l, i })).filter(({ l }) => l.length > 300);
    assert.deepEqual(long.map(({ i }) => i + 1), [], 'lines over 300 characters');
    for (const heading of ['## The two commands', '## Protect a VPS, step by step', '## Permissions each part needs', '## Who may do what', '## Upgrading', '## Troubleshooting by error type']) {
      assert.ok(lines.includes(heading), `no "${heading}" section`);
    }
  });

  test('every backupctl command it shows exists, with every option it uses', async () => {
    const calls = invocations(README).filter((c) => c.words.some((w) => !w.startsWith('-')));
    assert.ok(calls.length >= 15, `only ${calls.length} backupctl commands found: the parser broke`);
    // One help per distinct command line, four at a time (each is a Node process).
    const distinct = [...new Map(calls.map((c) => [c.words.join(' '), c])).values()];
    const results: { call: (typeof calls)[number]; result: Awaited<ReturnType<typeof help>> }[] = [];
    for (let i = 0; i < distinct.length; i += 4) {
      results.push(...await Promise.all(distinct.slice(i, i + 4).map(async (call) => ({ call, result: await help(call.words) }))));
    }
    for (const { call, result } of results) {
      const shown = `backupctl ${call.words.join(' ')} (${call.where})`;
      assert.equal(result.code, 0, `${shown}: --help failed: ${result.stderr}`);
      const usage = /^Usage: backupctl ((?:[a-z-]+ ?)*)/m.exec(result.stdout);
      assert.ok(usage, `${shown}: no usage line`);
      const path = (usage[1] ?? '').trim().split(' ').filter(Boolean);
      const positional = call.words.filter((w) => !w.startsWith('-'));
      assert.ok(path.length > 0, `${shown}: not a command`);
      assert.deepEqual(positional.slice(0, path.length), path, `${shown}: the CLI answers as "backupctl ${path.join(' ')}"`);
      // A command group (drill, schedules, ...) given a word that is none of its commands.
      if (/\[command\]/.test(result.stdout.split('\n')[0] ?? '')) assert.equal(positional.length, path.length, `${shown}: "${positional[path.length]}" is not a command of backupctl ${path.join(' ')}`);
      for (const option of call.words.filter((w) => w.startsWith('--'))) {
        assert.match(result.stdout, new RegExp(`${option.replace(/=.*/, '')}\\b`), `${shown}: backupctl ${path.join(' ')} has no option ${option}`);
      }
    }
  });

  test('the parser itself refuses a command that does not exist and an option a command lacks', async () => {
    const [missing] = invocations('```sh\nbackupctl drill fly --wait\n```\n');
    const result = await help(missing?.words ?? []);
    const path = /^Usage: backupctl ((?:[a-z-]+ ?)*)/m.exec(result.stdout)?.[1]?.trim().split(' ') ?? [];
    assert.deepEqual(path, ['drill'], 'backupctl drill fly --help answers as the drill group');
    assert.match(result.stdout.split('\n')[0] ?? '', /\[command\]/);
    const backup = await help(['backup']);
    assert.doesNotMatch(backup.stdout, /--no-such-option\b/);
  });

  test('every config snippet loads as a config, every JSON block parses', () => {
    const blocks = codeBlocks(README);
    const yaml = blocks.filter((b) => b.language === 'yaml');
    assert.ok(yaml.length >= 1, 'the guide shows no config');
    for (const block of yaml) {
      const config = parseConfig(block.text, `README.md:${block.line}`, { env: environmentOf(block.text) });
      assert.ok(Object.keys(config.policies).length > 0, `README.md:${block.line}: a config without policies`);
    }
    const json = blocks.filter((b) => b.language === 'json');
    assert.ok(json.length >= 1, 'the guide shows no S3 policy');
    for (const block of json) assert.doesNotThrow(() => JSON.parse(block.text), `README.md:${block.line} is not JSON`);
  });

  test('the example config names only sources, repositories and policies that the commands use', () => {
    const [block] = codeBlocks(README).filter((b) => b.language === 'yaml');
    const config = parseConfig(block?.text ?? '', 'README.md', { env: environmentOf(block?.text ?? '') });
    for (const call of invocations(README)) {
      const words = call.words;
      for (let i = 0; i < words.length - 1; i += 1) {
        const value = words[i + 1] ?? '';
        if (words[i] === '--source' || words[i] === '-s') assert.ok(value in config.sources, `${call.where}: no source ${value} in the guide's config`);
        if (words[i] === '--policy' || words[i] === '-p') assert.ok(value in config.policies, `${call.where}: no policy ${value} in the guide's config`);
        if (words[i] === '--repository') assert.ok(value in config.repositories, `${call.where}: no repository ${value} in the guide's config`);
      }
    }
  });

  test('every relative link and every docs/ or bench/ page it names exists', () => {
    const targets = new Set<string>();
    for (const [, link] of README.matchAll(/\]\(([^)#]+)(?:#[^)]*)?\)/g)) if (link && !/^https?:/.test(link)) targets.add(link);
    for (const [, page] of README.matchAll(/`((?:docs|deploy|bench|examples)\/[^`\s*]+)`/g)) if (page) targets.add(page);
    assert.ok(targets.size >= 8, `only ${targets.size} links found`);
    for (const target of targets) assert.ok(existsSync(resolve(dirname('README.md'), target)), `README.md links to ${target}, which does not exist`);
    for (const page of ['docs/reference.md', 'docs/configuration.md', 'docs/production.md', 'docs/architecture.md', 'docs/testing.md', 'bench/README.md']) {
      assert.ok(targets.has(page), `the guide does not link ${page}`);
      const text = readFileSync(join(page), 'utf8');
      for (const [, link] of text.matchAll(/\]\(([^)#]+)(?:#[^)]*)?\)/g)) {
        if (link && !/^https?:/.test(link)) assert.ok(existsSync(resolve(dirname(page), link)), `${page} links to ${link}, which does not exist`);
      }
    }
  });
});
