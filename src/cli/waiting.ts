/**
 * Nobody waits in silence: while the CLI waits on a workflow, it checks that every task queue the
 * run needs has a worker polling it. After a few seconds without one it says which queue and how
 * to start a worker there, and keeps waiting; it says so again when a worker appears.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Config } from '../config/schema';
import { hostTaskQueue, sharedTaskQueue } from '../shared/task-queues';
import { inWorkflow } from './errors';

export interface NeededQueue {
  taskQueue: string;
  /** Workflow tasks (the shared queue) or activity tasks (a host's queue). */
  kind: 'workflow' | 'activity';
  /** For a host queue: the BACKUP_HOST a worker must run with. */
  host?: string;
}

/** The shared queue, and the host queue of every file source among `sources` (host: the source's, or the CLI's). */
export function neededQueues(config: Config, sources: string[], defaultHost: string): NeededQueue[] {
  const queues: NeededQueue[] = [{ taskQueue: sharedTaskQueue(config.deployment), kind: 'workflow' }];
  for (const name of sources) {
    const source = config.sources[name];
    if (!source || (source.type !== 'files' && source.type !== 'secrets')) continue;
    const host = source.host ?? defaultHost;
    const taskQueue = hostTaskQueue(config.deployment, host);
    if (!queues.some((q) => q.taskQueue === taskQueue)) queues.push({ taskQueue, kind: 'activity', host });
  }
  return queues;
}

/** The queues a policy's backup needs. */
export function policyQueues(config: Config, policy: string, defaultHost: string): NeededQueue[] {
  return neededQueues(config, config.policies[policy]?.sources ?? [], defaultHost);
}

export interface WatchOptions {
  /** The config file to name in the hint (default: BACKUP_CONFIG, or <file>). */
  configFile?: string;
  out?: { write(text: string): unknown };
  /** How long a queue may go without a poller before the user is told. */
  graceMs?: number;
  intervalMs?: number;
  /** A poller not seen for this long is gone (the server remembers pollers for minutes). */
  liveWithinMs?: number;
}

export interface QueueWatcher {
  stop(): void;
}

function timestampMs(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): number | undefined {
  if (!ts) return undefined;
  return Number(String(ts.seconds ?? 0)) * 1000 + (ts.nanos ?? 0) / 1e6;
}

/** Workers polling a queue now (pollers the server last saw within liveWithinMs). */
export async function livePollers(client: Client, queue: NeededQueue, liveWithinMs = 120_000): Promise<number> {
  const description = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: queue.taskQueue },
    taskQueueType: queue.kind === 'workflow' ? 1 : 2, // TASK_QUEUE_TYPE_WORKFLOW / _ACTIVITY
  });
  const now = Date.now();
  return (description.pollers ?? []).filter((poller) => {
    const seen = timestampMs(poller.lastAccessTime);
    return seen === undefined || now - seen < liveWithinMs;
  }).length;
}

export function noPollerMessage(queue: NeededQueue, configFile: string): string {
  const start = queue.host
    ? `start one on host ${queue.host}: BACKUP_HOST=${queue.host} BACKUP_CONFIG=${configFile} backupctl worker (or fix sources.<name>.host / BACKUP_HOST)`
    : `start one: BACKUP_CONFIG=${configFile} backupctl worker (on any host of the deployment)`;
  return `waiting: no worker polls task queue ${queue.taskQueue} — ${start}`;
}

/** Checks the queues every intervalMs until stopped; tells `out` when one has had no poller for graceMs, and when one is back. */
export function watchTaskQueues(client: Client, queues: NeededQueue[], options: WatchOptions = {}): QueueWatcher {
  const { out = process.stderr, graceMs = 5_000, intervalMs = 2_000, liveWithinMs = 120_000 } = options;
  const configFile = options.configFile ?? process.env.BACKUP_CONFIG ?? '<config file>';
  const since = new Map<string, number>();
  const reported = new Set<string>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const check = async () => {
    for (const queue of queues) {
      if (stopped) return;
      let pollers: number;
      try {
        pollers = await livePollers(client, queue, liveWithinMs);
      } catch {
        continue; // Temporal briefly unreachable: the wait itself reports what matters.
      }
      if (stopped) return;
      if (pollers > 0) {
        since.delete(queue.taskQueue);
        if (reported.delete(queue.taskQueue)) out.write(`a worker is polling ${queue.taskQueue} again\n`);
        continue;
      }
      const first = since.get(queue.taskQueue) ?? Date.now();
      since.set(queue.taskQueue, first);
      if (Date.now() - first >= graceMs && !reported.has(queue.taskQueue)) {
        reported.add(queue.taskQueue);
        out.write(`${noPollerMessage(queue, configFile)}\n`);
      }
    }
  };
  const loop = async () => {
    await check();
    if (!stopped) timer = setTimeout(() => void loop(), intervalMs);
  };
  void loop();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

/** Waits for a workflow's result while watching its queues; a failure carries the workflow id. */
export async function waitWatched<T>(client: Client, handle: WorkflowHandle, queues: NeededQueue[], options: WatchOptions = {}): Promise<T> {
  const watcher = watchTaskQueues(client, queues, options);
  try {
    return await inWorkflow(handle.workflowId, handle.result() as Promise<T>);
  } finally {
    watcher.stop();
  }
}
