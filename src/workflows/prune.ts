/** Prune on its own schedule: it takes the repository's writer slot like any backup; the outcome goes to the ledger. */
import { patched, workflowInfo } from '@temporalio/workflow';
import type { RepositoryJobResult, RunOutcome } from '../shared/backup-types';
import type { PrunePlan } from '../shared/plans';
import type { PruneRequest } from '../shared/requests';
import { recordedRun } from './outcomes';
import { planOfRun } from './requests';
import { repositoryWriterClient, runAsRepositoryWriter } from './repository';

export async function pruneWorkflow(request: PruneRequest): Promise<RepositoryJobResult> {
  const plan = await planOfRun<PrunePlan>(request, 'prune', 'prune', 'pruneWorkflow');
  const info = workflowInfo();
  const { name, repository } = plan.repository;
  const outcome: RunOutcome = {
    kind: 'prune', status: 'failed', ok: false, deployment: plan.deployment, workflowId: info.workflowId,
    startedAt: info.startTime.toISOString(), finishedAt: '', repository: name, snapshots: [],

    ...(plan.requester ? { requester: plan.requester } : {}),
  };
  const job = { deployment: plan.deployment, repositoryName: name, repository, backups: [], retention: [], prune: true };
  // Since 2026-12-05: through the repository's writer queue (before: a child, retried while busy).
  if (patched('repository-queue')) {
    const writer = repositoryWriterClient();
    return recordedRun(outcome, () => writer.run(job, 'prune'));
  }
  return recordedRun(outcome, () => runAsRepositoryWriter(job));
}
