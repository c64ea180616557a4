/** Prune on its own schedule: it takes the repository's writer slot like any backup; the outcome goes to the ledger. */
import { workflowInfo } from '@temporalio/workflow';
import type { RepositoryJobResult, RunOutcome } from '../shared/backup-types';
import type { PrunePlan } from '../shared/plans';
import { recordedRun, requirePlan } from './outcomes';
import { runAsRepositoryWriter } from './repository';

export async function pruneWorkflow(plan: PrunePlan): Promise<RepositoryJobResult> {
  requirePlan(plan, 'prune', 'pruneWorkflow');
  const info = workflowInfo();
  const { name, repository } = plan.repository;
  const outcome: RunOutcome = {
    kind: 'prune', status: 'failed', ok: false, deployment: plan.deployment, workflowId: info.workflowId,
    startedAt: info.startTime.toISOString(), finishedAt: '', repository: name, snapshots: [],
  };
  return recordedRun(outcome, () => runAsRepositoryWriter({ deployment: plan.deployment, repositoryName: name, repository, backups: [], retention: [], prune: true }));
}
