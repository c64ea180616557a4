/**
 * `npm run bench [-- --runs 3 --quick --files N --bytes B --fraction 0.01]`
 *
 * Compares, on one MinIO in one run, the first seed's own backup script (`tar -czf` of
 * `applications/`, then one upload of the archive) with this service's first backup into a
 * fresh restic repository and its backup after 1% of the files changed, both through the real
 * path: a worker in its own process (so its memory can be measured), the Temporal dev server,
 * `client.workflow.execute('backupWorkflow')` on the deployment's shared task queue.
 *
 * Where the time goes comes from three sources: the client's wall time (start call → result),
 * the workflow histories (the backup workflow's and its repository child's: activity spans,
 * workflow tasks), and a thin wrapper around restic that logs each invocation's start, end,
 * sub-command and peak RSS. "Temporal overhead" = wall time − union of the activities'
 * execution spans (every activity of this workflow is on the critical path: one repository,
 * one host, so each Promise.all has one element).
 *
 * Output: a Markdown report on stdout and in bench/results.md (bench/results-quick.md with
 * --quick), raw numbers in the matching .json.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, scrypt as scryptCallback, type ScryptOptions } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { runRestic } from '../src/restic/restic';
import { PINNED_BINARIES, repoRoot, resolveBinaryInfo } from '../src/servers/binaries';
import { startMinio, startTemporal, type MinioServer, type TemporalServer } from '../src/servers/processes';
import type { BackupOutcome } from '../src/shared/backup-types';
import { buildBackupPlan } from '../src/config/plans';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { DEFAULT_BYTES, DEFAULT_FILES, loadTree, mutate, parseByteOption, restoreTree, type Tree } from './generate';

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  runs: number;
  quick: boolean;
  files: number;
  bytes: number;
  fraction: number;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
    return v;
  };
  for (const arg of argv) {
    if (arg.startsWith('--') && !['--quick', '--runs', '--files', '--bytes', '--fraction', '--out'].includes(arg)) throw new Error(`unknown option ${arg} (known: --runs N, --quick, --files N, --bytes SIZE, --fraction F, --out FILE)`);
  }
  const runs = Number(value('runs') ?? (quick ? 1 : 3));
  const files = Number(value('files') ?? (quick ? 2_000 : DEFAULT_FILES));
  const bytes = value('bytes') !== undefined ? parseByteOption(value('bytes')!) : quick ? 100 * 2 ** 20 : DEFAULT_BYTES;
  const fraction = Number(value('fraction') ?? 0.01);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  if (!Number.isInteger(files) || files < 6) throw new Error('--files must be an integer >= 6');
  if (!(fraction > 0 && fraction < 1)) throw new Error('--fraction must be between 0 and 1');
  const out = value('out') ?? join(repoRoot(), 'bench', quick ? 'results-quick.md' : 'results.md');
  return { runs, quick, files, bytes, fraction, out };
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const log = (message: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

const seconds = (ms: number): number => ms / 1000;

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function stats(values: number[]): { median: number; min: number; max: number } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const f3 = (n: number): string => (Number.isFinite(n) ? n.toFixed(3) : 'n/a');
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB (${(bytes / 2 ** 20).toFixed(0)} MiB)`;
const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

function syncDisks(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

function run(command: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise() : reject(new Error(`${command} ${args.join(' ')} exited with ${String(code)}: ${stderr}`))));
  });
}

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => scryptCallback(password, salt, keylen, options, (error, key) => (error ? reject(error) : resolvePromise(key))));
}

/** Reads one field (in kB) of /proc/<pid>/status, in bytes. */
function procStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

function descendants(pid: number): number[] {
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

// ---------------------------------------------------------------------------------------------
// Lock: one benchmark at a time on this machine

function acquireLock(): () => void {
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
// restic wrapper: logs each invocation (start, end, exit code, sub-command, peak RSS)

interface ResticCall {
  start: number; // epoch seconds
  end: number;
  code: number;
  command: string;
  maxRssKb: number;
}

function writeResticWrapper(dir: string, realRestic: string): { path: string; logFile: string } {
  const path = join(dir, 'restic');
  const logFile = join(dir, 'restic-calls.log');
  writeFileSync(logFile, '');
  // bash's $EPOCHREALTIME needs no fork; GNU time gives the child's peak RSS. The worker passes
  // restic a scrubbed environment, so the paths are written into the script.
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
/usr/bin/time -f '%M' -o "$rss" ${JSON.stringify(realRestic)} "$@"
code=$?
end=$EPOCHREALTIME
printf '%s %s %s %s %s\\n' "$start" "$end" "$code" "\${sub:-?}" "$(tail -n1 "$rss")" >> ${JSON.stringify(logFile)}
rm -f "$rss"
exit $code
`;
  writeFileSync(path, script, { mode: 0o755 });
  return { path, logFile };
}

function readResticCalls(logFile: string): ResticCall[] {
  return readFileSync(logFile, 'utf8').split('\n').filter((l) => l.trim() !== '').map((line) => {
    const [start, end, code, command, rss] = line.split(' ');
    return { start: Number(start), end: Number(end), code: Number(code), command: command ?? '?', maxRssKb: Number(rss) || 0 };
  });
}

// ---------------------------------------------------------------------------------------------
// Worker in its own process, with a memory sampler

interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<string>;
  outputTail(): string;
}

async function startWorkerProcess(env: NodeJS.ProcessEnv, logFile: string): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './bench/memprobe.mjs', 'src/worker.ts'], { cwd: repoRoot(), env, stdio: ['ignore', 'pipe', 'pipe'] });
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

class MemorySampler {
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

// ---------------------------------------------------------------------------------------------
// Workflow histories

type History = Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
type HistoryEvent = NonNullable<History['events']>[number];

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (value !== null && typeof value === 'object' && 'toNumber' in value && typeof (value as { toNumber: unknown }).toNumber === 'function') return (value as { toNumber(): number }).toNumber();
  return Number(value);
}

function eventMs(event: HistoryEvent): number {
  const t = event.eventTime;
  return t ? toNumber(t.seconds) * 1000 + (t.nanos ?? 0) / 1e6 : Number.NaN;
}

interface ActivitySpan {
  name: string;
  workflow: 'backup' | 'repository';
  scheduled: number; // epoch ms
  started: number;
  closed: number;
  attempt: number;
}

interface HistoryFacts {
  startedAt: number;
  closedAt: number;
  activities: ActivitySpan[];
  /** Workflow tasks: scheduled → started (waiting for the worker) and started → completed (running workflow code). */
  workflowTaskQueued: number;
  workflowTaskRunning: number;
  workflowTasks: number;
  child?: { workflowId: string; runId: string; initiatedAt: number; startedAt: number; closedAt: number };
}

function readHistory(history: History, workflow: ActivitySpan['workflow']): HistoryFacts {
  const events = history.events ?? [];
  const scheduled = new Map<string, { name: string; time: number }>();
  const started = new Map<string, { time: number; attempt: number }>();
  const workflowTaskScheduled = new Map<string, number>();
  const workflowTaskStarted = new Map<string, number>();
  const facts: HistoryFacts = { startedAt: eventMs(events[0]!), closedAt: eventMs(events[events.length - 1]!), activities: [], workflowTaskQueued: 0, workflowTaskRunning: 0, workflowTasks: 0 };
  let childInitiated = Number.NaN;
  for (const event of events) {
    const id = String(toNumber(event.eventId));
    const time = eventMs(event);
    if (event.activityTaskScheduledEventAttributes) scheduled.set(id, { name: event.activityTaskScheduledEventAttributes.activityType?.name ?? '?', time });
    if (event.activityTaskStartedEventAttributes) started.set(String(toNumber(event.activityTaskStartedEventAttributes.scheduledEventId)), { time, attempt: event.activityTaskStartedEventAttributes.attempt ?? 1 });
    const closed = event.activityTaskCompletedEventAttributes ?? event.activityTaskFailedEventAttributes ?? event.activityTaskTimedOutEventAttributes ?? event.activityTaskCanceledEventAttributes;
    if (closed) {
      const key = String(toNumber(closed.scheduledEventId));
      const s = scheduled.get(key);
      const st = started.get(key);
      if (s && st) facts.activities.push({ name: s.name, workflow, scheduled: s.time, started: st.time, closed: time, attempt: st.attempt });
    }
    if (event.workflowTaskScheduledEventAttributes) workflowTaskScheduled.set(id, time);
    if (event.workflowTaskStartedEventAttributes) {
      const key = String(toNumber(event.workflowTaskStartedEventAttributes.scheduledEventId));
      workflowTaskStarted.set(id, time);
      facts.workflowTaskQueued += time - (workflowTaskScheduled.get(key) ?? time);
    }
    if (event.workflowTaskCompletedEventAttributes) {
      const startedAt = workflowTaskStarted.get(String(toNumber(event.workflowTaskCompletedEventAttributes.startedEventId)));
      if (startedAt !== undefined) facts.workflowTaskRunning += time - startedAt;
      facts.workflowTasks += 1;
    }
    if (event.startChildWorkflowExecutionInitiatedEventAttributes) childInitiated = time;
    const childStarted = event.childWorkflowExecutionStartedEventAttributes;
    if (childStarted?.workflowExecution?.workflowId && childStarted.workflowExecution.runId) {
      facts.child = { workflowId: childStarted.workflowExecution.workflowId, runId: childStarted.workflowExecution.runId, initiatedAt: childInitiated, startedAt: time, closedAt: Number.NaN };
    }
    if (event.childWorkflowExecutionCompletedEventAttributes && facts.child) facts.child.closedAt = time;
  }
  return facts;
}

/** Total length of the union of intervals. */
function unionLength(intervals: [number, number][]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let current: [number, number] | undefined;
  for (const [s, e] of sorted) {
    if (!current || s > current[1]) {
      if (current) total += current[1] - current[0];
      current = [s, e];
    } else current[1] = Math.max(current[1], e);
  }
  if (current) total += current[1] - current[0];
  return total;
}

// ---------------------------------------------------------------------------------------------
// One measured backup

interface ActivityMeasure {
  name: string;
  span: number; // s, started → closed
  queued: number; // s, scheduled → started
  resticSeconds: number;
  resticCalls: string[];
}

interface BackupMeasure {
  workflowId: string;
  wall: number; // s, client: start call → result
  historyWall: number; // s, first → last event of the backup workflow
  activityUnion: number; // s
  overhead: number; // s, wall − activity union
  overheadHistory: number; // s, historyWall − activity union
  activityQueued: number; // s, sum of scheduled → started
  workflowTaskQueued: number;
  workflowTaskRunning: number;
  workflowTasks: number;
  childStartLatency: number; // s, start-child initiated → child started
  resticTotal: number; // s, sum of all restic processes during the run
  resticBackupProcess: number; // s, the `restic backup` process
  resticBackupOutcome: number; // s, snapshots[].durationSeconds
  otherRestic: { command: string; seconds: number; maxRssKb: number }[];
  resticPeakRssKb: number;
  nonResticInActivities: number; // s, activity spans − restic inside them
  nonBackupActivities: number; // s, every activity but backupSource
  activities: ActivityMeasure[];
  files: number;
  bytes: number;
  dataAdded: number;
}

interface ScriptMeasure {
  total: number;
  tar: number;
  upload: number;
  archiveBytes: number;
}

interface DirectMeasure {
  /** restic CLI alone, same flags as the service: first backup, then nothing changed, then the same 1% changed. */
  first: number;
  unchanged: number;
  incremental: number;
}

interface RunMeasure {
  run: number;
  script: ScriptMeasure;
  first: BackupMeasure;
  incremental: BackupMeasure;
  direct: DirectMeasure;
  mutated: { files: number; bytes: number };
}

// ---------------------------------------------------------------------------------------------
// Configuration of the benchmark deployment

const DEPLOYMENT = 'bench';
const POLICY = 'applications';
const ENV_NAMES = { password: 'BENCH_RESTIC_PASSWORD', keyId: 'BENCH_S3_ACCESS_KEY_ID', secret: 'BENCH_S3_SECRET_ACCESS_KEY' };

function configText(opts: { sourceRoot: string; staging: string; repositoryName: string; bucket: string; endpoint: string }): string {
  return stringify({
    deployment: DEPLOYMENT,
    staging: { directory: opts.staging, minFreeSpace: '100MiB' },
    sources: { applications: { type: 'files', root: opts.sourceRoot, paths: ['applications'] } },
    repositories: {
      [opts.repositoryName]: {
        type: 's3', endpoint: opts.endpoint, bucket: opts.bucket, region: 'us-east-1', pathStyle: true,
        accessKeyIdEnv: ENV_NAMES.keyId, secretAccessKeyEnv: ENV_NAMES.secret, passwordEnv: ENV_NAMES.password,
      },
    },
    // The policy the dev deployment uses for the same artifacts: retention runs after each backup.
    policies: { [POLICY]: { sources: ['applications'], repositories: [opts.repositoryName], schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, rpo: '26h', tier: 'high' } },
  });
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const benchStarted = performance.now();
  const options = parseOptions(process.argv.slice(2));
  const commandLine = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const releaseLock = acquireLock();
  const loadAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  log(`${commandLine}: ${options.runs} run(s), ${options.files} files / ${options.bytes} bytes, ${options.fraction * 100}% changed; load average ${loadAtStart}`);
  if (Number(loadAtStart.split(' ')[0]) > 1.5) log('warning: the machine is busy (load average above 1.5): timings will be noisy');

  const tree = loadTree({ files: options.files, bytes: options.bytes, log });
  log(`tree: ${tree.files} files, ${gib(tree.bytes)} at ${tree.root}`);

  const [restic, minioBin, temporalBin] = await Promise.all([
    resolveBinaryInfo('restic', { logger: log }),
    resolveBinaryInfo('minio', { logger: log }),
    resolveBinaryInfo('temporal', { logger: log }),
  ]);
  const work = mkdtempSync(join(tmpdir(), 'bench-'));
  let minio: MinioServer | undefined;
  let temporal: TemporalServer | undefined;
  let worker: WorkerProcess | undefined;
  let connection: Connection | undefined;
  let s3: S3Client | undefined;
  try {
    [minio, temporal] = await Promise.all([startMinio({ bin: minioBin.path }), startTemporal({ bin: temporalBin.path })]);
    log(`MinIO ${minio.endpoint}, Temporal ${temporal.address}`);
    const secrets: Record<string, string> = { [ENV_NAMES.password]: `bench-${randomBytes(12).toString('hex')}`, [ENV_NAMES.keyId]: minio.accessKeyId, [ENV_NAMES.secret]: minio.secretAccessKey };
    const env: NodeJS.ProcessEnv = { ...process.env, ...secrets };
    const staging = join(work, 'staging');
    const resticCache = join(work, 'restic-cache');
    mkdirSync(staging, { recursive: true });
    mkdirSync(resticCache, { recursive: true });
    const wrapper = writeResticWrapper(work, restic.path);
    const memprobeFile = join(work, 'memprobe.jsonl');

    // A small warm-up source: the first workflow task and activity of a fresh worker pay one-off costs.
    const warmupRoot = join(work, 'warmup');
    for (let i = 0; i < 20; i++) {
      mkdirSync(join(warmupRoot, 'applications', `Company ${i}`), { recursive: true });
      writeFileSync(join(warmupRoot, 'applications', `Company ${i}`, 'CV.md'), `# warm-up ${i}\n`);
    }
    const configFor = (sourceRoot: string, repositoryName: string, bucket: string): Config =>
      parseConfig(configText({ sourceRoot, staging, repositoryName, bucket, endpoint: minio!.endpoint }), `${repositoryName}.yaml`, { env });

    const workerConfigPath = join(work, 'bench.yaml');
    writeFileSync(workerConfigPath, configText({ sourceRoot: tree.root, staging, repositoryName: 'warmup', bucket: 'bench-warmup', endpoint: minio.endpoint }));
    // Only what the worker reads: no TEMPORAL_*/RESTIC_*/BACKUP_* of the caller's shell.
    const workerEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TEMPORAL_|RESTIC_|BACKUP_|LOG_)/.test(k)));
    Object.assign(workerEnv, secrets, {
      BACKUP_CONFIG: workerConfigPath, BACKUP_HOST: 'bench-host', TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace,
      RESTIC_BIN: wrapper.path, RESTIC_CACHE_DIR: resticCache, LOG_LEVEL: 'info', LOG_FORMAT: 'json', BENCH_MEMPROBE_FILE: memprobeFile,
    });

    // restic's fixed cost per invocation, measured on a probe repository.
    const probeConfig = configFor(warmupRoot, 'probe', 'bench-probe');
    await initRepositories(probeConfig, restic.path, ['probe'], env);
    const fixed = await measureResticFixedCost(probeConfig, restic.path, env, secrets[ENV_NAMES.password]!, resticCache);
    log(`restic fixed cost: start ${f3(fixed.versionSeconds)} s, open repository ${f3(fixed.openSeconds)} s, scrypt ${f3(fixed.kdfSeconds)} s (N=${fixed.kdf.N}, r=${fixed.kdf.r}, p=${fixed.kdf.p})`);

    log('starting the worker (separate process)');
    const workerStart = performance.now();
    worker = await startWorkerProcess(workerEnv, join(work, 'worker.log'));
    const workerStartSeconds = seconds(performance.now() - workerStart);
    const startupHwm = procStatusBytes(worker.pid, 'VmHWM') ?? 0;
    let hwmReset = true;
    try {
      writeFileSync(`/proc/${worker.pid}/clear_refs`, '5');
    } catch {
      hwmReset = false;
    }
    const sampler = new MemorySampler(worker.pid);
    sampler.start();
    const workerDied = worker.exited.then((how) => {
      throw new Error(`the worker exited (${how}) during the benchmark:\n${worker?.outputTail() ?? ''}`);
    });
    workerDied.catch(() => undefined);

    connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection, namespace: temporal.namespace });
    s3 = new S3Client({
      endpoint: minio.endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey },
      // No extra CRC pass over the gigabyte: the script's baseline is as cheap as an upload gets.
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    await s3.send(new CreateBucketCommand({ Bucket: 'bench-script' }));

    const backup = async (label: string, config: Config, runIndex: number): Promise<BackupMeasure> => {
      syncDisks();
      const input = buildBackupPlan(config, POLICY, 'bench-host', 'manual');
      const workflowId = `${DEPLOYMENT}-backup-${label}-${runIndex}-${Date.now()}`;
      const callsBefore = readResticCalls(wrapper.logFile).length;
      sampler.setPhase(label);
      const started = performance.now();
      const outcome = await Promise.race([
        client.workflow.execute<(plan: typeof input) => Promise<BackupOutcome>>('backupWorkflow', { taskQueue: sharedTaskQueue(DEPLOYMENT), workflowId, args: [input] }),
        workerDied,
      ]);
      const wall = seconds(performance.now() - started);
      sampler.setPhase(undefined);
      const calls = readResticCalls(wrapper.logFile).slice(callsBefore);
      return analyse(client, workflowId, wall, outcome, calls);
    };

    // Warm-up (not measured): the worker's first workflow task, activities, ledger and restic.
    log('warm-up backup (not measured)');
    const warmupConfig = configFor(warmupRoot, 'warmup', 'bench-warmup');
    await initRepositories(warmupConfig, restic.path, ['warmup'], env);
    const warmup = await backup('warmup', warmupConfig, 0);
    sampler.setPhase(undefined);

    // Read the tree once so every run starts with it in the page cache (tar and restic alike).
    for (const spec of tree.specs) readFileSync(join(tree.root, spec.path));

    const runs: RunMeasure[] = [];
    for (let i = 1; i <= options.runs; i++) {
      log(`run ${i}/${options.runs}: script (tar -czf + one upload)`);
      const script = await runScript(s3, tree, work, i);
      log(`run ${i}: script ${f2(script.total)} s (tar ${f2(script.tar)} s, upload ${f2(script.upload)} s, archive ${gib(script.archiveBytes)})`);

      const repositoryName = `run-${i}`;
      const config = configFor(tree.root, repositoryName, `bench-restic-${i}-${randomBytes(3).toString('hex')}`);
      await initRepositories(config, restic.path, [repositoryName], env);
      log(`run ${i}: first backup into a fresh repository`);
      const first = await backup('first', config, i);
      log(`run ${i}: first backup ${f2(first.wall)} s (restic backup ${f2(first.resticBackupProcess)} s, Temporal overhead ${f2(first.overhead)} s)`);

      const changed = mutate(tree, options.fraction, i);
      log(`run ${i}: changed ${changed.paths.length} files (${(changed.bytes / 1e6).toFixed(1)} MB); incremental backup`);
      const incremental = await backup('incremental', config, i);
      log(`run ${i}: incremental ${f2(incremental.wall)} s (restic backup ${f2(incremental.resticBackupProcess)} s, Temporal overhead ${f2(incremental.overhead)} s)`);
      restoreTree(tree);

      log(`run ${i}: reference: restic CLI alone (first, nothing changed, the same 1% changed)`);
      const directName = `direct-${i}`;
      const directConfig = configFor(tree.root, directName, `bench-direct-${i}-${randomBytes(3).toString('hex')}`);
      await initRepositories(directConfig, restic.path, [directName], env);
      const direct = await runDirect(directConfig.repositories[directName]!, restic.path, { ...env, RESTIC_CACHE_DIR: resticCache }, tree, options.fraction, i);
      log(`run ${i}: restic alone: first ${f2(direct.first)} s, nothing changed ${f2(direct.unchanged)} s, 1% changed ${f2(direct.incremental)} s`);
      runs.push({ run: i, script, first, incremental, direct, mutated: { files: changed.paths.length, bytes: changed.bytes } });
    }

    const finalHwm = procStatusBytes(worker.pid, 'VmHWM') ?? 0;
    sampler.stop();
    const memory = {
      startupHwm, benchHwm: finalHwm, hwmReset, lifetimePeak: Math.max(startupHwm, finalHwm),
      sampledWorkerPeak: sampler.workerPeak, sampledTotalPeak: sampler.totalPeak, phasePeaks: sampler.phasePeaks, workerStartSeconds,
      atPeak: peakBreakdown(memprobeFile),
    };
    const totalSeconds = seconds(performance.now() - benchStarted);
    const report = renderReport({ options, commandLine, tree, runs, memory, fixed, loadAtStart, totalSeconds, warmup, source: sourceState(), versions: { restic: restic.version ?? '?', minio: minioBin.version ?? '?', temporal: temporalBin.version ?? '?' } });
    process.stdout.write(`${report}\n`);
    writeFileSync(options.out, `${report}\n`);
    writeFileSync(options.out.replace(/\.md$/, '.json'), `${JSON.stringify({ options, source: sourceState(), tree: { key: tree.key, files: tree.files, bytes: tree.bytes }, runs, warmup, memory, fixed, totalSeconds }, null, 2)}\n`);
    log(`wrote ${options.out}; total ${f2(totalSeconds)} s`);
  } finally {
    restoreTree(tree);
    if (worker && worker.child.exitCode === null && worker.child.signalCode === null) {
      worker.child.kill('SIGTERM');
      const timer = setTimeout(() => worker?.child.kill('SIGKILL'), 15_000);
      await worker.exited;
      clearTimeout(timer);
    }
    await connection?.close();
    s3?.destroy();
    await Promise.all([minio?.stop(), temporal?.stop()]);
    rmSync(work, { recursive: true, force: true });
    releaseLock();
  }
}

async function runScript(s3: S3Client, tree: Tree, work: string, runIndex: number): Promise<ScriptMeasure> {
  const archive = join(work, 'applications.tgz');
  rmSync(archive, { force: true });
  syncDisks();
  const started = performance.now();
  await run('tar', ['-czf', archive, 'applications'], tree.root);
  const tarDone = performance.now();
  const archiveBytes = statSync(archive).size;
  await s3.send(new PutObjectCommand({ Bucket: 'bench-script', Key: `run-${runIndex}/applications.tgz`, Body: createReadStream(archive), ContentLength: archiveBytes }));
  const done = performance.now();
  rmSync(archive, { force: true });
  return { total: seconds(done - started), tar: seconds(tarDone - started), upload: seconds(done - tarDone), archiveBytes };
}

/** restic alone, with the flags and environment the service's backupSource uses (minus the manifest). */
async function runDirect(repository: Config['repositories'][string], resticBin: string, env: NodeJS.ProcessEnv, tree: Tree, fraction: number, runIndex: number): Promise<DirectMeasure> {
  const once = async (): Promise<number> => {
    syncDisks();
    const started = performance.now();
    await runRestic(['backup', '--json', '--host', 'bench-host', '--tag', `deployment=${DEPLOYMENT}`, '--tag', 'source=applications', '--', join(tree.root, 'applications')], { bin: resticBin, repository, env, cwd: tree.root, collectStdout: false });
    return seconds(performance.now() - started);
  };
  const first = await once();
  const unchanged = await once();
  mutate(tree, fraction, runIndex);
  try {
    return { first, unchanged, incremental: await once() };
  } finally {
    restoreTree(tree);
  }
}

/** Which code was measured: other people edit src/ while benchmarks run. */
function sourceState(): { commit: string; dirty: string[] } {
  const git = (args: string[]): string => spawnSync('git', args, { cwd: repoRoot(), encoding: 'utf8' }).stdout?.trim() ?? '';
  return { commit: git(['log', '-1', '--format=%h %s']), dirty: git(['status', '--porcelain', '--', 'src']).split('\n').filter((l) => l.trim() !== '') };
}

async function analyse(client: Client, workflowId: string, wall: number, outcome: BackupOutcome, calls: ResticCall[]): Promise<BackupMeasure> {
  if (!outcome.ok) throw new Error(`backup ${workflowId} failed: ${JSON.stringify(outcome.error)}`);
  const parent = readHistory(await client.workflow.getHandle(workflowId).fetchHistory(), 'backup');
  const child = parent.child ? readHistory(await client.workflow.getHandle(parent.child.workflowId, parent.child.runId).fetchHistory(), 'repository') : undefined;
  const spans = [...parent.activities, ...(child?.activities ?? [])].sort((a, b) => a.started - b.started);
  const activityUnion = seconds(unionLength(spans.map((s) => [s.started, s.closed])));
  // restic calls are attributed to the activity whose span holds their start.
  const inside = (span: ActivitySpan): ResticCall[] => calls.filter((c) => c.start * 1000 >= span.started - 50 && c.start * 1000 <= span.closed + 50);
  const activities: ActivityMeasure[] = spans.map((span) => {
    const mine = inside(span);
    return {
      name: span.name,
      span: seconds(span.closed - span.started),
      queued: seconds(span.started - span.scheduled),
      resticSeconds: mine.reduce((sum, c) => sum + (c.end - c.start), 0),
      resticCalls: mine.map((c) => c.command),
    };
  });
  const backupCall = calls.find((c) => c.command === 'backup');
  const historyWall = seconds(parent.closedAt - parent.startedAt);
  const resticTotal = calls.reduce((sum, c) => sum + (c.end - c.start), 0);
  const snapshot = outcome.snapshots[0];
  return {
    workflowId,
    wall,
    historyWall,
    activityUnion,
    overhead: wall - activityUnion,
    overheadHistory: historyWall - activityUnion,
    activityQueued: activities.reduce((sum, a) => sum + a.queued, 0),
    workflowTaskQueued: seconds(parent.workflowTaskQueued + (child?.workflowTaskQueued ?? 0)),
    workflowTaskRunning: seconds(parent.workflowTaskRunning + (child?.workflowTaskRunning ?? 0)),
    workflowTasks: parent.workflowTasks + (child?.workflowTasks ?? 0),
    childStartLatency: parent.child ? seconds(parent.child.startedAt - parent.child.initiatedAt) : 0,
    resticTotal,
    resticBackupProcess: backupCall ? backupCall.end - backupCall.start : Number.NaN,
    resticBackupOutcome: outcome.snapshots.reduce((sum, s) => sum + s.durationSeconds, 0),
    otherRestic: calls.filter((c) => c !== backupCall).map((c) => ({ command: c.command, seconds: c.end - c.start, maxRssKb: c.maxRssKb })),
    resticPeakRssKb: Math.max(0, ...calls.map((c) => c.maxRssKb)),
    nonResticInActivities: activities.reduce((sum, a) => sum + a.span - a.resticSeconds, 0),
    nonBackupActivities: activities.filter((a) => a.name !== 'backupSource').reduce((sum, a) => sum + a.span, 0),
    activities,
    files: snapshot?.files ?? 0,
    bytes: snapshot?.bytes ?? 0,
    dataAdded: snapshot?.dataAdded ?? 0,
  };
}

interface MemorySample { t: number; rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number }

/** The worker's own view of its memory at its highest RSS sample, and the highest V8 heap. */
function peakBreakdown(file: string): { atPeak: MemorySample; maxHeapUsed: number; maxHeapTotal: number; samples: number } | undefined {
  if (!existsSync(file)) return undefined;
  const samples = readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as MemorySample);
  if (samples.length === 0) return undefined;
  const atPeak = samples.reduce((a, b) => (b.rss > a.rss ? b : a));
  return { atPeak, maxHeapUsed: Math.max(...samples.map((x) => x.heapUsed)), maxHeapTotal: Math.max(...samples.map((x) => x.heapTotal)), samples: samples.length };
}

interface FixedCost {
  versionSeconds: number;
  openSeconds: number;
  snapshotsSeconds: number;
  kdfSeconds: number;
  kdf: { N: number; r: number; p: number };
}

async function measureResticFixedCost(config: Config, resticBin: string, env: NodeJS.ProcessEnv, password: string, cacheDir: string): Promise<FixedCost> {
  const repository = config.repositories.probe!;
  const childEnv = { ...env, RESTIC_CACHE_DIR: cacheDir };
  const time = async (fn: () => Promise<unknown>, n = 5): Promise<number> => {
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await fn();
      samples.push(seconds(performance.now() - t));
    }
    return median(samples);
  };
  const versionSeconds = await time(() => run(resticBin, ['version']));
  const openSeconds = await time(() => runRestic(['cat', 'config', '--no-lock'], { bin: resticBin, repository, env: childEnv }));
  const snapshotsSeconds = await time(() => runRestic(['snapshots', '--json', '--no-lock'], { bin: resticBin, repository, env: childEnv }));
  const keys = JSON.parse((await runRestic(['key', 'list', '--json', '--no-lock'], { bin: resticBin, repository, env: childEnv })).stdout) as { id: string }[];
  const key = JSON.parse((await runRestic(['cat', 'key', keys[0]!.id, '--no-lock'], { bin: resticBin, repository, env: childEnv })).stdout) as { N: number; r: number; p: number; salt: string };
  const kdfSeconds = await time(() => scrypt(password, Buffer.from(key.salt, 'base64'), 64, { N: key.N, r: key.r, p: key.p, maxmem: 256 * key.N * key.r + 2 ** 24 }), 3);
  return { versionSeconds, openSeconds, snapshotsSeconds, kdfSeconds, kdf: { N: key.N, r: key.r, p: key.p } };
}

// ---------------------------------------------------------------------------------------------
// Report

interface ReportInput {
  options: Options;
  commandLine: string;
  tree: Tree;
  runs: RunMeasure[];
  memory: { startupHwm: number; benchHwm: number; hwmReset: boolean; lifetimePeak: number; sampledWorkerPeak: number; sampledTotalPeak: number; phasePeaks: Record<string, { worker: number; total: number }>; workerStartSeconds: number; atPeak: ReturnType<typeof peakBreakdown> };
  fixed: FixedCost;
  loadAtStart: string;
  totalSeconds: number;
  warmup: BackupMeasure;
  source: { commit: string; dirty: string[] };
  versions: { restic: string; minio: string; temporal: string };
}

function renderReport(r: ReportInput): string {
  const { runs } = r;
  const script = stats(runs.map((x) => x.script.total));
  const first = stats(runs.map((x) => x.first.wall));
  const incr = stats(runs.map((x) => x.incremental.wall));
  const ratio = (s: number): string => (s < script.median ? `${f3(s / script.median)} (1/${(script.median / s).toFixed(1)})` : `${f2(s / script.median)}× the script`);
  const m = (pick: (b: BackupMeasure) => number, which: 'first' | 'incremental'): number => median(runs.map((x) => pick(x[which])));
  const yes = (ok: boolean): string => (ok ? '**met**' : '**not met**');
  const overheadFirst = stats(runs.map((x) => x.first.overhead));
  const overheadIncr = stats(runs.map((x) => x.incremental.overhead));
  const overheadMax = Math.max(overheadFirst.max, overheadIncr.max);
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  const lines: string[] = [];
  lines.push(`# Benchmark: the seed's tar+upload script vs. this service's backups`);
  lines.push('');
  lines.push(`${r.options.quick ? '**Quick smoke run** (small tree, not the goal\'s size). ' : ''}Medians of ${runs.length} run(s); every step of a run on the same MinIO. Command: \`${r.commandLine}\`; whole benchmark ${(r.totalSeconds / 60).toFixed(1)} min.`);
  lines.push('');
  lines.push('| step | median (s) | min–max (s) | ratio to script | goal |');
  lines.push('|---|---:|---:|---:|---|');
  lines.push(`| script: \`tar -czf\` + one PutObject of the archive | ${f2(script.median)} | ${f2(script.min)}–${f2(script.max)} | 1 | |`);
  lines.push(`| first backup (fresh repository) | ${f2(first.median)} | ${f2(first.min)}–${f2(first.max)} | ${ratio(first.median)} | ≤ 1/3: ${yes(first.median <= script.median / 3)} |`);
  lines.push(`| ${(r.options.fraction * 100).toFixed(0)}% incremental (${runs[0]!.mutated.files} files rewritten) | ${f2(incr.median)} | ${f2(incr.min)}–${f2(incr.max)} | ${ratio(incr.median)} | ≤ 1/20: ${yes(incr.median <= script.median / 20)} |`);
  const direct = (pick: (d: DirectMeasure) => number): string => {
    const st = stats(runs.map((x) => pick(x.direct)));
    return `${f2(st.median)} | ${f2(st.min)}–${f2(st.max)} | ${ratio(st.median)}`;
  };
  lines.push(`| *reference: restic CLI alone, first backup* | ${direct((d) => d.first)} | |`);
  lines.push(`| *reference: restic CLI alone, same 1% changed* | ${direct((d) => d.incremental)} | |`);
  lines.push(`| *reference: restic CLI alone, nothing changed* | ${direct((d) => d.unchanged)} | |`);
  lines.push('');
  lines.push('The reference rows run restic directly (same flags and environment as the service\'s `restic backup`, no Temporal, no worker, no preflight, retention or manifest) into another fresh repository: the floor any change inside the service can reach on this machine.');
  lines.push('');
  lines.push(`Script split (medians): tar -czf ${f2(median(runs.map((x) => x.script.tar)))} s, upload ${f2(median(runs.map((x) => x.script.upload)))} s; archive ${gib(runs[0]!.script.archiveBytes)}.`);
  lines.push('');
  lines.push('## Goals');
  lines.push('');
  lines.push('| goal | target | measured (median) | result |');
  lines.push('|---|---|---|---|');
  lines.push(`| first backup vs. script | ≤ 1/3 of ${f2(script.median)} s = ${f2(script.median / 3)} s | ${f2(first.median)} s (${ratio(first.median)}) | ${yes(first.median <= script.median / 3)} |`);
  lines.push(`| 1% incremental vs. script | ≤ 1/20 of ${f2(script.median)} s = ${f2(script.median / 20)} s | ${f2(incr.median)} s (${ratio(incr.median)}) | ${yes(incr.median <= script.median / 20)} |`);
  lines.push(`| Temporal's own share a run | < 2 s | first ${f2(overheadFirst.median)} s, incremental ${f2(overheadIncr.median)} s (worst single run ${f2(overheadMax)} s) | ${yes(overheadFirst.median < 2 && overheadIncr.median < 2)} |`);
  lines.push(`| worker peak memory | < 300 MB | ${mb(r.memory.lifetimePeak)} (VmHWM over the worker's life) | ${yes(r.memory.lifetimePeak < 300e6)} |`);
  lines.push('');
  lines.push('## Where the service\'s time goes (medians, seconds)');
  lines.push('');
  lines.push('| | first backup | incremental |');
  lines.push('|---|---:|---:|');
  const row = (label: string, pick: (b: BackupMeasure) => number, fmt = f2): void => {
    lines.push(`| ${label} | ${fmt(m(pick, 'first'))} | ${fmt(m(pick, 'incremental'))} |`);
  };
  row('workflow wall time (client: start call → result)', (b) => b.wall);
  row('history: backup workflow started → completed', (b) => b.historyWall);
  row('`restic backup` process (wrapper)', (b) => b.resticBackupProcess);
  row('`restic backup` per the outcome (`durationSeconds`)', (b) => b.resticBackupOutcome);
  row('other restic processes (sum)', (b) => b.otherRestic.reduce((s, c) => s + c.seconds, 0));
  row('other restic processes (count)', (b) => b.otherRestic.length, (n) => n.toFixed(0));
  row('all restic processes', (b) => b.resticTotal);
  row('activity execution spans (union, the critical path)', (b) => b.activityUnion);
  row('… of which inside activities but outside restic (Node: S3 HeadBucket, manifest walk, ledger signal)', (b) => b.nonResticInActivities);
  row('… of which non-backup activities (preflight, free space, retention, ledger)', (b) => b.nonBackupActivities);
  row('**Temporal overhead** = wall − activity spans', (b) => b.overhead);
  row('… the same from the history (workflow started → completed − activity spans)', (b) => b.overheadHistory);
  row('… activity tasks waiting for the worker (scheduled → started, sum)', (b) => b.activityQueued);
  row('… workflow tasks waiting (sum)', (b) => b.workflowTaskQueued);
  row('… workflow tasks running workflow code (sum)', (b) => b.workflowTaskRunning);
  row('… workflow tasks (count, backup + repository workflows)', (b) => b.workflowTasks, (n) => n.toFixed(0));
  row('… repository child workflow: start initiated → started', (b) => b.childStartLatency);
  row('wall time outside restic (wall − all restic processes)', (b) => b.wall - b.resticTotal);
  lines.push('');
  lines.push('### Activities (medians, seconds: execution span / of which in restic; restic sub-commands)');
  lines.push('');
  lines.push('| activity | first backup | incremental | restic calls |');
  lines.push('|---|---:|---:|---|');
  const names = runs[0]!.first.activities.map((a) => a.name);
  names.forEach((name, index) => {
    const pick = (which: 'first' | 'incremental', field: 'span' | 'resticSeconds'): number => median(runs.map((x) => x[which].activities[index]?.[field] ?? Number.NaN));
    lines.push(`| ${name} | ${f2(pick('first', 'span'))} / ${f2(pick('first', 'resticSeconds'))} | ${f2(pick('incremental', 'span'))} / ${f2(pick('incremental', 'resticSeconds'))} | ${runs[0]!.first.activities[index]!.resticCalls.join(', ') || '—'} |`);
  });
  lines.push('');
  lines.push('### restic invocations other than `backup` (medians, seconds)');
  lines.push('');
  lines.push('| call | first backup | incremental |');
  lines.push('|---|---:|---:|');
  runs[0]!.first.otherRestic.forEach((call, index) => {
    lines.push(`| ${index + 1}. restic ${call.command} | ${f2(median(runs.map((x) => x.first.otherRestic[index]?.seconds ?? Number.NaN)))} | ${f2(median(runs.map((x) => x.incremental.otherRestic[index]?.seconds ?? Number.NaN)))} |`);
  });
  lines.push('');
  lines.push(`restic's fixed cost per invocation (probe repository, medians): process start (\`restic version\`) ${f3(r.fixed.versionSeconds)} s; opening the repository (\`cat config --no-lock\`: start + scrypt key derivation + key and config fetch) ${f3(r.fixed.openSeconds)} s; \`snapshots --json --no-lock\` on a near-empty repository ${f3(r.fixed.snapshotsSeconds)} s; scrypt alone with the repository's parameters (N=${r.fixed.kdf.N}, r=${r.fixed.kdf.r}, p=${r.fixed.kdf.p}, calibrated by \`restic init\`) ${f3(r.fixed.kdfSeconds)} s.`);
  lines.push('');
  lines.push('## Memory');
  lines.push('');
  lines.push(`- Worker process (node, \`src/worker.ts\`): VmHWM at start-up ${mb(r.memory.startupHwm)} (includes bundling the workflows), during the benchmark ${mb(r.memory.benchHwm)}${r.memory.hwmReset ? ' (VmHWM reset after start-up through /proc/<pid>/clear_refs)' : ' (could not reset VmHWM: lifetime value)'}; peak of 100 ms VmRSS samples ${mb(r.memory.sampledWorkerPeak)}.`);
  const probe = r.memory.atPeak;
  if (probe) {
    const p = probe.atPeak;
    lines.push(`- Inside the worker at its highest RSS sample (process.memoryUsage every 250 ms): RSS ${mb(p.rss)} = V8 heap ${mb(p.heapTotal)} (${mb(p.heapUsed)} used) + external/ArrayBuffers ${mb(p.external)} + the rest (the workflow thread's own V8 heap, code, the Rust core-bridge, tsx) ${mb(p.rss - p.heapTotal - p.external)}; highest heapUsed ${mb(probe.maxHeapUsed)}, highest heapTotal ${mb(probe.maxHeapTotal)}.`);
  }
  lines.push(`- restic processes: peak RSS ${mb(1024 * Math.max(...runs.map((x) => x.first.resticPeakRssKb)))} in the first backup, ${mb(1024 * Math.max(...runs.map((x) => x.incremental.resticPeakRssKb)))} in the incremental (GNU time, max over runs).`);
  lines.push(`- Worker + its restic children together (sampled): ${mb(r.memory.sampledTotalPeak)}. Worker RSS peaks by phase: ${Object.entries(r.memory.phasePeaks).map(([phase, v]) => `${phase} ${mb(v.worker)}`).join(', ')}.`);
  lines.push(`- The worker took ${f2(r.memory.workerStartSeconds)} s to start (tsx + workflow bundle). The warm-up backup (the worker's first workflow, tiny tree) took ${f2(r.warmup.wall)} s, of which Temporal overhead ${f2(r.warmup.overhead)} s.`);
  lines.push('');
  lines.push('## Per run');
  lines.push('');
  lines.push('| run | script (tar + upload) | first backup | incremental | data added first / incremental | Temporal overhead first / incremental | restic alone: first / 1% / nothing changed |');
  lines.push('|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of runs) {
    lines.push(`| ${x.run} | ${f2(x.script.total)} (${f2(x.script.tar)} + ${f2(x.script.upload)}) | ${f2(x.first.wall)} | ${f2(x.incremental.wall)} | ${(x.first.dataAdded / 1e6).toFixed(1)} MB / ${(x.incremental.dataAdded / 1e6).toFixed(1)} MB | ${f2(x.first.overhead)} / ${f2(x.incremental.overhead)} | ${f2(x.direct.first)} / ${f2(x.direct.incremental)} / ${f2(x.direct.unchanged)} |`);
  }
  lines.push('');
  lines.push('## Set-up');
  lines.push('');
  lines.push(`- Tree: ${r.tree.files} files, ${gib(r.tree.bytes)} (${(r.tree.textBytes / 1e6).toFixed(0)} MB text, ${(r.tree.pdfBytes / 1e6).toFixed(0)} MB PDFs of random bytes), generator key \`${r.tree.key}\`; ${runs[0]!.mutated.files} files (${(runs[0]!.mutated.bytes / 1e6).toFixed(1)} MB) rewritten for the incremental, a different 1% each run.`);
  lines.push(`- Machine: ${cpus().length} CPUs (nproc ${spawnSync('nproc', [], { encoding: 'utf8' }).stdout.trim()}), ${cpu}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM; load average at start ${r.loadAtStart}.`);
  lines.push(`- Versions: restic ${r.versions.restic}, MinIO ${r.versions.minio} (module ${PINNED_BINARIES.minio.version}), Temporal CLI ${r.versions.temporal} (dev server, SQLite), Node ${process.version}.`);
  lines.push(`- Date: ${new Date().toISOString()}. Code measured: ${r.source.commit}${r.source.dirty.length > 0 ? `, with uncommitted changes in ${r.source.dirty.map((l) => l.slice(3)).join(', ')}` : ', no uncommitted changes under src/'}.`);
  lines.push('- Method: MinIO and the Temporal dev server on loopback, started by the benchmark; the worker in its own process (`node --import tsx --import ./bench/memprobe.mjs src/worker.ts`, LOG_LEVEL=info; the probe only logs process.memoryUsage()); a warm-up backup of a tiny tree before the runs; the tree read once so it is in the page cache for every step; `sync` before each timed step. Each run: the script into bucket `bench-script`; the first backup into a new bucket initialised (untimed) with `initRepositories`; the incremental into the same repository. Timing runs from `client.workflow.execute` to its result. restic runs through a wrapper script that logs start/end/peak RSS (a few ms each). The upload is one PutObject of a file stream with ContentLength and no extra checksum pass (`@aws-sdk/lib-storage` is not installed).');
  return lines.join('\n');
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
