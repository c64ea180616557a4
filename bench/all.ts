/**
 * `npm run bench [-- --quick] [-- --only run,restore] [-- --skip databases]`: every part of the
 * benchmark, one after another (never two at once on this machine), each in its own process
 * with the same arguments; a part that fails does not stop the others, the exit code says so.
 *
 * Parts: run (files: the seed's script, the practical limit, the service, restic alone),
 * tuning (restic's options), restore (the recovery time), scale (200,000 files), databases,
 * queue (queued work on one repository).
 * Writes the parts' durations to bench/timings.md (timings-quick.md with --quick).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../src/servers/binaries';
import { log } from './common';

const PARTS = ['run', 'tuning', 'restore', 'scale', 'databases', 'queue'] as const;
type Part = (typeof PARTS)[number];

function takeList(argv: string[], name: string): Part[] | undefined {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const list = (argv[i + 1] ?? '').split(',').filter((p) => p !== '');
  for (const part of list) if (!(PARTS as readonly string[]).includes(part)) throw new Error(`--${name}: unknown part "${part}" (parts: ${PARTS.join(', ')})`);
  argv.splice(i, 2);
  return list as Part[];
}

function runPart(part: Part, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join('bench', `${part}.ts`), ...args], { cwd: repoRoot(), stdio: 'inherit' });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const only = takeList(argv, 'only');
  const skip = takeList(argv, 'skip') ?? [];
  const parts = (only ?? [...PARTS]).filter((p) => !skip.includes(p));
  const quick = argv.includes('--quick');
  const started = performance.now();
  const done: { part: Part; seconds: number; code: number }[] = [];
  for (const part of parts) {
    log(`=== ${part} ===`);
    const partStarted = performance.now();
    const code = await runPart(part, argv);
    done.push({ part, seconds: (performance.now() - partStarted) / 1000, code });
    log(`=== ${part}: ${code === 0 ? 'done' : `FAILED (exit ${code})`} in ${((performance.now() - partStarted) / 60_000).toFixed(1)} min ===`);
  }
  const total = (performance.now() - started) / 1000;
  const lines = [
    `# Benchmark parts and their durations${quick ? ' (quick)' : ''}`,
    '',
    `Command: \`npm run bench${argv.length || only || skip.length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`; ${new Date().toISOString()}; total ${(total / 60).toFixed(1)} min.`,
    '',
    '| part | minutes | result |',
    '|---|---:|---|',
    ...done.map((d) => `| ${d.part} | ${(d.seconds / 60).toFixed(1)} | ${d.code === 0 ? 'ok' : `failed (exit ${d.code})`} |`),
  ];
  writeFileSync(join(repoRoot(), 'bench', quick ? 'timings-quick.md' : 'timings.md'), `${lines.join('\n')}\n`);
  process.stderr.write(`\n${lines.join('\n')}\n`);
  process.exit(done.some((d) => d.code !== 0) ? 1 : 0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
