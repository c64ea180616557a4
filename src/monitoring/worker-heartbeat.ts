/**
 * The worker's own pings to an outside monitor (`monitoring.heartbeatUrlEnv`). Everything inside
 * (the ledger's dead man's switch, the alerts) needs a worker and Temporal; this is what tells
 * somebody outside that they are gone: the monitor alerts when the pings stop.
 *
 * Every `heartbeatEvery`, while the worker runs: Temporal answers and both workers are RUNNING →
 * POST <url>; Temporal does not answer → POST <url>/fail with the error; a worker stopping or
 * stopped → nothing (silence is the signal). A ping that fails is logged and never stops the worker.
 */
import type { NativeConnection, Worker } from '@temporalio/worker';
import { scrubSecrets, type Logger } from '../logging/logger';
import { heartbeatOrigin, postHeartbeat } from './heartbeat-ping';

export interface WorkerHeartbeatOptions {
  /** The ping URL (a secret: only its origin is logged). */
  url: string;
  everyMs: number;
  /** Resolves when Temporal answers, rejects with why not; should give up after about `timeoutMs`. */
  temporalAnswers: (timeoutMs: number) => Promise<void>;
  /** Whether every worker of this process still polls (not stopping, stopped or failed). */
  workersRunning: () => boolean;
  /** Who pings: host, pid, task queues; the start of every ping's body. */
  describe: string;
  /** Named in the /fail body, e.g. "Temporal at 127.0.0.1:7233". */
  temporal: string;
  logger: Logger;
}

export interface WorkerHeartbeat {
  /** No ping starts after this resolves; one under way is aborted. Safe to call twice. */
  stop(): Promise<void>;
}

/** Each step's time limit: well inside the period, at most 10 s. */
function stepTimeoutMs(everyMs: number): number {
  return Math.min(10_000, Math.max(500, Math.floor(everyMs / 2)));
}

/** Rejects when the signal aborts: a call that ignores it is not waited for. */
function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason as Error);
    else signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
  });
}

export function startWorkerHeartbeat(options: WorkerHeartbeatOptions): WorkerHeartbeat {
  const { url, everyMs, logger } = options;
  const monitor = heartbeatOrigin(url);
  const timeoutMs = stepTimeoutMs(everyMs);
  const stopping = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;
  // The native client retries an unreachable server for seconds and cannot be cancelled: a check
  // still under way is awaited again by the next beat rather than started twice.
  let check: Promise<void> | undefined;
  let temporalDown = false;
  let pingsFailing = false;

  const beat = async (): Promise<void> => {
    if (!options.workersRunning()) return;
    let problem: string | undefined;
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const answered = (check ??= options.temporalAnswers(timeoutMs).finally(() => {
        check = undefined;
      }));
      answered.catch(() => undefined); // one that outlives its beat fails unobserved
      await Promise.race([answered, whenAborted(AbortSignal.any([timeout, stopping.signal]))]);
    } catch (error) {
      problem = timeout.aborted ? `no answer within ${timeoutMs / 1000} s` : scrubSecrets(error instanceof Error ? error.message : String(error));
    }
    // Shut down while Temporal was asked: say nothing rather than a false success or failure.
    if (stopping.signal.aborted || !options.workersRunning()) return;
    if (problem !== undefined && !temporalDown) logger.warn({ monitor, err: problem }, `${options.temporal} does not answer: the outside monitor is told (/fail) every ${everyMs / 1000} s until it does`);
    if (problem === undefined && temporalDown) logger.info({ monitor }, `${options.temporal} answers again: success pings resume`);
    temporalDown = problem !== undefined;
    const body = problem === undefined
      ? `${options.describe}: ${options.temporal} answers, workers running`
      : `${options.describe}: ${options.temporal} does not answer: ${problem}`;
    try {
      await postHeartbeat(url, problem === undefined ? 'success' : 'fail', body, { timeoutMs, signal: stopping.signal });
      if (pingsFailing) logger.info({ monitor }, 'the outside monitor answers again');
      pingsFailing = false;
    } catch (error) {
      if (stopping.signal.aborted) return;
      pingsFailing = true;
      logger.warn({ monitor, err: scrubSecrets((error as Error).message) }, 'worker heartbeat not delivered (the worker goes on; the next one follows in one period)');
    }
  };

  const tick = (): void => {
    const started = Date.now();
    current = beat().finally(() => {
      current = undefined;
      if (stopping.signal.aborted) return;
      // One period from the start of the last ping, not from its end: a slow monitor does not slow the rate.
      timer = setTimeout(tick, Math.max(0, everyMs - (Date.now() - started)));
      // The heartbeat alone never keeps the process alive.
      timer.unref();
    });
  };
  tick();

  return {
    async stop() {
      stopping.abort();
      clearTimeout(timer);
      await current;
    },
  };
}

export interface WorkerHeartbeatSetup {
  /** config.monitoring.heartbeatUrlEnv and heartbeatEvery (parsed). */
  urlEnv: string;
  everyMs: number;
  env: NodeJS.ProcessEnv;
  host: string;
  taskQueues: { shared: string; host: string };
  temporalAddress: string;
  /** Asked for (DescribeNamespace) rather than GetSystemInfo, which answers even a client the server's authorizer refuses. */
  namespace: string;
  /** The workers' own connection: what answers is what the workers poll through. */
  connection: Pick<NativeConnection, 'withDeadline' | 'workflowService'>;
  workers: Pick<Worker, 'getState'>[];
  logger: Logger;
}

function urlProblem(value: string | undefined): string | undefined {
  if (!value) return 'is not set';
  try {
    const { protocol } = new URL(value);
    return protocol === 'http:' || protocol === 'https:' ? undefined : 'does not hold an http(s) URL';
  } catch {
    return 'does not hold a URL';
  }
}

/**
 * Starts the heartbeat of a worker process; undefined when the variable is unset or not a URL.
 * The config loader already refuses an unset variable at start; a caller that skipped that check
 * gets an error in the log and a worker that runs without it: backups matter more than the ping,
 * and a monitor that has heard this worker before alerts on the silence.
 */
export function startConfiguredHeartbeat(setup: WorkerHeartbeatSetup): WorkerHeartbeat | undefined {
  const { urlEnv, env, logger } = setup;
  const url = env[urlEnv];
  const problem = urlProblem(url);
  if (problem || !url) {
    logger.error({ variable: urlEnv }, `monitoring.heartbeatUrlEnv names ${urlEnv}, which ${problem}: this worker sends no heartbeat, so nothing outside notices when every worker stops; export ${urlEnv} with the check's ping URL and restart the worker`);
    return undefined;
  }
  const temporal = `Temporal at ${setup.temporalAddress}`;
  logger.info({ monitor: heartbeatOrigin(url), everySeconds: setup.everyMs / 1000 }, `worker heartbeat to ${heartbeatOrigin(url)} every ${setup.everyMs / 1000} s`);
  return startWorkerHeartbeat({
    url,
    everyMs: setup.everyMs,
    temporal,
    describe: `backupctl worker ${setup.host} pid ${process.pid} (${setup.taskQueues.shared}, ${setup.taskQueues.host})`,
    temporalAnswers: async (timeoutMs) => {
      await setup.connection.withDeadline(Date.now() + timeoutMs, () => setup.connection.workflowService.describeNamespace({ namespace: setup.namespace }));
    },
    workersRunning: () => setup.workers.every((worker) => worker.getState() === 'RUNNING'),
    logger,
  });
}
