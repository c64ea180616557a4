/**
 * The benchmark's deployment: its own MinIO (and, when a part drives the service, the Temporal
 * dev server and a worker in its own process whose restic runs through the logging wrapper),
 * secrets that exist only for this run, and the config each measured repository gets.
 *
 * The worker resolves a backup's plan from its own config, read at start: its config names the
 * repository the service backs up into (and that repository's source root) beside a small
 * warm-up policy. A backup into another repository first restarts the worker with a config that
 * names it (`bind`) and runs the warm-up backup (not measured), so every measured backup meets
 * a worker past its one-off costs. Memory figures cover every worker the run started.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, DeleteBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { resolveBinaryInfo, type ResolvedBinary } from '../src/servers/binaries';
import { startMinio, startTemporal, type MinioServer, type TemporalServer } from '../src/servers/processes';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow } from '../src/workflows';
import { emptyBucket, log, procStatusBytes, seconds, syncDisks } from './common';
import { analyse, type BackupMeasure } from './history';
import { MemorySampler, peakBreakdown, readResticCalls, startWorkerProcess, writeResticWrapper, type WorkerProcess } from './worker-process';

export const DEPLOYMENT = 'bench';
export const POLICY = 'applications';
export const SOURCE = 'applications';
export const HOST = 'bench-host';
/** The warm-up policy's source and repository in the worker's config. */
const WARMUP = 'harness-warmup';
const ENV_NAMES = { password: 'BENCH_RESTIC_PASSWORD', keyId: 'BENCH_S3_ACCESS_KEY_ID', secret: 'BENCH_S3_SECRET_ACCESS_KEY' };

function configText(opts: { sourceRoot: string; staging: string; repositoryName: string; bucket: string; endpoint: string; warmup?: { root: string; bucket: string } }): string {
  const repository = (bucket: string): Record<string, unknown> => ({
    type: 's3', endpoint: opts.endpoint, bucket, region: 'us-east-1', pathStyle: true,
    accessKeyIdEnv: ENV_NAMES.keyId, secretAccessKeyEnv: ENV_NAMES.secret, passwordEnv: ENV_NAMES.password,
  });
  // The policy the dev deployment uses for the same artifacts: retention runs after each backup.
  const policy = (source: string, repositoryName: string): Record<string, unknown> => ({ sources: [source], repositories: [repositoryName], schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, rpo: '26h', tier: 'high' });
  const warmup = opts.warmup;
  return stringify({
    deployment: DEPLOYMENT,
    staging: { directory: opts.staging, minFreeSpace: '100MiB' },
    // Restores (bench/restore.ts) go into the run's own folder, beside the staging folder.
    restore: { allowedRoots: [dirname(opts.staging)] },
    sources: { [SOURCE]: { type: 'files', root: opts.sourceRoot, paths: ['applications'] }, ...(warmup ? { [WARMUP]: { type: 'files', root: warmup.root, paths: ['applications'] } } : {}) },
    repositories: { [opts.repositoryName]: repository(opts.bucket), ...(warmup ? { [WARMUP]: repository(warmup.bucket) } : {}) },
    policies: { [POLICY]: policy(SOURCE, opts.repositoryName), ...(warmup ? { [WARMUP]: policy(WARMUP, WARMUP) } : {}) },
  });
}

export interface WorkerMemory {
  startupHwm: number;
  benchHwm: number;
  hwmReset: boolean;
  lifetimePeak: number;
  sampledWorkerPeak: number;
  sampledTotalPeak: number;
  phasePeaks: Record<string, { worker: number; total: number }>;
  workerStartSeconds: number;
  atPeak: ReturnType<typeof peakBreakdown>;
}

export interface Repo {
  name: string;
  bucket: string;
  /** The folder that holds `applications/`. */
  sourceRoot: string;
  config: Config;
  repository: Config['repositories'][string];
}

export interface ServiceSide {
  client: Client;
  /** The worker running now (`bind` starts another). */
  readonly worker: WorkerProcess;
  readonly sampler: MemorySampler;
  /** Rejects when the worker running now dies: race it against anything that waits on the worker. */
  readonly workerDied: Promise<never>;
  /** The first worker's start-up. */
  workerStartSeconds: number;
  startupHwm: number;
  /** The first worker's warm-up backup. */
  warmup: BackupMeasure;
  /** Restarts the worker with a config that names `repo` (and its source root) unless it does already; warms it up. */
  bind(repo: Repo): Promise<void>;
  /** One backup through `backupWorkflow` into `repo` (bound first), from the start call to its result, analysed. */
  backup(label: string, repo: Repo, runIndex: number): Promise<BackupMeasure>;
  /** Resets the running worker's VmHWM, so the next reading is the peak from now on. */
  resetPeak(): boolean;
  /** The running worker's VmHWM. */
  peak(): number;
  memory(): WorkerMemory;
}

export interface Harness {
  work: string;
  restic: ResolvedBinary;
  versions: { restic: string; minio: string; temporal: string };
  minio: MinioServer;
  secrets: Record<string, string>;
  password: string;
  /** The caller's environment plus the run's secrets (what restic reads through the config's *Env names). */
  env: NodeJS.ProcessEnv;
  resticCache: string;
  wrapper: { path: string; logFile: string };
  s3: S3Client;
  configFor(sourceRoot: string, repositoryName: string, bucket: string): Config;
  /** A new bucket and an initialised repository in it (untimed). */
  freshRepository(sourceRoot: string, name: string): Promise<Repo>;
  /** Empties and deletes a repository's bucket: a full run writes tens of GiB otherwise. */
  dropRepository(repo: Repo): Promise<void>;
  service?: ServiceSide;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Start Temporal and a worker (parts that go through the service). */
  service: boolean;
  /** Unused: the worker's config names the source root of the repository it is bound to. */
  workerSourceRoot?: string;
}

export async function startHarness(options: HarnessOptions): Promise<Harness> {
  const [restic, minioBin, temporalBin] = await Promise.all([
    resolveBinaryInfo('restic', { logger: log }),
    resolveBinaryInfo('minio', { logger: log }),
    options.service ? resolveBinaryInfo('temporal', { logger: log }) : Promise.resolve(undefined),
  ]);
  const work = mkdtempSync(join(tmpdir(), 'bench-'));
  let minio: MinioServer | undefined;
  let temporal: TemporalServer | undefined;
  let current: Incarnation | undefined;
  let connection: Connection | undefined;
  let s3: S3Client | undefined;
  const close = async (): Promise<void> => {
    if (current) await retire(current);
    await connection?.close();
    s3?.destroy();
    await Promise.all([minio?.stop(), temporal?.stop()]);
    rmSync(work, { recursive: true, force: true });
  };
  try {
    [minio, temporal] = await Promise.all([startMinio({ bin: minioBin.path }), temporalBin ? startTemporal({ bin: temporalBin.path }) : Promise.resolve(undefined)]);
    log(`MinIO ${minio.endpoint}${temporal ? `, Temporal ${temporal.address}` : ''}`);
    const password = `bench-${randomBytes(12).toString('hex')}`;
    const secrets: Record<string, string> = { [ENV_NAMES.password]: password, [ENV_NAMES.keyId]: minio.accessKeyId, [ENV_NAMES.secret]: minio.secretAccessKey };
    const env: NodeJS.ProcessEnv = { ...process.env, ...secrets };
    const staging = join(work, 'staging');
    const resticCache = join(work, 'restic-cache');
    mkdirSync(staging, { recursive: true });
    mkdirSync(resticCache, { recursive: true });
    const wrapper = writeResticWrapper(work, restic.path);
    s3 = new S3Client({
      endpoint: minio.endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey },
      // No extra CRC pass over the gigabyte: the script's baseline is as cheap as an upload gets.
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    const endpoint = minio.endpoint;
    const configFor = (sourceRoot: string, repositoryName: string, bucket: string): Config =>
      parseConfig(configText({ sourceRoot, staging, repositoryName, bucket, endpoint }), `${repositoryName}.yaml`, { env });
    const freshRepository = async (sourceRoot: string, name: string): Promise<Repo> => {
      const bucket = `bench-${name}-${randomBytes(3).toString('hex')}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');
      const config = configFor(sourceRoot, name, bucket);
      await initRepositories(config, restic.path, [name], env);
      return { name, bucket, sourceRoot, config, repository: config.repositories[name]! };
    };
    const s3Client = s3;
    const dropRepository = async (repo: Repo): Promise<void> => {
      await emptyBucket(s3Client, repo.bucket);
      await s3Client.send(new DeleteBucketCommand({ Bucket: repo.bucket }));
    };
    await s3.send(new CreateBucketCommand({ Bucket: 'bench-script' }));

    const harness: Harness = {
      work, restic, minio, secrets, password, env, resticCache, wrapper, s3, configFor, freshRepository, dropRepository, close,
      versions: { restic: restic.version ?? '?', minio: minioBin.version ?? '?', temporal: temporalBin?.version ?? '?' },
    };
    if (!options.service || !temporal) return harness;

    // A small warm-up source: the first workflow task and activity of a fresh worker pay one-off costs.
    const warmupRoot = join(work, 'warmup');
    for (let i = 0; i < 20; i++) {
      mkdirSync(join(warmupRoot, 'applications', `Company ${i}`), { recursive: true });
      writeFileSync(join(warmupRoot, 'applications', `Company ${i}`, 'CV.md'), `# warm-up ${i}\n`);
    }
    const warmupRepo = await freshRepository(warmupRoot, WARMUP);
    const memprobeFile = join(work, 'memprobe.jsonl');
    const workerConfigPath = join(work, 'bench.yaml');
    // Only what the worker reads: no TEMPORAL_*/RESTIC_*/BACKUP_* of the caller's shell.
    const workerEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TEMPORAL_|RESTIC_|BACKUP_|LOG_)/.test(k)));
    Object.assign(workerEnv, secrets, {
      BACKUP_CONFIG: workerConfigPath, BACKUP_HOST: HOST, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace,
      RESTIC_BIN: wrapper.path, RESTIC_CACHE_DIR: resticCache, LOG_LEVEL: 'info', LOG_FORMAT: 'json', BENCH_MEMPROBE_FILE: memprobeFile,
    });
    connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection, namespace: temporal.namespace });
    const retired = new MemorySampler(0); // the peaks of the workers that were stopped
    let retiredHwm = 0;

    const launch = async (repo: Repo): Promise<Incarnation> => {
      writeFileSync(workerConfigPath, configText({ sourceRoot: repo.sourceRoot, staging, repositoryName: repo.name, bucket: repo.bucket, endpoint, warmup: { root: warmupRoot, bucket: warmupRepo.bucket } }));
      log(`starting the worker (separate process), its config naming repository ${repo.name}`);
      const workerStart = performance.now();
      const worker = await startWorkerProcess(workerEnv, join(work, 'worker.log'));
      const startSeconds = seconds(performance.now() - workerStart);
      const startupHwm = procStatusBytes(worker.pid, 'VmHWM') ?? 0;
      const sampler = new MemorySampler(worker.pid);
      sampler.start();
      const died = worker.exited.then((how): never => {
        throw new Error(`the worker exited (${how}) during the benchmark:\n${worker.outputTail()}`);
      });
      died.catch(() => undefined);
      return { worker, sampler, died, startSeconds, startupHwm, hwmReset: resetHwm(worker.pid), repo };
    };

    const run = async (incarnation: Incarnation, label: string, policy: string, runIndex: number): Promise<BackupMeasure> => {
      syncDisks();
      const input = { deployment: DEPLOYMENT, policy };
      const workflowId = `${DEPLOYMENT}-backup-${label}-${runIndex}-${Date.now()}`;
      const callsBefore = readResticCalls(wrapper.logFile).length;
      incarnation.sampler.setPhase(label);
      const started = performance.now();
      const outcome = await Promise.race([
        client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(DEPLOYMENT), workflowId, args: [input] }),
        incarnation.died,
      ]).catch((error: unknown): never => {
        // The client's error says only "Workflow execution failed": name the causes and the worker's last words.
        const causes: string[] = [];
        for (let e: unknown = error; e instanceof Error && causes.length < 6; e = e.cause) causes.push(`${e.name}: ${e.message}`);
        throw new Error(`backup ${workflowId} failed: ${causes.join(' <- ')}\nworker output (tail):\n${incarnation.worker.outputTail()}`, { cause: error });
      });
      const wall = seconds(performance.now() - started);
      incarnation.sampler.setPhase(undefined);
      const calls = readResticCalls(wrapper.logFile).slice(callsBefore);
      return analyse(client, workflowId, wall, outcome, calls);
    };

    // Warm-up (not measured): the worker's first workflow task, activities, ledger and restic.
    const warmUp = async (incarnation: Incarnation): Promise<BackupMeasure> => {
      log('warm-up backup (not measured)');
      return run(incarnation, 'warmup', WARMUP, 0);
    };
    const first = await launch(warmupRepo);
    current = first;
    const warmup = await warmUp(first);

    const bind = async (repo: Repo): Promise<void> => {
      if (current?.repo.name === repo.name && current.repo.bucket === repo.bucket && current.repo.sourceRoot === repo.sourceRoot) return;
      if (current) {
        retiredHwm = Math.max(retiredHwm, procStatusBytes(current.worker.pid, 'VmHWM') ?? 0);
        retired.absorb(current.sampler);
        await retire(current);
        current = undefined;
      }
      const next = await launch(repo);
      current = next;
      await warmUp(next);
    };
    const running = (): Incarnation => {
      if (!current) throw new Error('no worker is running');
      return current;
    };

    harness.service = {
      client, warmup, bind,
      get worker() { return running().worker; },
      get sampler() { return running().sampler; },
      get workerDied() { return running().died; },
      workerStartSeconds: first.startSeconds,
      startupHwm: first.startupHwm,
      backup: async (label, repo, runIndex) => {
        await bind(repo);
        return run(running(), label, POLICY, runIndex);
      },
      resetPeak: () => resetHwm(running().worker.pid),
      peak: () => procStatusBytes(running().worker.pid, 'VmHWM') ?? 0,
      memory: () => {
        const now = running();
        const benchHwm = Math.max(retiredHwm, procStatusBytes(now.worker.pid, 'VmHWM') ?? 0);
        const sampled = new MemorySampler(0);
        sampled.absorb(retired);
        sampled.absorb(now.sampler);
        return {
          startupHwm: first.startupHwm, benchHwm, hwmReset: first.hwmReset, lifetimePeak: Math.max(first.startupHwm, benchHwm),
          sampledWorkerPeak: sampled.workerPeak, sampledTotalPeak: sampled.totalPeak, phasePeaks: sampled.phasePeaks, workerStartSeconds: first.startSeconds,
          atPeak: peakBreakdown(memprobeFile),
        };
      },
    };
    return harness;
  } catch (error) {
    await close();
    throw error;
  }
}

/** One worker process, its config naming `repo`. */
interface Incarnation {
  worker: WorkerProcess;
  sampler: MemorySampler;
  died: Promise<never>;
  startSeconds: number;
  startupHwm: number;
  hwmReset: boolean;
  repo: Repo;
}

/** Resets a process's VmHWM to its RSS now (clear_refs 5), so the next reading is the peak from now on. */
function resetHwm(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

async function retire(incarnation: Incarnation): Promise<void> {
  incarnation.sampler.stop();
  const child = incarnation.worker.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await incarnation.worker.exited;
  clearTimeout(timer);
}

/** Reads the whole tree once, so every step starts with it in the page cache. */
export function warmPageCache(root: string, paths: string[]): void {
  for (const path of paths) readFileSync(join(root, path));
}
