/**
 * What every part of the benchmark shares: logging, medians, number formats, child processes,
 * /proc readings, the one-benchmark-at-a-time lock, which code was measured, the zstd preflight.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { repoRoot } from '../src/servers/binaries';

export const log = (message: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

export const seconds = (ms: number): number => ms / 1000;

export function median(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return Number.NaN;
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function stats(values: number[]): { median: number; min: number; max: number } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

export const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
export const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
export const f3 = (n: number): string => (Number.isFinite(n) ? n.toFixed(3) : 'n/a');
export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB (${(bytes / 2 ** 20).toFixed(0)} MiB)`;
export const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
export const thousands = (n: number): string => Math.round(n).toLocaleString('en-US');

/** `value` against `reference` as a ratio, with "1/x" when it is below 1. */
export function ratio(value: number, reference: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(reference) || reference === 0) return 'n/a';
  const r = value / reference;
  return r < 1 ? `${f2(r)} (1/${(1 / r).toFixed(1)})` : `${f2(r)}`;
}

export function syncDisks(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

/** Runs a command to its end; rejects with its stderr when it fails. */
export function run(command: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-8192); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise() : reject(new Error(`${command} ${args.join(' ')} exited with ${String(code)}: ${stderr}`))));
  });
}

/** A shell pipeline with pipefail, so a failing `tar` in `tar | zstd` is not hidden. */
export function runPipeline(script: string, cwd?: string): Promise<void> {
  return run('bash', ['-o', 'pipefail', '-c', script], cwd);
}

export const shellQuote = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

/** Reads one field (in kB) of /proc/<pid>/status, in bytes. */
export function procStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    let children: number[] = [];
    try {
      for (const task of readdirSync(`/proc/${p}/task`)) {
        children.push(...readFileSync(`/proc/${p}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number));
      }
    } catch {
      children = [];
    }
    for (const child of children) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

export function machine(): string {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  return `${cpus().length} CPUs (nproc ${spawnSync('nproc', [], { encoding: 'utf8' }).stdout.trim()}), ${cpu}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`;
}

/** Which code was measured: other people edit src/ while benchmarks run. */
export function sourceState(): { commit: string; dirty: string[] } {
  // trimEnd only: a porcelain line starts with a two-letter status that may begin with a space.
  const git = (args: string[]): string => spawnSync('git', args, { cwd: repoRoot(), encoding: 'utf8' }).stdout?.trimEnd() ?? '';
  return { commit: git(['log', '-1', '--format=%h %s']), dirty: git(['status', '--porcelain', '--', 'src']).split('\n').filter((l) => l.trim() !== '') };
}

export function describeSource(source: { commit: string; dirty: string[] }): string {
  return `${source.commit}${source.dirty.length > 0 ? `, with uncommitted changes in ${source.dirty.map((l) => l.slice(3)).join(', ')}` : ', no uncommitted changes under src/'}`;
}

// ---------------------------------------------------------------------------------------------
// Lock: one benchmark at a time on this machine

export function acquireLock(): () => void {
  const dir = join(repoRoot(), '.cache', 'bench');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'bench.lock');
  if (existsSync(file)) {
    const pid = Number(readFileSync(file, 'utf8').trim());
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {
      alive = false;
    }
    if (alive && pid !== process.pid) throw new Error(`another benchmark (pid ${pid}) is running: wait for it (the machine is too small for two), or remove ${file} if that pid is not a benchmark`);
  }
  writeFileSync(file, String(process.pid));
  return () => rmSync(file, { force: true });
}

// ---------------------------------------------------------------------------------------------
// Options shared by the parts: `npm run bench` hands every part the same arguments

/** Options any part accepts (bench/run.ts's own are accepted and ignored by the others). */
const SHARED_OPTIONS = ['--quick', '--runs', '--files', '--bytes', '--fraction', '--out'];

export function optionReader(argv: string[], own: string[]): { has(name: string): boolean; value(name: string): string | undefined } {
  const known = new Set([...SHARED_OPTIONS, ...own.map((o) => `--${o}`)]);
  for (const arg of argv) {
    if (arg.startsWith('--') && !known.has(arg)) throw new Error(`unknown option ${arg} (known: ${[...known].join(', ')})`);
  }
  return {
    has: (name) => argv.includes(`--${name}`),
    value: (name) => {
      const i = argv.indexOf(`--${name}`);
      if (i < 0) return undefined;
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
      return v;
    },
  };
}

export function positiveInteger(text: string | undefined, fallback: number, name: string): number {
  const n = text === undefined ? fallback : Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

/** What every part of the benchmark starts with, from its command line. */
export interface BenchPart {
  started: number;
  quick: boolean;
  rounds: number;
  /** How to run this part again, for its report. */
  commandLine: string;
  releaseLock: () => void;
  loadAtStart: string;
  otherCpu: () => OtherCpu;
}

/** Reads `--quick` and `--runs` (3 rounds, 1 with --quick), takes the machine's benchmark lock, notes the load and starts metering other processes' CPU. */
export function startBenchPart(script: string): BenchPart {
  const started = performance.now();
  const argv = process.argv.slice(2);
  const options = optionReader(argv, []);
  const quick = options.has('quick');
  const rounds = positiveInteger(options.value('runs'), quick ? 1 : 3, 'runs');
  const commandLine = `npx tsx ${script}${argv.length ? ` ${argv.join(' ')}` : ''}`;
  const releaseLock = acquireLock();
  const loadAtStart = loadAverage();
  const otherCpu = otherCpuMeter();
  log(`${commandLine}: ${rounds} round(s); load average ${loadAtStart}`);
  return { started, quick, rounds, commandLine, releaseLock, loadAtStart, otherCpu };
}

// ---------------------------------------------------------------------------------------------
// Preflight: zstd for the practical-limit rows

/** zstd's version; installs it with apt-get when it is missing (and says so). */
export function ensureZstd(): string {
  const version = (): string | undefined => {
    const result = spawnSync('zstd', ['--version'], { encoding: 'utf8' });
    return result.status === 0 ? /v(\d+\.\d+\.\d+)/.exec(result.stdout)?.[1] ?? result.stdout.trim() : undefined;
  };
  const found = version();
  if (found) {
    log(`preflight: zstd ${found} found`);
    return found;
  }
  log('preflight: zstd is missing: installing it with `apt-get install -y zstd`');
  const command = process.getuid?.() === 0 ? ['apt-get'] : ['sudo', '-n', 'apt-get'];
  const install = spawnSync(command[0]!, [...command.slice(1), 'install', '-y', 'zstd'], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const installed = version();
  if (!installed) throw new Error(`zstd is needed for the practical-limit rows and could not be installed (apt-get install -y zstd exited ${String(install.status)}): ${install.stderr.slice(-2000)}`);
  log(`preflight: installed zstd ${installed}`);
  return installed;
}

// ---------------------------------------------------------------------------------------------
// Trees on disk and buckets

/** Regular files and their bytes under `dir` (to check a restore brought everything back). */
export function countFiles(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        files += 1;
        bytes += statSync(full).size;
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return { files, bytes };
}

/** Objects and bytes in a bucket. */
export async function bucketUsage(s3: S3Client, bucket: string): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      objects += 1;
      bytes += object.Size ?? 0;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { objects, bytes };
}

/** Deletes every object of a bucket: a benchmark writes tens of GiB otherwise. */
export async function emptyBucket(s3: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length === 0) return;
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
  }
}

// ---------------------------------------------------------------------------------------------
// Contention: other people's work on this machine

export interface OtherCpu {
  /** CPU seconds used by processes outside this benchmark's process tree. */
  cpuSeconds: number;
  /** The same as a share of all CPUs over the wall time, in %. */
  share: number;
}

/**
 * From now on, samples every second the CPU time of every process that is not this one or one
 * of its descendants (MinIO, Temporal, the worker and its restic are ours): what others' test
 * suites took from this benchmark. Processes born and gone within a second are missed.
 */
export function otherCpuMeter(): () => OtherCpu {
  const ticksPerSecond = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  let last = new Map<number, number>();
  let otherTicks = 0;
  const sample = (): void => {
    const mine = new Set([process.pid, ...descendants(process.pid)]);
    const now = new Map<number, number>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      let fields: string[];
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      } catch {
        continue;
      }
      const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
      now.set(pid, ticks);
      const before = last.get(pid);
      if (before !== undefined && !mine.has(pid)) otherTicks += Math.max(0, ticks - before);
    }
    last = now;
  };
  sample();
  const startedAt = performance.now();
  const timer = setInterval(sample, 1000);
  timer.unref();
  return () => {
    sample();
    const cpuSeconds = otherTicks / ticksPerSecond;
    return { cpuSeconds, share: (cpuSeconds / ((performance.now() - startedAt) / 1000) / cpus().length) * 100 };
  };
}

export function describeOtherCpu(other: OtherCpu): string {
  return `other processes on this machine (not this benchmark's) used ${other.share.toFixed(0)}% of its CPU time during this part (${other.cpuSeconds.toFixed(0)} CPU-seconds)${other.share > 10 ? ': times are inflated and noisy by about that much' : ''}`;
}
