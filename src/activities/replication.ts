/**
 * A bucket of user uploads, copied to its replica on another endpoint. The copy's progress is the
 * heartbeat's checkpoint: a retry after a killed worker resumes where the last one stopped
 * instead of copying everything again.
 */
import { Context } from '@temporalio/activity';
import type { Logger } from '../logging/logger';
import type { BucketReplicationInput, SnapshotRecord } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import { replicateBucket, type ReplicationCheckpoint } from '../sources/bucket';
import { failure, typed } from './failures';
import { withHeartbeat } from './heartbeat';

export interface ReplicationDependencies {
  logger: Logger;
  env: NodeJS.ProcessEnv;
}

interface ReplicationHeartbeat {
  stage: 'copying' | 'verifying';
  checkpoint?: ReplicationCheckpoint;
}

/** The ledger's name for a source's replica ("repository" of its records). */
export function replicaName(input: Pick<BucketReplicationInput, 'source'>): string {
  return `replica:${input.source.replica.bucket}`;
}

export function createReplicationActivities({ logger, env }: ReplicationDependencies) {
  return {
    async replicateBucketSource(input: BucketReplicationInput): Promise<SnapshotRecord> {
      const activity = Context.current();
      const previous = activity.info.heartbeatDetails as ReplicationHeartbeat | undefined;
      const beat: ReplicationHeartbeat = { stage: 'copying', checkpoint: previous?.checkpoint };
      return typed(() => withHeartbeat(() => beat, async () => {
        const started = Date.now();
        const { source } = input;
        const result = await replicateBucket({
          source, replica: source.replica, env, deletions: source.deletions, checkpoint: previous?.checkpoint, signal: activity.cancellationSignal,
          onCheckpoint: (checkpoint) => {
            beat.checkpoint = checkpoint;
            activity.heartbeat(beat);
          },
        });
        if (!result.verified.ok) {
          throw failure(FailureType.ReplicaMismatch, `bucket ${source.bucket} and its replica ${source.replica.bucket} differ after copying: ${result.verified.differences.slice(0, 5).join('; ')}`);
        }
        const finished = new Date();
        logger.info({ source: input.sourceName, replica: source.replica.bucket, copied: result.copied, unchanged: result.unchanged, deleted: result.deleted, bytes: result.bytesCopied }, 'bucket replicated');
        return {
          deployment: input.deployment, policy: input.policy, source: input.sourceName, repository: replicaName(input),
          snapshotId: `${source.replica.bucket}@${finished.toISOString()}`, time: finished.toISOString(), scheduledTime: input.scheduledTime,
          files: result.fingerprint.objects, bytes: result.fingerprint.bytes, dataAdded: result.bytesCopied, durationSeconds: (Date.now() - started) / 1000,
          resumed: previous?.checkpoint !== undefined, fingerprint: result.fingerprint,
        };
      }));
    },
  };
}
