/**
 * A policy's backup: preflight every repository, one snapshot per source and repository,
 * retention, and the outcome to the ledger (failures too, so silence is never success).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { ApplicationFailure, ActivityFailure, ChildWorkflowFailure, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BackupInput, BackupOutcome, BackupProgress, RepositoryJob, SourceBackupInput } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import { hostTaskQueue } from '../shared/task-queues';
import { backupProgressQuery } from './definitions';
import { repositoryWorkflowId, runAsRepositoryWriter } from './repository';
import { SHORT_CALLS } from './retry-policies';

const calls = proxyActivities<Activities>(SHORT_CALLS);
const SCHEDULED_START_TIME = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);

/** The time the schedule meant this run for (its search attribute), or the start time. */
function scheduledTime(): string {
  const info = workflowInfo();
  const attribute = info.typedSearchAttributes.get(SCHEDULED_START_TIME);
  return (attribute ?? info.startTime).toISOString();
}

function rootCause(error: unknown): { type: string; message: string } {
  let current: unknown = error;
  while (current instanceof ActivityFailure || current instanceof ChildWorkflowFailure) current = current.cause;
  if (current instanceof ApplicationFailure) return { type: current.type ?? 'Error', message: current.message };
  return { type: 'Error', message: current instanceof Error ? current.message : String(current) };
}

export async function backupWorkflow(input: BackupInput): Promise<BackupOutcome> {
  const { config } = input;
  const info = workflowInfo();
  const policy = config.policies[input.policy];
  if (!policy) throw ApplicationFailure.create({ type: FailureType.ConfigInvalid, message: `no policy named "${input.policy}" in the config`, nonRetryable: true });
  const when = scheduledTime();
  const progress: BackupProgress = { stage: 'preflight', policy: input.policy, sourcesDone: 0, sourcesTotal: policy.sources.length * policy.repositories.length };
  setHandler(backupProgressQuery, () => progress);
  const outcome: BackupOutcome = { deployment: config.deployment, policy: input.policy, workflowId: info.workflowId, ok: false, startedAt: info.startTime.toISOString(), finishedAt: '', snapshots: [] };

  try {
    await Promise.all(policy.repositories.map((name) => calls.preflightRepository({ name, repository: config.repositories[name]! })));
    const hosts = new Set<string>();
    const jobs: RepositoryJob[] = policy.repositories.map((repositoryName) => {
      const repository = config.repositories[repositoryName]!;
      const backups: SourceBackupInput[] = [];
      for (const sourceName of policy.sources) {
        const source = config.sources[sourceName]!;
        if (source.type !== 'files' && source.type !== 'secrets') {
          throw ApplicationFailure.create({ type: FailureType.ConfigInvalid, message: `source ${sourceName} is of type ${source.type}, which this version backs up only as files`, nonRetryable: true });
        }
        const host = source.host ?? input.defaultHost;
        hosts.add(host);
        backups.push({
          deployment: config.deployment, policy: input.policy, sourceName, source, repositoryName, repository, host,
          stagingDirectory: config.staging.directory, scheduledTime: when,
          runTag: `run=${info.workflowId}/${info.runId.slice(0, 8)}/${sourceName}`,
        });
      }
      return {
        deployment: config.deployment, repositoryName, repository, backups, prune: false,
        retention: backups.map((b) => ({ deployment: config.deployment, repositoryName, repository, sourceName: b.sourceName, host: b.host, retention: policy.retention })),
      };
    });
    // Free space is checked on the hosts that will write the manifests.
    await Promise.all([...hosts].map((host) => proxyActivities<Activities>({ ...SHORT_CALLS, taskQueue: hostTaskQueue(config.deployment, host), scheduleToStartTimeout: '10 minutes' })
      .checkFreeSpace({ directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace, neededBytes: 0 })));

    progress.stage = 'backup';
    const results = await Promise.all(jobs.map(async (job) => {
      progress.repositoryWorkflowId = repositoryWorkflowId(job.deployment, job.repositoryName);
      const result = await runAsRepositoryWriter(job, undefined, (waiting) => {
        progress.stage = waiting ? 'waiting-for-repository' : 'backup';
      });
      progress.sourcesDone += job.backups.length;
      return result;
    }));
    outcome.snapshots = results.flatMap((r) => r.snapshots);
    outcome.ok = true;
    progress.stage = 'done';
  } catch (error) {
    outcome.error = rootCause(error);
    progress.stage = 'failed';
  }
  outcome.finishedAt = new Date().toISOString();
  await calls.recordBackupOutcome(outcome);
  if (!outcome.ok) {
    throw ApplicationFailure.create({ type: outcome.error!.type, message: outcome.error!.message, nonRetryable: true });
  }
  return outcome;
}
