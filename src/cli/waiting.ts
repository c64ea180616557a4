/**
 * Nobody waits in silence: while the CLI waits on a workflow, it checks that every task queue the
 * run needs has a worker polling it. After a few seconds without one it says which queue and how
 * to start a worker there, and keeps waiting; it says so again when a worker appears.
 *
 * Two kinds of evidence: the task queue's pollers (the server lists a poller for minutes after
 * its worker stopped, so only recently seen ones count), and the workflow itself — a workflow
 * task or an activity that stays scheduled and is never picked up names its queue at once, also
 * when the worker went down a moment ago.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Config } from '../config/schema';
import { hostTaskQueue, sharedTaskQueue } from '../shared/task-queues';
import { livePollers as pollersOf, timestampMs } from '../temporal/pollers';
import { inWorkflow } from './errors';

export interface NeededQueue {
  taskQueue: string;
  /** Workflow tasks (the shared queue) or activity tasks (a host's queue). */
  kind: 'workflow' | 'activity';
  /** For a host queue: the BACKUP_HOST a worker must run with. */
  host?: string;
}

/**
 * The shared queue, and the host queue of every source among `sources` that runs on a host: a
 * file source (host: the source's, or the CLI's) and any source that names its host (a database
 * dumped by the worker beside it).
 */
export function neededQueues(config: Config, sources: string[], defaultHost: string): NeededQueue[] {
  const queues: NeededQueue[] = [{ taskQueue: sharedTaskQueue(config.deployment), kind: 'workflow' }];
  for (const name of sources) {
    const source = config.sources[name];
    if (!source || (source.type !== 'files' && source.type !== 'secrets' && !source.host)) continue;
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
  /** The workflow waited on: its (and its children's) tasks that nobody picks up name their queue. */
  workflowId?: string;
}

export interface QueueWatcher {
  stop(): void;
}

/** Workers polling a queue now (pollers the server last saw within liveWithinMs). */
export function livePollers(client: Client, queue: NeededQueue, liveWithinMs = 120_000): Promise<number> {
  return pollersOf(client, queue.taskQueue, queue.kind, liveWithinMs);
}

/** The queue a task-queue name stands for: `<deployment>.host.<host>` is a host's. */
function queueNamed(taskQueue: string, kind: NeededQueue['kind']): NeededQueue {
  const host = /^[^.]+\.host\.(.+)$/.exec(taskQueue)?.[1];
  return host ? { taskQueue, kind: 'activity', host } : { taskQueue, kind };
}

const PENDING_ACTIVITY_SCHEDULED = 1;
const PENDING_WORKFLOW_TASK_SCHEDULED = 1;

interface StuckTask {
  /** Same key while the same attempt of the same task waits. */
  key: string;
  queue: NeededQueue;
  /** How long it may wait by design (a retry's backoff) before it counts as not picked up. */
  allowanceMs: number;
}

/** Tasks of a workflow and its running children that wait in a queue, not started by any worker. */
async function scheduledTasks(client: Client, workflowId: string, depth = 0): Promise<StuckTask[]> {
  const { raw } = await client.workflow.getHandle(workflowId).describe();
  const tasks: StuckTask[] = [];
  const workflowQueue = raw.executionConfig?.taskQueue?.name ?? raw.workflowExecutionInfo?.taskQueue;
  const wft = raw.pendingWorkflowTask;
  if (wft && wft.state === PENDING_WORKFLOW_TASK_SCHEDULED && workflowQueue) {
    tasks.push({ key: `${workflowId}/workflow-task/${wft.attempt}/${String(wft.scheduledTime?.seconds)}`, queue: queueNamed(workflowQueue, 'workflow'), allowanceMs: 0 });
  }
  for (const activity of raw.pendingActivities ?? []) {
    const taskQueue = activity.activityOptions?.taskQueue?.name;
    if (activity.state !== PENDING_ACTIVITY_SCHEDULED || !taskQueue || activity.paused) continue;
    const backoff = activity.nextAttemptScheduleTime && activity.lastAttemptCompleteTime
      ? Math.max(0, (timestampMs(activity.nextAttemptScheduleTime) ?? 0) - (timestampMs(activity.lastAttemptCompleteTime) ?? 0)) : 0;
    tasks.push({ key: `${workflowId}/activity/${activity.activityId}/${activity.attempt}`, queue: queueNamed(taskQueue, 'activity'), allowanceMs: backoff });
  }
  if (depth < 2) {
    for (const child of raw.pendingChildren ?? []) {
      if (child.workflowId) tasks.push(...await scheduledTasks(client, child.workflowId, depth + 1).catch(() => []));
    }
  }
  return tasks;
}

/** `stalled`: the server still lists a poller, but a task has waited there unpicked. */
export function noPollerMessage(queue: NeededQueue, configFile: string, stalled = false): string {
  const start = queue.host
    ? `start one on host ${queue.host}: BACKUP_HOST=${queue.host} BACKUP_CONFIG=${configFile} backupctl worker (or fix sources.<name>.host / BACKUP_HOST)`
    : `start one: BACKUP_CONFIG=${configFile} backupctl worker (on any host of the deployment)`;
  return stalled
    ? `waiting: no worker picks up the tasks of task queue ${queue.taskQueue} (its worker may have stopped, or is busy) — ${start}`
    : `waiting: no worker polls task queue ${queue.taskQueue} — ${start}`;
}

/** Checks the queues every intervalMs until stopped; tells `out` when one has had no poller for graceMs, and when one is back. */
export function watchTaskQueues(client: Client, queues: NeededQueue[], options: WatchOptions = {}): QueueWatcher {
  const { out = process.stderr, graceMs = 5_000, intervalMs = 2_000, liveWithinMs = 120_000 } = options;
  const configFile = options.configFile ?? process.env.BACKUP_CONFIG ?? '<config file>';
  const since = new Map<string, number>();
  /** When this CLI first saw each waiting task (local clock: the server's may differ). */
  const taskSeen = new Map<string, number>();
  const reported = new Map<string, NeededQueue>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const check = async () => {
    const unattended = new Map<string, NeededQueue & { stalled?: boolean }>();
    const unknown = new Set<string>();
    for (const queue of queues) {
      try {
        if ((await livePollers(client, queue, liveWithinMs)) === 0) unattended.set(queue.taskQueue, queue);
      } catch {
        unknown.add(queue.taskQueue); // Temporal briefly unreachable: the wait itself reports what matters.
      }
    }
    if (options.workflowId) {
      try {
        const tasks = await scheduledTasks(client, options.workflowId);
        const now = Date.now();
        for (const key of [...taskSeen.keys()]) if (!tasks.some((t) => t.key === key)) taskSeen.delete(key);
        for (const task of tasks) {
          const seen = taskSeen.get(task.key) ?? now;
          taskSeen.set(task.key, seen);
          if (now - seen >= graceMs + task.allowanceMs && !unattended.has(task.queue.taskQueue)) unattended.set(task.queue.taskQueue, { ...task.queue, stalled: true });
        }
      } catch {
        // Not started yet, or just closed.
      }
    }
    if (stopped) return;
    for (const [name, queue] of unattended) {
      const first = since.get(name) ?? Date.now();
      since.set(name, first);
      if (Date.now() - first >= graceMs && !reported.has(name)) {
        reported.set(name, queue);
        out.write(`${noPollerMessage(queue, configFile, queue.stalled)}\n`);
      }
    }
    for (const name of [...since.keys()]) {
      if (unattended.has(name) || unknown.has(name)) continue;
      since.delete(name);
      if (reported.delete(name)) out.write(`a worker is polling ${name} again\n`);
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
  const watcher = watchTaskQueues(client, queues, { workflowId: handle.workflowId, ...options });
  try {
    return await inWorkflow(handle.workflowId, handle.result() as Promise<T>);
  } finally {
    watcher.stop();
  }
}
