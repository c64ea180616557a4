/** Restore of a file source, run by the worker on the source's host. */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { FailureType } from '../shared/failures';
import type { RestoreInput, RestoreResult } from '../shared/restore-types';
import { hostTaskQueue } from '../shared/task-queues';
import { LONG_TRANSFERS } from './retry-policies';

export async function restoreWorkflow(input: RestoreInput): Promise<RestoreResult> {
  const { config } = input;
  const source = config.sources[input.source];
  if (!source) throw ApplicationFailure.create({ type: FailureType.ConfigInvalid, message: `no source named "${input.source}"`, nonRetryable: true });
  if (source.type !== 'files' && source.type !== 'secrets') {
    throw ApplicationFailure.create({ type: FailureType.ConfigInvalid, message: `source ${input.source} is a ${source.type} source: this restore handles files and secrets`, nonRetryable: true });
  }
  const repositoryName = input.repository ?? Object.values(config.policies).find((p) => p.sources.includes(input.source))?.repositories[0];
  const repository = repositoryName ? config.repositories[repositoryName] : undefined;
  if (!repositoryName || !repository) throw ApplicationFailure.create({ type: FailureType.ConfigInvalid, message: `no repository holds source ${input.source}`, nonRetryable: true });
  const host = source.host ?? input.defaultHost;
  const onHost = proxyActivities<Activities>({ ...LONG_TRANSFERS, taskQueue: hostTaskQueue(config.deployment, host) });
  return onHost.restoreFiles({
    deployment: config.deployment, sourceName: input.source, source, repositoryName, repository,
    snapshot: input.snapshot, target: input.target, inPlace: input.inPlace, confirmInPlace: input.confirmInPlace, include: input.include,
  });
}
