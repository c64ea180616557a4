/** Restore of a file source, run by the worker on the source's host; the outcome goes to the ledger. */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunOutcome } from '../shared/backup-types';
import type { RestorePlan } from '../shared/plans';
import type { RestoreRequest } from '../shared/requests';
import type { RestoreResult } from '../shared/restore-types';
import { hostTaskQueue } from '../shared/task-queues';
import { recordedRun } from './outcomes';
import { planOfRun } from './requests';
import { LONG_TRANSFERS } from './retry-policies';

export async function restoreWorkflow(request: RestoreRequest): Promise<RestoreResult> {
  const plan = await planOfRun<RestorePlan>(request, 'restore', 'restore', 'restoreWorkflow');
  const info = workflowInfo();
  const { source, repository } = plan;
  const onHost = proxyActivities<Activities>({ ...LONG_TRANSFERS, taskQueue: hostTaskQueue(plan.deployment, source.host) });
  const outcome: RunOutcome = {
    kind: 'restore', status: 'failed', ok: false, deployment: plan.deployment, workflowId: info.workflowId,
    startedAt: info.startTime.toISOString(), finishedAt: '', sources: [source.name], repository: repository.name, snapshots: [],

    ...(plan.requester ? { requester: plan.requester } : {}),
  };
  return recordedRun(outcome, async () => {
    const { source: config } = source;
    const result = config.type === 'files' || config.type === 'secrets'
      ? await onHost.restoreFiles({
        deployment: plan.deployment, sourceName: source.name, source: config, repositoryName: repository.name, repository: repository.repository,
        snapshot: plan.snapshot, target: plan.target, inPlace: plan.inPlace, confirmInPlace: plan.confirmInPlace, include: plan.include,
      })
      // Databases, git and buckets: restored, then compared with their fingerprint at backup time.
      : await onHost.restoreSource({
        deployment: plan.deployment, sourceName: source.name, source: config, repositoryName: repository.name, repository: repository.repository,
        snapshot: plan.snapshot, target: plan.target, database: plan.database, force: plan.force, stagingDirectory: plan.staging?.directory,
      });
    outcome.restored = {
      source: result.source, snapshotId: result.snapshotId, target: result.target, files: result.filesRestored, bytes: result.bytesRestored,
      ...(result.comparison ? { comparison: result.comparison } : {}),
    };
    return result;
  });
}
