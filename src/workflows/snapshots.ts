/** Lists snapshots through a worker, which holds the repositories' secrets (the CLI need not). */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Snapshot } from '../restic/commands';
import type { SnapshotsPlan } from '../shared/plans';
import type { SnapshotsRequest } from '../shared/requests';
import { planOfRun } from './requests';
import { SHORT_CALLS } from './retry-policies';

const calls = proxyActivities<Activities>({ ...SHORT_CALLS, heartbeatTimeout: '30 seconds' });

export async function listSnapshotsWorkflow(request: SnapshotsRequest): Promise<Record<string, Snapshot[]>> {
  const plan = await planOfRun<SnapshotsPlan>(request, 'snapshots', 'snapshots', 'listSnapshotsWorkflow');
  const tags = [`deployment=${plan.deployment}`, ...(plan.source ? [`source=${plan.source}`] : [])];
  const lists = await Promise.all(plan.repositories.map(({ repository }) => calls.listSnapshots({ repository, tags })));
  return Object.fromEntries(plan.repositories.map(({ name }, i) => [name, lists[i]!]));
}
