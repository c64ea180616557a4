/**
 * One writer per repository: every backup, retention and prune of a repository runs inside a
 * workflow whose id is the repository's, so Temporal itself refuses a second one while the
 * first runs (callers wait and retry). A crashed worker cannot leak this lock.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { ApplicationFailure, getExternalWorkflowHandle, proxyActivities, setHandler, sleep, startChild } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RepositoryJob, RepositoryJobResult } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import { hostTaskQueue } from '../shared/task-queues';
import { repositoryJobQuery, snapshotsReadySignal } from './definitions';
import { LONG_TRANSFERS } from './retry-policies';

const transfers = proxyActivities<Activities>(LONG_TRANSFERS);

export function repositoryWorkflowId(deployment: string, repositoryName: string): string {
  return `${deployment}-repository-${repositoryName}`;
}

export async function repositoryWorkflow(job: RepositoryJob): Promise<RepositoryJobResult> {
  const result: RepositoryJobResult = { snapshots: [], retention: [], pruned: false };
  const progress = { stage: 'backup', source: undefined as string | undefined, done: 0, total: job.backups.length };
  setHandler(repositoryJobQuery, () => progress);
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
  if (job.reportSnapshotsTo) {
    // The backup records its success now; retention below no longer delays it.
    try {
      await getExternalWorkflowHandle(job.reportSnapshotsTo).signal(snapshotsReadySignal, { repository: job.repositoryName, snapshots: result.snapshots });
    } catch {
      // The backup workflow is gone (cancelled or terminated): it no longer waits for them.
    }
  }
  progress.stage = 'retention';
  for (const retention of job.retention) result.retention.push(await transfers.applyRetention(retention));
  if (job.prune) {
    progress.stage = 'prune';
    await transfers.pruneRepository({ name: job.repositoryName, repository: job.repository });
    result.pruned = true;
  }
  progress.stage = 'done';
  return result;
}

/** Runs a job as the repository's writer, waiting while another writer holds it. */
export async function runAsRepositoryWriter(job: RepositoryJob, maxWaitSeconds = 6 * 3600, onWaiting?: (waiting: boolean) => void): Promise<RepositoryJobResult> {
  const workflowId = repositoryWorkflowId(job.deployment, job.repositoryName);
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
