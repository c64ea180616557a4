/**
 * A run of archives.<name> (issue 17, point 4), on its schedule or started by hand: each source's
 * newest verified snapshot as one .tar.zst in S3 (restorable with curl, zstd and tar), then, only
 * once every source's archive of this run is complete, the archives beyond `keep` deleted. A run
 * that fails anywhere deletes nothing. The outcome goes to the ledger (kind `archive`).
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunOutcome } from '../shared/backup-types';
import type { ArchivePlan } from '../shared/plans';
import type { ArchiveRunRequest } from '../shared/requests';
import { recordedRun } from './outcomes';
import { planOfRun } from './requests';
import { LONG_TRANSFERS, SHORT_CALLS } from './retry-policies';

// A retried archive is written again from the start (the failed attempt's upload was aborted).
const transfers = proxyActivities<Activities>({ ...LONG_TRANSFERS, retry: { ...LONG_TRANSFERS.retry, maximumAttempts: 3 } });
const calls = proxyActivities<Activities>(SHORT_CALLS);

export interface ArchiveRunResult {
  archive: string;
  archives: NonNullable<RunOutcome['archives']>;
}

export async function archiveWorkflow(request: ArchiveRunRequest): Promise<ArchiveRunResult> {
  const plan = await planOfRun<ArchivePlan>(request, 'archive', 'archive', 'archiveWorkflow');
  const info = workflowInfo();
  const outcome: RunOutcome = {
    kind: 'archive', status: 'failed', ok: false, deployment: plan.deployment, workflowId: info.workflowId,
    startedAt: info.startTime.toISOString(), finishedAt: '', sources: plan.sources.map((s) => s.name), repository: plan.repository.name, snapshots: [],
    ...(plan.requester ? { requester: plan.requester } : {}),
  };
  return recordedRun(outcome, async () => {
    // One source after the other: each is a restic dump and an upload of the whole snapshot.
    const archives: NonNullable<RunOutcome['archives']> = [];
    for (const source of plan.sources) {
      const result = await transfers.archiveSource({
        deployment: plan.deployment, archive: plan.archive, source: source.name, repositoryName: plan.repository.name, repository: plan.repository.repository,
        bucket: plan.bucket, prefix: source.prefix, ...(plan.storageClass ? { storageClass: plan.storageClass } : {}),
      });
      archives.push({ source: source.name, key: result.key, bytes: result.bytes, sha256: result.sha256, snapshotId: result.snapshotId, verified: result.verified, deleted: [] });
      outcome.archives = archives;
    }
    // Every archive of the run is complete: only now are the older ones beyond keep deleted.
    for (const [i, source] of plan.sources.entries()) {
      archives[i]!.deleted = await calls.expireArchives({ repository: plan.repository.repository, bucket: plan.bucket, prefix: source.prefix, keep: plan.keep, complete: archives[i]!.key });
    }
    outcome.archives = archives;
    return { archive: plan.archive, archives };
  });
}
