/**
 * The worker: one process per host. It polls the host's own task queue (activities that read
 * the host's files) and the deployment's shared queue (workflows, dumps, checks).
 * Configuration comes from the environment (see src/config/environment.ts).
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import { NativeConnection, Runtime, Worker } from '@temporalio/worker';
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
import { operatorsReloader } from './operators/reload';
import { resolveBinary } from './servers/binaries';
import { hostTaskQueue, sharedTaskQueue } from './shared/task-queues';
import { temporalConnectionOptions } from './temporal/connection';
import { connectClient } from './temporal/client';
import { diagnoseTls, TemporalTlsError } from './temporal/tls-diagnosis';
import { workflowBundlePath } from './workflow-bundle';
import type { Client } from '@temporalio/client';

export interface RunningWorker {
  /** Resolves when both workers have stopped. */
  done: Promise<void>;
  /** Stop polling; running activities get the grace time to finish, then are cancelled and retried elsewhere. */
  shutdown(): Promise<void>;
  taskQueues: { shared: string; host: string };
  /**
   * http://host:port of /health and /metrics, when config.monitoring.port (or BACKUP_MONITORING_PORT)
   * is set and this worker holds the port (another worker on this host may hold it: then unset
   * until that one stops and this one takes the port over).
   */
  readonly monitoringUrl?: string;
}

export interface StartWorkerOptions {
  config: Config;
  environment: WorkerEnvironment;
  logger: Logger;
  /** Environment the activities read secrets from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** How long running activities may finish once the worker stops. Default: BACKUP_SHUTDOWN_GRACE, else 30 s. */
  shutdownGraceTime?: Duration;
}

/** The young generation's semi-space (MB) of isolates created after the worker starts: the workflow thread's. */
export const WORKFLOW_THREAD_SEMI_SPACE_MB = 4;

/** How often a worker whose monitoring port another process holds tries to take it. */
export const MONITORING_PORT_RETRY_MS = 5_000;

// One listener per signal for all the workers of this process (tests start several in one).
const drainOnSignal = new Set<(signal: NodeJS.Signals) => void>();
const onShutdownSignal = (signal: NodeJS.Signals) => {
  // Once, like the Runtime's own hook: a second SIGTERM or Ctrl-C ends the process at once.
  for (const name of Runtime.instance().options.shutdownSignals) process.off(name, onShutdownSignal);
  for (const drain of drainOnSignal) drain(signal);
};
function drainOnShutdownSignal(drain: (signal: NodeJS.Signals) => void): () => void {
  if (drainOnSignal.size === 0) for (const name of Runtime.instance().options.shutdownSignals) process.on(name, onShutdownSignal);
  drainOnSignal.add(drain);
  return () => {
    drainOnSignal.delete(drain);
    if (drainOnSignal.size === 0) for (const name of Runtime.instance().options.shutdownSignals) process.off(name, onShutdownSignal);
  };
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

export async function startWorker({ config, environment, logger, env = process.env, shutdownGraceTime: callerGrace }: StartWorkerOptions): Promise<RunningWorker> {
  // The caller's grace, else BACKUP_SHUTDOWN_GRACE, else the default (test/compose.test.ts reads it here).
  let shutdownGraceTime = '30 seconds' as Duration;
  shutdownGraceTime = callerGrace ?? environment.shutdownGraceMs ?? shutdownGraceTime;
  const graceMs = msToNumber(shutdownGraceTime);
  registerConfiguredSecrets(config, env);
  installTemporalRuntimeLogger(logger);
  configureStallDetection(config.stallAfter);
  const connectionOptions = temporalConnectionOptions(environment);
  const connection = await NativeConnection.connect(connectionOptions).catch(async (error: unknown) => {
    throw (await diagnoseTls(connectionOptions)) ?? error;
  });
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
    // Operators are read again from the config file at each verification: a revoked key counts from the next request.
    ...(config.operators && environment.configPath ? { reloadOperators: operatorsReloader(environment.configPath, config) } : {}),
  });
  const taskQueues = { shared: sharedTaskQueue(config.deployment), host: hostTaskQueue(config.deployment, environment.host) };
  // Heartbeats carry restic's progress: send them every 2 s (the default waits up to 80% of the
  // heartbeat timeout), so the progress bar and a crashed attempt's successor see fresh details.
  // The host (BACKUP_HOST) and the config's digest in the identity: the history says which host ran
  // each activity, and doctor reads every poller's digest and says when workers disagree.
  const identity = `${process.pid}@${hostname()} host=${environment.host} config=${configDigest(config)}`;
  const common = { connection, namespace: environment.temporal.namespace, activities, shutdownGraceTime, maxHeartbeatThrottleInterval: '2 seconds' as const, identity, interceptors: { activity: [scrubActivityFailures] } };
  const cache = environment.workflowCacheSize === undefined ? {} : { maxCachedWorkflows: environment.workflowCacheSize };
  // The SDK runs workflows in a worker thread, a V8 isolate of its own whose young generation V8
  // sizes from the host's memory (new space up to 128 MB measured on a 23.5 GiB host); workflow
  // code allocates little, so 4 MB semi-spaces cost it no time and the worker about 15 MB less
  // resident memory (measured through bench/harness.ts). The flag is read when an isolate is
  // created: it applies to every thread started from now on, not to the main thread's (that one
  // takes it from the node command line, and a value given there is left alone).
  if (![...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((arg) => arg.includes('--max-semi-space-size'))) setFlagsFromString(`--max-semi-space-size=${WORKFLOW_THREAD_SEMI_SPACE_MB}`);
  const shared = await Worker.create({ ...common, ...cache, taskQueue: taskQueues.shared, workflowBundle: { codePath: await workflowBundlePath() } });
  const host = await Worker.create({ ...common, taskQueue: taskQueues.host });
  logger.info({ taskQueues, namespace: environment.temporal.namespace, address: environment.temporal.address }, 'worker started');
  let monitoring: MonitoringServer | undefined;
  let monitoringRetry: NodeJS.Timeout | undefined;
  let heartbeat: WorkerHeartbeat | undefined;
  let drainingSince: number | undefined;
  let graceOver: NodeJS.Timeout | undefined;
  const runningActivities = () => shared.getStatus().numInFlightNonLocalActivities + host.getStatus().numInFlightNonLocalActivities;
  const stopWorkers = () => {
    for (const worker of [shared, host]) if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  // Stopping drains: no new tasks are polled, running activities get the grace time to finish; what
  // is still running then is cancelled and Temporal retries it on another worker (of this host's queue).
  const drain = (reason: string) => {
    if (drainingSince !== undefined || ![shared, host].some((worker) => worker.getState() === 'RUNNING')) return;
    drainingSince = Date.now();
    const running = runningActivities();
    logger.info({ reason, runningActivities: running, graceMs }, `draining (${reason}): polling stopped, ${running} activities running, up to ${seconds(graceMs)} for them to finish`);
    stopWorkers();
    if (running > 0) {
      graceOver = setTimeout(() => {
        const left = runningActivities();
        if (left > 0) logger.warn({ runningActivities: left, graceMs }, `draining: the grace time (${seconds(graceMs)}) is over, ${left} activities still running are cancelled; Temporal retries them on another worker (BACKUP_SHUTDOWN_GRACE sets the grace)`);
      }, graceMs);
      graceOver.unref();
    }
  };
  const stopDrainingOnSignal = drainOnShutdownSignal((signal) => drain(signal));
  // The monitoring server and the heartbeat go with the workers, also when one of them fails.
  const done = Promise.all([shared.run(), host.run()]).finally(() => {
    stopDrainingOnSignal();
    clearInterval(monitoringRetry);
    clearTimeout(graceOver);
    return Promise.all([monitoring?.close(), heartbeat?.stop()]);
  }).then(async () => {
    await connection.close();
    if (client) await (await client.catch(() => undefined))?.connection.close();
    if (drainingSince === undefined) logger.info('worker stopped');
    else logger.info({ drainedMs: Date.now() - drainingSince }, `worker stopped: drained in ${seconds(Date.now() - drainingSince)}`);
  });
  const monitoringPort = environment.monitoringPort ?? config.monitoring.port;
  if (monitoringPort !== undefined) {
    const probes = createProbes({ config, host: environment.host, env, client: temporalClient, logger });
    const listen = () => startMonitoringServer({ config, host: config.monitoring.host, port: monitoringPort, read: () => probes.read(), logger });
    const announce = (server: MonitoringServer) => logger.info({ endpoint: server.url }, `health at ${server.url}/health, metrics at ${server.url}/metrics`);
    try {
      monitoring = await listen();
      announce(monitoring);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
        // Any other refusal (an address not on this host, a privileged port) is a config error: say it and stop, rather than run unwatched.
        stopWorkers();
        await done.catch(() => undefined);
        throw error;
      }
      // Another process holds the port: on a host with two workers (a rolling restart starts the new
      // one before stopping the old) the other worker serves /health and /metrics. This one runs on
      // and takes the port when it is freed, so the endpoints come back once the other has stopped.
      logger.warn({ host: config.monitoring.host, port: monitoringPort },
        `monitoring: another process on this host holds ${config.monitoring.host}:${monitoringPort} (monitoring.port; another worker, during a rolling restart?): this worker serves no /health or /metrics until it is free; it tries again every ${seconds(MONITORING_PORT_RETRY_MS)} (BACKUP_MONITORING_PORT gives it a port of its own)`);
      let trying = false;
      monitoringRetry = setInterval(() => {
        if (trying) return;
        trying = true;
        listen().then(async (server) => {
          clearInterval(monitoringRetry);
          if (drainingSince !== undefined || ![shared, host].every((worker) => worker.getState() === 'RUNNING')) return server.close();
          monitoring = server;
          announce(server);
        }, (retryError: unknown) => logger.debug({ error: String(retryError) }, 'monitoring: the port is still taken')).finally(() => (trying = false));
      }, MONITORING_PORT_RETRY_MS);
      monitoringRetry.unref();
    }
  }
  // Only while both still run: once they have stopped, nothing would stop the heartbeat again.
  if (config.monitoring.heartbeatUrlEnv !== undefined && [shared, host].every((worker) => worker.getState() === 'RUNNING')) {
    heartbeat = startConfiguredHeartbeat({
      urlEnv: config.monitoring.heartbeatUrlEnv, everyMs: parseDuration(config.monitoring.heartbeatEvery)!, env, host: environment.host,
      taskQueues, temporalAddress: environment.temporal.address, namespace: environment.temporal.namespace, connection, workers: [shared, host], logger,
    });
  }
  return {
    done,
    taskQueues,
    get monitoringUrl() {
      return monitoring?.url;
    },
    async shutdown() {
      drain('shutdown');
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

export async function main(): Promise<void> {
  const environment = readEnvironment();
  const logger = createLogger({ level: environment.logLevel, format: environment.logFormat, name: 'worker' });
  if (!environment.configPath) {
    logger.fatal('BACKUP_CONFIG is not set: point it at the config file (see examples/)');
    process.exit(2);
  }
  const config = loadConfig(environment.configPath);
  warnMissingSourceFolders(config, environment, logger);
  // SIGINT/SIGTERM (the Runtime's shutdown signals) drain the worker: polling ends, running
  // activities get the grace time (BACKUP_SHUTDOWN_GRACE), then the process exits 0.
  const worker = await startWorker({ config, environment, logger });
  await worker.done;
}

if (require.main === module) {
  main().catch((error: unknown) => {
    const fix = error instanceof TemporalTlsError ? `\n  fix: ${error.fix}` : '';
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}${fix}\n`);
    process.exit(1);
  });
}
