/**
 * One writer per repository: every backup, retention, prune and data check of a repository runs
 * inside the repository's writer workflow (one id per repository, so Temporal itself keeps a single
 * one running), queued in order. A crashed worker cannot leak this lock.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  allHandlersFinished, ApplicationFailure, CancellationScope, condition, continueAsNew, getExternalWorkflowHandle, isCancellation, log, patched, proxyActivities, setHandler, sleep, startChild, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RepositoryJob, RepositoryJobKind, RepositoryJobResult, RepositoryQueueView, RepositoryReply, RepositoryRequest, RepositoryWriterInput } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import { hostTaskQueue } from '../shared/task-queues';
import {
  cancelRepositoryJobSignal, enqueueRepositoryJobSignal, repositoryJobDoneSignal, repositoryJobQuery, repositoryJobStartedSignal, repositoryQueueQuery, snapshotsReadySignal,
} from './definitions';
import { rootCause } from './outcomes';
import { LONG_TRANSFERS, SHORT_CALLS } from './retry-policies';

const transfers = proxyActivities<Activities>(LONG_TRANSFERS);
// A check that finds damage returns it: retries are for the checker failing, not the data.
const checks = proxyActivities<Activities>({ ...LONG_TRANSFERS, retry: { ...LONG_TRANSFERS.retry, maximumAttempts: 3 } });

/**
 * Patch id since 2026-12-05 (in the backup and in the writer): fewer workflow tasks between a
 * backup's start and its end. The backup checks its repositories and its hosts' free space at once;
 * the writer schedules retention in the workflow task that sends the snapshots signal, not in the
 * one after its delivery.
 */
export const SHORTER_CRITICAL_PATH = 'shorter-critical-path';

/** Id of the writer before the queue (`repositoryWorkflow`, one child per job). */
export function legacyRepositoryWorkflowId(deployment: string, repositoryName: string): string {
  return `${deployment}-repository-${repositoryName}`;
}

interface JobProgress { stage: string; source: string | undefined; done: number; total: number }

/** One job's work while it holds the repository: its backups, then retention, prune and the data check. */
async function runRepositoryJob(job: RepositoryJob, progress: JobProgress): Promise<RepositoryJobResult> {
  const result: RepositoryJobResult = { snapshots: [], retention: [], pruned: false };
  Object.assign(progress, { stage: 'backup', source: undefined, done: 0, total: job.backups.length });
  for (const backup of job.backups) {
    progress.source = backup.sourceName;
    // Files are read by the worker on the host that holds them.
    const onHost = proxyActivities<Activities>({
      ...LONG_TRANSFERS, taskQueue: hostTaskQueue(job.deployment, backup.host),
      retry: { ...LONG_TRANSFERS.retry, maximumAttempts: job.attempts ?? LONG_TRANSFERS.retry?.maximumAttempts },
    });
    result.snapshots.push(await onHost.backupSource(backup));
    progress.done += 1;
  }
  let reported: Promise<void> | undefined;
  if (job.reportSnapshotsTo) {
    // The backup records its success now; retention below no longer delays it.
    const report = getExternalWorkflowHandle(job.reportSnapshotsTo).signal(snapshotsReadySignal, { repository: job.repositoryName, snapshots: result.snapshots }).catch(() => {
      // The backup workflow is gone (cancelled or terminated): it no longer waits for them.
    });
    // Retention is scheduled in the same workflow task as the signal, not one task after its delivery.
    if (patched(SHORTER_CRITICAL_PATH)) reported = report;
    else await report;
  }
  // A copy repository's job (copyTo): the primary's new snapshots are copied in before its retention.
  for (const copy of job.copies ?? []) {
    progress.stage = 'copy';
    progress.source = copy.from.name;
    result.snapshots.push(...await transfers.copySnapshots(copy));
  }
  progress.stage = 'retention';
  for (const retention of job.retention) result.retention.push(await transfers.applyRetention(retention));
  if (job.prune) {
    progress.stage = 'prune';
    await transfers.pruneRepository({ name: job.repositoryName, repository: job.repository });
    result.pruned = true;
  }
  if (job.check) {
    progress.stage = 'check';
    result.check = await checks.checkRepositoryData({ name: job.repositoryName, repository: job.repository, ...job.check });
  }
  await reported;
  progress.stage = 'done';
  return result;
}

/** The writer before the queue (one child per job, callers retry while it runs): kept for runs started before 2026-12-05. */
export async function repositoryWorkflow(job: RepositoryJob): Promise<RepositoryJobResult> {
  const progress: JobProgress = { stage: 'backup', source: undefined, done: 0, total: job.backups.length };
  setHandler(repositoryJobQuery, () => progress);
  return runRepositoryJob(job, progress);
}

/** Id of a repository's writer queue: one per repository, so Temporal keeps one running at a time. */
export function repositoryWriterId(deployment: string, repositoryName: string): string {
  return `${deployment}-writer-${repositoryName}`;
}

const queueing = proxyActivities<Activities>(SHORT_CALLS);

/** A writer continues as new after this many jobs, so its history stays short. */
const JOBS_PER_RUN = 50;

/**
 * A repository's single writer as a queue: jobs arrive by signal-with-start (`enqueueRepositoryJob`)
 * and run one after the other in arrival order, each the moment the previous one ends, so two
 * restic writers never meet at the repository's lock and nobody waits out a backoff. The queue is
 * workflow state: it survives a worker restart. The writer ends when its queue is empty (the next
 * signal-with-start begins a new one).
 */
export async function repositoryWriterWorkflow(input: RepositoryWriterInput): Promise<{ finished: number }> {
  const queue: RepositoryRequest[] = [...input.queue];
  const taken = new Set<string>();
  let current: { request: RepositoryRequest; scope: CancellationScope; startedAt: string; cancelRequested: boolean } | undefined;
  let finished = input.finished ?? 0;
  let finishedThisRun = 0;
  const progress: JobProgress = { stage: 'idle', source: undefined, done: 0, total: 0 };
  const answer = async (request: RepositoryRequest, reply: Omit<RepositoryReply, 'id'>): Promise<void> => {
    try {
      await getExternalWorkflowHandle(request.replyTo).signal(repositoryJobDoneSignal, { id: request.id, ...reply });
    } catch {
      // The caller is gone (terminated): nobody waits for this answer.
    }
  };
  setHandler(repositoryJobQuery, () => progress);
  setHandler(enqueueRepositoryJobSignal, (request) => {
    // A retried enqueue brings the same id again.
    if (taken.has(request.id) || queue.some((q) => q.id === request.id)) return;
    queue.push(request);
  });
  setHandler(cancelRepositoryJobSignal, async ({ id }) => {
    if (current?.request.id === id) {
      current.cancelRequested = true;
      current.scope.cancel();
      return;
    }
    // A queued job leaves the queue and its caller hears so at once, while the current job runs on.
    const index = queue.findIndex((q) => q.id === id);
    if (index >= 0) await answer(queue.splice(index, 1)[0]!, { cancelled: true });
  });
  setHandler(repositoryQueueQuery, (): RepositoryQueueView => ({
    repository: input.repositoryName,
    ...(current ? { current: { id: current.request.id, kind: current.request.kind, caller: current.request.replyTo, stage: progress.stage, ...(progress.source ? { source: progress.source } : {}), enqueuedAt: current.request.enqueuedAt, startedAt: current.startedAt } } : {}),
    waiting: queue.map((q) => ({ id: q.id, kind: q.kind, caller: q.replyTo, enqueuedAt: q.enqueuedAt, ...(q.waitingForHost ? { waitingForHost: q.waitingForHost } : {}) })),
    finished,
  }));

  // The hosts a job's activities run on (its files, or a database dumped beside it).
  const hostsOf = (request: RepositoryRequest) => [...new Set([...request.job.backups.map((b) => b.host), ...request.job.retention.map((r) => r.host)])];
  /**
   * The first queued job whose hosts all have a worker: a job of a host that is down waits (and
   * says so) without holding the repository from the other hosts' jobs. Nothing runnable: wait for
   * a new job or 30 s, then look again.
   */
  const takeRunnable = async (): Promise<RepositoryRequest | undefined> => {
    const since = new Date().getTime();
    for (;;) {
      if (queue.length === 0) return undefined;
      const hosts = [...new Set(queue.flatMap(hostsOf))];
      const polled = new Set(hosts.length === 0 ? [] : await queueing.hostsPolled({ deployment: input.deployment, hosts }));
      for (const q of queue) q.waitingForHost = hostsOf(q).find((h) => !polled.has(h));
      const index = queue.findIndex((q) => q.waitingForHost === undefined);
      if (index >= 0) return queue.splice(index, 1)[0];
      // A host down for long: its history must not grow without end while it waits.
      if (workflowInfo().continueAsNewSuggested) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof repositoryWriterWorkflow>({ deployment: input.deployment, repositoryName: input.repositoryName, queue, finished });
      }
      const length = queue.length;
      // Every 30 s for the first 10 minutes, then every 5 minutes; a new job wakes it at once.
      await condition(() => queue.length !== length, new Date().getTime() - since < 600_000 ? '30 seconds' : '5 minutes');
    }
  };

  try {
    for (;;) {
      const request = await takeRunnable();
      if (!request) {
        // Answers to cancelled jobs still on their way go out before the writer ends.
        await condition(allHandlersFinished);
        if (queue.length === 0) break;
        continue;
      }
      taken.add(request.id);
      // Nobody to tell (its caller was terminated): the job is skipped, as its child would have been.
      try {
        await getExternalWorkflowHandle(request.replyTo).signal(repositoryJobStartedSignal, { id: request.id });
      } catch {
        log.warn('repository job skipped: the workflow that queued it is gone', { id: request.id, caller: request.replyTo });
        continue;
      }
      const scope = new CancellationScope();
      current = { request, scope, startedAt: new Date().toISOString(), cancelRequested: false };
      try {
        const result = await scope.run(() => runRepositoryJob(request.job, progress));
        await answer(request, { result });
      } catch (error) {
        // The writer itself was cancelled: every job it holds is told below.
        if (isCancellation(error) && !current.cancelRequested) throw error;
        await answer(request, isCancellation(error) ? { cancelled: true } : { failure: rootCause(error) });
      }
      current = undefined;
      progress.stage = 'idle';
      finished += 1;
      finishedThisRun += 1;
      if (finishedThisRun >= JOBS_PER_RUN || workflowInfo().continueAsNewSuggested) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof repositoryWriterWorkflow>({ deployment: input.deployment, repositoryName: input.repositoryName, queue, finished });
      }
    }
  } catch (error) {
    if (isCancellation(error)) {
      await CancellationScope.nonCancellable(async () => {
        const held = [...(current ? [current.request] : []), ...queue.splice(0)];
        for (const request of held) await answer(request, { cancelled: true });
      });
    }
    throw error;
  }
  return { finished };
}

/** A workflow's way to its repositories' writers. Make one per workflow run: it installs the answer handlers. */
export interface RepositoryWriterClient {
  /**
   * Queues the job on its repository's writer and waits for its answer. A cancelled caller cancels
   * its job (queued: dropped; running: its restic stopped) and waits for the writer to say so.
   */
  run(job: RepositoryJob, kind: RepositoryJobKind, options?: { onStarted?: () => void; maxWaitSeconds?: number }): Promise<RepositoryJobResult>;
}

/** How often a waiting caller checks that the writer still holds its job (it may have been terminated). */
const WRITER_CHECK_EVERY = '10 minutes';

/**
 * The enqueue is an activity, never a local one: a local activity runs again when its workflow
 * task is lost before its result is recorded, and a job enqueued again after its writer ended
 * would run twice (the writer knows the ids it took only within its run: seen in
 * test/repository-queue.test.ts with enqueue as a local activity, 2026-12-05).
 */
export function repositoryWriterClient(): RepositoryWriterClient {
  const started = new Set<string>();
  const replies = new Map<string, RepositoryReply>();
  setHandler(repositoryJobStartedSignal, ({ id }) => void started.add(id));
  setHandler(repositoryJobDoneSignal, (reply) => void replies.set(reply.id, reply));
  return {
    async run(job, kind, { onStarted, maxWaitSeconds = 6 * 3600 } = {}) {
      const info = workflowInfo();
      const writerId = repositoryWriterId(job.deployment, job.repositoryName);
      const request: RepositoryRequest = { id: `${info.workflowId}/${info.runId}/${job.repositoryName}/${kind}`, kind, replyTo: info.workflowId, enqueuedAt: new Date().toISOString(), job };
      const { id } = request;
      const queuedAt = new Date().getTime();
      let requeued = 0;
      let told = false;
      const tellStarted = () => {
        if (!told && (started.has(id) || replies.has(id))) {
          told = true;
          onStarted?.();
        }
      };
      try {
        await queueing.enqueueRepositoryJob({ writerId, request });
        for (;;) {
          if (replies.has(id)) break;
          const begun = started.has(id);
          const waited = (new Date().getTime() - queuedAt) / 1000;
          if (!begun && waited >= maxWaitSeconds) {
            await CancellationScope.nonCancellable(() => cancelAndWait(writerId, id, replies));
            if (replies.get(id)?.result) break;
            throw ApplicationFailure.create({ type: FailureType.RepositoryLocked, message: `repository ${job.repositoryName} stayed busy for ${maxWaitSeconds} s (the backups, retention, prunes and checks queued before this one)`, nonRetryable: true });
          }
          const progressed = begun
            ? await condition(() => replies.has(id), WRITER_CHECK_EVERY)
            : await condition(() => started.has(id) || replies.has(id), `${Math.ceil(Math.min(600, maxWaitSeconds - waited))} seconds`);
          tellStarted();
          if (progressed) continue;
          // Quiet for a while. The writer answers before it lets go of a job, so a writer that
          // no longer holds it has lost it (terminated, reset): queue it again, a few times.
          const state = await queueing.repositoryJobState({ writerId, id });
          if (state !== 'unknown' || replies.has(id)) continue;
          if (requeued >= 3) throw ApplicationFailure.create({ type: FailureType.RepositoryLocked, message: `the writer of repository ${job.repositoryName} (${writerId}) lost this job ${requeued + 1} times (terminated or reset?)`, nonRetryable: true });
          requeued += 1;
          log.warn('the repository writer lost this job; queued again', { writerId, id });
          await queueing.enqueueRepositoryJob({ writerId, request });
        }
      } catch (error) {
        if (isCancellation(error)) await CancellationScope.nonCancellable(() => cancelAndWait(writerId, id, replies));
        throw error;
      }
      const reply = replies.get(id)!;
      if (reply.failure) throw ApplicationFailure.create({ type: reply.failure.type, message: reply.failure.message, nonRetryable: true });
      if (reply.cancelled || !reply.result) throw ApplicationFailure.create({ type: 'Cancelled', message: `the writer of repository ${job.repositoryName} (${writerId}) was cancelled before this ${kind} ended`, nonRetryable: true });
      return reply.result;
    },
  };
}

/** Asks the writer to drop or stop the job and waits (bounded) until it says it has. */
async function cancelAndWait(writerId: string, id: string, replies: Map<string, RepositoryReply>): Promise<void> {
  try {
    await getExternalWorkflowHandle(writerId).signal(cancelRepositoryJobSignal, { id });
  } catch {
    return; // No writer runs: nothing holds the job.
  }
  await condition(() => replies.has(id), '5 minutes');
}

/** Runs a job as the repository's writer, waiting while another writer holds it: the way before the queue, for runs started before it. */
export async function runAsRepositoryWriter(job: RepositoryJob, maxWaitSeconds = 6 * 3600, onWaiting?: (waiting: boolean) => void): Promise<RepositoryJobResult> {
  const workflowId = legacyRepositoryWorkflowId(job.deployment, job.repositoryName);
  let waited = 0;
  let delay = 2;
  for (;;) {
    try {
      const child = await startChild(repositoryWorkflow, { workflowId, args: [job] });
      onWaiting?.(false);
      return await child.result();
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
      if (waited >= maxWaitSeconds) {
        throw ApplicationFailure.create({ type: FailureType.RepositoryLocked, message: `repository ${job.repositoryName} stayed busy for ${maxWaitSeconds} s (another backup, retention or prune)`, nonRetryable: true });
      }
      onWaiting?.(true);
      await sleep(`${delay} seconds`);
      waited += delay;
      delay = Math.min(delay * 2, 60);
    }
  }
}
