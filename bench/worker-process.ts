/**
 * The benchmark's worker in its own process (so its memory can be measured apart from the
 * client's), a sampler of its RSS and its restic children's, and a thin wrapper around restic
 * that logs each invocation's start, end, exit code, sub-command and peak RSS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../src/servers/binaries';
import { descendants, procStatusBytes } from './common';

// ---------------------------------------------------------------------------------------------
// restic wrapper: logs each invocation (start, end, exit code, sub-command, peak RSS)

export interface ResticCall {
  start: number; // epoch seconds
  end: number;
  code: number;
  command: string;
  maxRssKb: number;
  /** restore only: when restic's progress first counted a restored file (epoch seconds). */
  firstFile?: number;
}

export function writeResticWrapper(dir: string, realRestic: string): { path: string; logFile: string } {
  const path = join(dir, 'restic');
  const logFile = join(dir, 'restic-calls.log');
  writeFileSync(logFile, '');
  // bash's $EPOCHREALTIME needs no fork; GNU time gives the child's peak RSS. The worker passes
  // restic a scrubbed environment, so the paths are written into the script. A restore's
  // progress is read on its way to the caller: the first status that counts a restored file
  // (a complete file) is the time to the first usable file; 20 statuses a second (the service
  // asks for 2) give that time to 50 ms.
  const script = `#!/usr/bin/env bash
start=$EPOCHREALTIME
sub=""
args=("$@")
i=0
while [ $i -lt \${#args[@]} ]; do
  a=\${args[$i]}
  case "$a" in
    -o|-r|--repo|--cache-dir|--password-file) i=$((i+2)); continue ;;
    -*) i=$((i+1)); continue ;;
    *) sub=$a; break ;;
  esac
done
rss=$(mktemp)
if [ "$sub" = restore ]; then
  first=$(mktemp)
  set -o pipefail
  RESTIC_PROGRESS_FPS=20 /usr/bin/time -f '%M' -o "$rss" ${JSON.stringify(realRestic)} "$@" | {
    seen=""
    while IFS= read -r line || [ -n "$line" ]; do
      printf '%s\\n' "$line"
      if [ -z "$seen" ] && [[ $line == *'"files_restored":'[1-9]* ]]; then seen=$EPOCHREALTIME; printf '%s' "$seen" > "$first"; fi
    done
  }
  code=$?
  firstFile=$(cat "$first")
  rm -f "$first"
else
  /usr/bin/time -f '%M' -o "$rss" ${JSON.stringify(realRestic)} "$@"
  code=$?
fi
end=$EPOCHREALTIME
printf '%s %s %s %s %s %s\\n' "$start" "$end" "$code" "\${sub:-?}" "$(tail -n1 "$rss")" "\${firstFile:--}" >> ${JSON.stringify(logFile)}
rm -f "$rss"
exit $code
`;
  writeFileSync(path, script, { mode: 0o755 });
  return { path, logFile };
}

export function readResticCalls(logFile: string): ResticCall[] {
  return readFileSync(logFile, 'utf8').split('\n').filter((l) => l.trim() !== '').map((line) => {
    const [start, end, code, command, rss, firstFile] = line.split(' ');
    return { start: Number(start), end: Number(end), code: Number(code), command: command ?? '?', maxRssKb: Number(rss) || 0, ...(firstFile && firstFile !== '-' ? { firstFile: Number(firstFile) } : {}) };
  });
}

// ---------------------------------------------------------------------------------------------
// Worker in its own process, with a memory sampler

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<string>;
  outputTail(): string;
}

export async function startWorkerProcess(env: NodeJS.ProcessEnv, logFile: string): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', './bench/memprobe.mjs', 'bench/worker-entry.mjs'], { cwd: repoRoot(), env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error('could not start the worker');
  process.on('exit', () => child.kill('SIGKILL'));
  let output = '';
  let ready = false;
  let onReady: () => void = () => undefined;
  const readyPromise = new Promise<void>((r) => { onReady = r; });
  const onData = (chunk: Buffer): void => {
    const text = chunk.toString();
    writeFileSync(logFile, text, { flag: 'a' });
    output = (output + text).slice(-16_384);
    if (!ready && /"msg":"worker started"/.test(output)) {
      ready = true;
      onReady();
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<string>((r) => child.on('exit', (code, signal) => r(signal ?? `code ${String(code)}`)));
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 180_000).unref());
  const first = await Promise.race([readyPromise.then(() => 'ready' as const), exited, timeout]);
  if (first !== 'ready') {
    child.kill('SIGKILL');
    throw new Error(`the worker did not start (${first}):\n${output.slice(-4000)}`);
  }
  return { child, pid: child.pid, exited, outputTail: () => output.slice(-4000) };
}

export class MemorySampler {
  workerPeak = 0;
  totalPeak = 0;
  phasePeaks: Record<string, { worker: number; total: number }> = {};
  private phase: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pid: number) {}

  start(): void {
    this.timer = setInterval(() => this.sample(), 100);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Takes another sampler's peaks into this one's: the peaks of every worker a run started. */
  absorb(other: MemorySampler): void {
    this.workerPeak = Math.max(this.workerPeak, other.workerPeak);
    this.totalPeak = Math.max(this.totalPeak, other.totalPeak);
    for (const [phase, peak] of Object.entries(other.phasePeaks)) {
      const mine = (this.phasePeaks[phase] ??= { worker: 0, total: 0 });
      mine.worker = Math.max(mine.worker, peak.worker);
      mine.total = Math.max(mine.total, peak.total);
    }
  }

  setPhase(phase: string | undefined): void {
    this.phase = phase;
    if (phase !== undefined) this.phasePeaks[phase] ??= { worker: 0, total: 0 };
  }

  private sample(): void {
    const worker = procStatusBytes(this.pid, 'VmRSS') ?? 0;
    const total = worker + descendants(this.pid).reduce((sum, pid) => sum + (procStatusBytes(pid, 'VmRSS') ?? 0), 0);
    this.workerPeak = Math.max(this.workerPeak, worker);
    this.totalPeak = Math.max(this.totalPeak, total);
    if (this.phase !== undefined) {
      const p = this.phasePeaks[this.phase]!;
      p.worker = Math.max(p.worker, worker);
      p.total = Math.max(p.total, total);
    }
  }
}


export interface MemorySample { t: number; rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number }

/** The worker's own view of its memory at its highest RSS sample, and the highest V8 heap. */
export function peakBreakdown(file: string): { atPeak: MemorySample; maxHeapUsed: number; maxHeapTotal: number; samples: number } | undefined {
  if (!existsSync(file)) return undefined;
  const samples = readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as MemorySample);
  if (samples.length === 0) return undefined;
  const atPeak = samples.reduce((a, b) => (b.rss > a.rss ? b : a));
  return { atPeak, maxHeapUsed: Math.max(...samples.map((x) => x.heapUsed)), maxHeapTotal: Math.max(...samples.map((x) => x.heapTotal)), samples: samples.length };
}
