/**
 * The worker: one process per host. It polls the host's own task queue (activities that read
 * the host's files) and the deployment's shared queue (workflows, dumps, checks).
 * Configuration comes from the environment (see src/config/environment.ts).
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Duration } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from './activities';
import { scrubActivityFailures } from './activities/failures';
import { configureStallDetection } from './activities/heartbeat';
import { readEnvironment, type WorkerEnvironment } from './config/environment';
import { configDigest } from './config/digest';
import { loadConfig } from './config/load';
import { registerConfiguredSecrets } from './config/secrets';
import type { Config } from './config/schema';
import { createLogger, type Logger } from './logging/logger';
import { installTemporalRuntimeLogger } from './logging/temporal-runtime';
import { createProbes } from './monitoring/probes';
import { startMonitoringServer, type MonitoringServer } from './monitoring/server';
import { startConfiguredHeartbeat, type WorkerHeartbeat } from './monitoring/worker-heartbeat';
import { parseDuration } from './config/units';
import { resolveBinary } from './servers/binaries';
import { hostTaskQueue, sharedTaskQueue } from './shared/task-queues';
import { temporalConnectionOptions } from './temporal/connection';
import { connectClient } from './temporal/client';
import { workflowBundlePath } from './workflow-bundle';
import type { Client } from '@temporalio/client';

export interface RunningWorker {
  /** Resolves when both workers have stopped. */
  done: Promise<void>;
  /** Stop polling; running activities get the grace time to finish, then are cancelled and retried elsewhere. */
  shutdown(): Promise<void>;
  taskQueues: { shared: string; host: string };
  /** http://host:port of /health and /metrics, when config.monitoring.port is set. */
  monitoringUrl?: string;
}

export interface StartWorkerOptions {
  config: Config;
  environment: WorkerEnvironment;
  logger: Logger;
  /** Environment the activities read secrets from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  shutdownGraceTime?: Duration;
}

export async function startWorker({ config, environment, logger, env = process.env, shutdownGraceTime = '30 seconds' }: StartWorkerOptions): Promise<RunningWorker> {
  registerConfiguredSecrets(config, env);
  installTemporalRuntimeLogger(logger);
  configureStallDetection(config.stallAfter);
  const connection = await NativeConnection.connect(temporalConnectionOptions(environment));
  let resticPath: Promise<string> | undefined;
  let client: Promise<Client> | undefined;
  // Connected on first use; a failed attempt is forgotten, so the next caller tries again.
  const temporalClient = (): Promise<Client> => (client ??= connectClient(environment).catch((error: unknown) => {
    client = undefined;
    throw error;
  }));
  const activities = createActivities({
    logger,
    env,
    config,
    host: environment.host,
    resticBin: () => (resticPath ??= resolveBinary('restic', { build: false })),
    temporalClient,
  });
  const taskQueues = { shared: sharedTaskQueue(config.deployment), host: hostTaskQueue(config.deployment, environment.host) };
  // Heartbeats carry restic's progress: send them every 2 s (the default waits up to 80% of the
  // heartbeat timeout), so the progress bar and a crashed attempt's successor see fresh details.
  // The config's digest in the identity: doctor reads every poller's and says when workers disagree.
  const identity = `${process.pid}@${hostname()} config=${configDigest(config)}`;
  const common = { connection, namespace: environment.temporal.namespace, activities, shutdownGraceTime, maxHeartbeatThrottleInterval: '2 seconds' as const, identity, interceptors: { activity: [scrubActivityFailures] } };
  const cache = environment.workflowCacheSize === undefined ? {} : { maxCachedWorkflows: environment.workflowCacheSize };
  const shared = await Worker.create({ ...common, ...cache, taskQueue: taskQueues.shared, workflowBundle: { codePath: await workflowBundlePath() } });
  const host = await Worker.create({ ...common, taskQueue: taskQueues.host });
  logger.info({ taskQueues, namespace: environment.temporal.namespace, address: environment.temporal.address }, 'worker started');
  let monitoring: MonitoringServer | undefined;
  let heartbeat: WorkerHeartbeat | undefined;
  // The monitoring server and the heartbeat go with the workers, also when one of them fails.
  const done = Promise.all([shared.run(), host.run()]).finally(() => Promise.all([monitoring?.close(), heartbeat?.stop()])).then(async () => {
    await connection.close();
    if (client) await (await client.catch(() => undefined))?.connection.close();
    logger.info('worker stopped');
  });
  const stopWorkers = () => {
    for (const worker of [shared, host]) if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  if (config.monitoring.port !== undefined) {
    try {
      const probes = createProbes({ config, host: environment.host, env, client: temporalClient, logger });
      monitoring = await startMonitoringServer({ config, host: config.monitoring.host, port: config.monitoring.port, read: () => probes.read(), logger });
    } catch (error) {
      // A taken port is a config error: say it and stop, rather than run unwatched.
      stopWorkers();
      await done.catch(() => undefined);
      throw error;
    }
    logger.info({ endpoint: monitoring.url }, `health at ${monitoring.url}/health, metrics at ${monitoring.url}/metrics`);
  }
  // Only while both still run: once they have stopped, nothing would stop the heartbeat again.
  if (config.monitoring.heartbeatUrlEnv !== undefined && [shared, host].every((worker) => worker.getState() === 'RUNNING')) {
    heartbeat = startConfiguredHeartbeat({
      urlEnv: config.monitoring.heartbeatUrlEnv, everyMs: parseDuration(config.monitoring.heartbeatEvery)!, env, host: environment.host,
      taskQueues, temporalAddress: environment.temporal.address, connection, workers: [shared, host], logger,
    });
  }
  return {
    done,
    taskQueues,
    ...(monitoring ? { monitoringUrl: monitoring.url } : {}),
    async shutdown() {
      stopWorkers();
      await Promise.all([monitoring?.close(), heartbeat?.stop()]);
      await done;
    },
  };
}

/**
 * A missing source folder does not stop the worker: on a rebuilt host it is what must be
 * restored. It is said once at start (by `npm run worker` and `backupctl worker` alike); doctor
 * reports it and that source's backups fail SourceMissing.
 */
export function warnMissingSourceFolders(config: Config, environment: WorkerEnvironment, logger: Logger): void {
  for (const [name, source] of Object.entries(config.sources)) {
    if ((source.type !== 'files' && source.type !== 'secrets') || (source.host ?? environment.host) !== environment.host) continue;
    const missing = [source.root, ...source.paths.map((p) => resolve(source.root, p))].filter((p) => !existsSync(p));
    if (missing.length > 0) {
      logger.warn({ source: name, missing: missing.slice(0, 5) }, `source ${name}: ${missing[0]} does not exist on this host; its backups fail until it is back (backupctl restore --source ${name} --in-place --yes, or fix sources.${name})`);
    }
  }
}

async function main(): Promise<void> {
  const environment = readEnvironment();
  const logger = createLogger({ level: environment.logLevel, format: environment.logFormat, name: 'worker' });
  if (!environment.configPath) {
    logger.fatal('BACKUP_CONFIG is not set: point it at the config file (see examples/)');
    process.exit(2);
  }
  const config = loadConfig(environment.configPath);
  warnMissingSourceFolders(config, environment, logger);
  // Worker.run() already stops on SIGINT/SIGTERM (the Runtime's shutdown signals): polling
  // ends, running activities get the grace time, then the process exits.
  const worker = await startWorker({ config, environment, logger });
  await worker.done;
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
