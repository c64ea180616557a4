/**
 * The benchmark's deployment: its own MinIO (and, when a part drives the service, the Temporal
 * dev server and a worker in its own process whose restic runs through the logging wrapper),
 * secrets that exist only for this run, and the config each measured repository gets.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
const ENV_NAMES = { password: 'BENCH_RESTIC_PASSWORD', keyId: 'BENCH_S3_ACCESS_KEY_ID', secret: 'BENCH_S3_SECRET_ACCESS_KEY' };

function configText(opts: { sourceRoot: string; staging: string; repositoryName: string; bucket: string; endpoint: string }): string {
  return stringify({
    deployment: DEPLOYMENT,
    staging: { directory: opts.staging, minFreeSpace: '100MiB' },
    sources: { [SOURCE]: { type: 'files', root: opts.sourceRoot, paths: ['applications'] } },
    repositories: {
      [opts.repositoryName]: {
        type: 's3', endpoint: opts.endpoint, bucket: opts.bucket, region: 'us-east-1', pathStyle: true,
        accessKeyIdEnv: ENV_NAMES.keyId, secretAccessKeyEnv: ENV_NAMES.secret, passwordEnv: ENV_NAMES.password,
      },
    },
    // The policy the dev deployment uses for the same artifacts: retention runs after each backup.
    policies: { [POLICY]: { sources: [SOURCE], repositories: [opts.repositoryName], schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, rpo: '26h', tier: 'high' } },
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
  config: Config;
  repository: Config['repositories'][string];
}

export interface ServiceSide {
  client: Client;
  worker: WorkerProcess;
  sampler: MemorySampler;
  /** Rejects when the worker dies: race it against anything that waits on the worker. */
  workerDied: Promise<never>;
  workerStartSeconds: number;
  startupHwm: number;
  warmup: BackupMeasure;
  /** One backup through `backupWorkflow`, from the start call to its result, analysed. */
  backup(label: string, repo: Repo, runIndex: number): Promise<BackupMeasure>;
  /** Resets the worker's VmHWM, so the next reading is the peak from now on. */
  resetPeak(): boolean;
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
  /** The worker's own config names this source root (backups carry their plan, so any tree will do). */
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
  let worker: WorkerProcess | undefined;
  let connection: Connection | undefined;
  let s3: S3Client | undefined;
  let sampler: MemorySampler | undefined;
  const close = async (): Promise<void> => {
    sampler?.stop();
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
      return { name, bucket, config, repository: config.repositories[name]! };
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
    const memprobeFile = join(work, 'memprobe.jsonl');
    const workerConfigPath = join(work, 'bench.yaml');
    writeFileSync(workerConfigPath, configText({ sourceRoot: options.workerSourceRoot ?? warmupRoot, staging, repositoryName: 'warmup', bucket: 'bench-warmup', endpoint }));
    // Only what the worker reads: no TEMPORAL_*/RESTIC_*/BACKUP_* of the caller's shell.
    const workerEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TEMPORAL_|RESTIC_|BACKUP_|LOG_)/.test(k)));
    Object.assign(workerEnv, secrets, {
      BACKUP_CONFIG: workerConfigPath, BACKUP_HOST: HOST, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace,
      RESTIC_BIN: wrapper.path, RESTIC_CACHE_DIR: resticCache, LOG_LEVEL: 'info', LOG_FORMAT: 'json', BENCH_MEMPROBE_FILE: memprobeFile,
    });

    log('starting the worker (separate process)');
    const workerStart = performance.now();
    worker = await startWorkerProcess(workerEnv, join(work, 'worker.log'));
    const workerProcess = worker;
    const workerStartSeconds = seconds(performance.now() - workerStart);
    const startupHwm = procStatusBytes(worker.pid, 'VmHWM') ?? 0;
    const resetPeak = (): boolean => {
      try {
        writeFileSync(`/proc/${workerProcess.pid}/clear_refs`, '5');
        return true;
      } catch {
        return false;
      }
    };
    const hwmReset = resetPeak();
    sampler = new MemorySampler(worker.pid);
    sampler.start();
    const memorySampler = sampler;
    const workerDied = worker.exited.then((how): never => {
      throw new Error(`the worker exited (${how}) during the benchmark:\n${workerProcess.outputTail()}`);
    });
    workerDied.catch(() => undefined);

    connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection, namespace: temporal.namespace });

    const backup = async (label: string, repo: Repo, runIndex: number): Promise<BackupMeasure> => {
      syncDisks();
      const input = { deployment: repo.config.deployment, policy: POLICY };
      const workflowId = `${DEPLOYMENT}-backup-${label}-${runIndex}-${Date.now()}`;
      const callsBefore = readResticCalls(wrapper.logFile).length;
      memorySampler.setPhase(label);
      const started = performance.now();
      const outcome = await Promise.race([
        client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(DEPLOYMENT), workflowId, args: [input] }),
        workerDied,
      ]);
      const wall = seconds(performance.now() - started);
      memorySampler.setPhase(undefined);
      const calls = readResticCalls(wrapper.logFile).slice(callsBefore);
      return analyse(client, workflowId, wall, outcome, calls);
    };

    // Warm-up (not measured): the worker's first workflow task, activities, ledger and restic.
    log('warm-up backup (not measured)');
    const warmupRepo = await freshRepository(warmupRoot, 'warmup');
    const warmup = await backup('warmup', warmupRepo, 0);

    harness.service = {
      client, worker, sampler, workerDied, workerStartSeconds, startupHwm, warmup, backup, resetPeak,
      peak: () => procStatusBytes(workerProcess.pid, 'VmHWM') ?? 0,
      memory: () => {
        const benchHwm = procStatusBytes(workerProcess.pid, 'VmHWM') ?? 0;
        return {
          startupHwm, benchHwm, hwmReset, lifetimePeak: Math.max(startupHwm, benchHwm),
          sampledWorkerPeak: memorySampler.workerPeak, sampledTotalPeak: memorySampler.totalPeak, phasePeaks: memorySampler.phasePeaks, workerStartSeconds,
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

/** Reads the whole tree once, so every step starts with it in the page cache. */
export function warmPageCache(root: string, paths: string[]): void {
  for (const path of paths) readFileSync(join(root, path));
}
