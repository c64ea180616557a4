/** Prune on its own schedule: it takes the repository's writer slot like any backup; the outcome goes to the ledger. */
import { workflowInfo } from '@temporalio/workflow';
import type { RepositoryJobResult, RunOutcome } from '../shared/backup-types';
import type { PrunePlan } from '../shared/plans';
import type { PruneRequest } from '../shared/requests';
import { recordedRun } from './outcomes';
import { planOfRun } from './requests';
import { runAsRepositoryWriter } from './repository';

export async function pruneWorkflow(request: PruneRequest): Promise<RepositoryJobResult> {
  const plan = await planOfRun<PrunePlan>(request, 'prune', 'prune', 'pruneWorkflow');
  const info = workflowInfo();
  const { name, repository } = plan.repository;
  const outcome: RunOutcome = {
    kind: 'prune', status: 'failed', ok: false, deployment: plan.deployment, workflowId: info.workflowId,
    startedAt: info.startTime.toISOString(), finishedAt: '', repository: name, snapshots: [],
  };
  return recordedRun(outcome, () => runAsRepositoryWriter({ deployment: plan.deployment, repositoryName: name, repository, backups: [], retention: [], prune: true }));
}
