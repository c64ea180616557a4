/** Lists snapshots through a worker, which holds the repositories' secrets (the CLI need not). */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Config } from '../config/schema';
import type { Snapshot } from '../restic/commands';
import { SHORT_CALLS } from './retry-policies';

const calls = proxyActivities<Activities>(SHORT_CALLS);

export async function listSnapshotsWorkflow(input: { config: Config; repositories?: string[]; source?: string }): Promise<Record<string, Snapshot[]>> {
  const names = input.repositories ?? Object.keys(input.config.repositories);
  const tags = [`deployment=${input.config.deployment}`, ...(input.source ? [`source=${input.source}`] : [])];
  const lists = await Promise.all(names.map((name) => calls.listSnapshots({ repository: input.config.repositories[name]!, tags })));
  return Object.fromEntries(names.map((name, i) => [name, lists[i]!]));
}
