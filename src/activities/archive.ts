/**
 * The archive policy's steps (config `archives`, issue 17 point 4), run by archiveWorkflow: each
 * source's newest verified snapshot as one .tar.zst in S3 (src/storage/archive.ts), and, once every
 * source's archive of the run is complete, the older archives beyond `keep` deleted. A failed
 * archive leaves no object (its upload is aborted) and the run deletes nothing.
 */
import type { Repository, S3Repository } from '../config/schema';
import type { Logger } from '../logging/logger';
import { snapshots } from '../restic/commands';
import { ResticError } from '../restic/restic';
import { FailureType } from '../shared/failures';
import { ArchiveFailed, archiveSnapshot, chooseArchiveSnapshot, expireArchives, type ArchiveDestination } from '../storage/archive';
import { S3PreflightError } from '../storage/s3';
import { failure } from './failures';
import { withHeartbeat } from './heartbeat';

export interface ArchiveDependencies {
  logger: Logger;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
}

export interface ArchiveSourceInput {
  deployment: string;
  archive: string;
  source: string;
  repositoryName: string;
  repository: Repository;
  bucket: string;
  prefix: string;
  storageClass?: string;
}

export interface ArchiveSourceResult {
  source: string;
  bucket: string;
  key: string;
  bytes: number;
  sha256: string;
  snapshotId: string;
  snapshotTime: string;
  verified: boolean;
  note: string;
}

export interface ExpireArchivesInput {
  repository: Repository;
  bucket: string;
  prefix: string;
  keep: number;
  /** The archive this run completed: never deleted. */
  complete: string;
}

function destinationOf(input: { repository: Repository; bucket: string; prefix: string }): ArchiveDestination {
  if (input.repository.type !== 's3') throw failure(FailureType.ConfigInvalid, 'an archive is written with an s3 repository\'s endpoint and credentials: name an s3 repository in archives.<name>.repository');
  return { s3: input.repository as S3Repository, bucket: input.bucket, prefix: input.prefix };
}

/** restic's and S3's typed errors keep their type (a wrong password is not retried); the rest is ArchiveFailed. */
function typedFailure(error: unknown): Error {
  // The typed failure at the bottom of the chain (no raw cause below it): the ledger, the CLI and the tests read its type.
  if (error instanceof ResticError) return failure(error.failureType, error.message);
  if (error instanceof S3PreflightError) return failure(error.failureType, error.message);
  if (error instanceof ArchiveFailed) {
    const type = /wrong password/i.test(error.message) ? FailureType.WrongRepositoryPassword : /credentials were rejected/i.test(error.message) ? FailureType.CredentialsRejected : FailureType.ResticFailed;
    return failure(type, error.message);
  }
  return error instanceof Error ? error : new Error(String(error));
}

export function createArchiveActivities({ logger, resticBin, env }: ArchiveDependencies) {
  return {
    async archiveSource(input: ArchiveSourceInput): Promise<ArchiveSourceResult> {
      const destination = destinationOf(input);
      const progress: Record<string, unknown> = { source: input.source, stage: 'choosing the snapshot', bytes: 0 };
      return withHeartbeat(() => ({ ...progress }), async () => {
        try {
          const bin = await resticBin();
          const found = await snapshots({ bin, repository: input.repository, env }, { tags: [`deployment=${input.deployment}`, `source=${input.source}`] });
          const chosen = chooseArchiveSnapshot(found);
          if (!chosen) {
            throw failure(FailureType.ConfigInvalid, `repository ${input.repositoryName} holds no snapshot of source ${input.source}: back it up first (backupctl backup --policy <policy> --wait); nothing was archived or deleted`);
          }
          const { snapshot, verified, note } = chosen;
          if (!verified) logger.warn({ archive: input.archive, source: input.source, snapshot: snapshot.short_id }, `archive ${input.archive}: source ${input.source} has no verified snapshot; archiving the newest (${snapshot.short_id}), not verified`);
          progress.stage = 'dump | zstd | upload';
          progress.snapshot = snapshot.short_id;
          const result = await archiveSnapshot({
            deployment: input.deployment, source: input.source, repository: input.repository, repositoryName: input.repositoryName, snapshot, resticBin: bin, env,
            destination, verified, note, ...(input.storageClass ? { storageClass: input.storageClass } : {}),
            onProgress: (bytes) => { progress.bytes = bytes; },
          });
          logger.info({ archive: input.archive, source: input.source, snapshot: snapshot.short_id, verified, key: result.key, bytes: result.manifest.bytes }, `archive of ${input.source} stored`);
          return {
            source: input.source, bucket: result.bucket, key: result.key, bytes: result.manifest.bytes, sha256: result.manifest.sha256,
            snapshotId: snapshot.id, snapshotTime: snapshot.time, verified, note,
          };
        } catch (error) {
          throw typedFailure(error);
        }
      });
    },

    /** After every archive of the run is complete: the older ones beyond keep, with their .sha256 and manifest. */
    async expireArchives(input: ExpireArchivesInput): Promise<string[]> {
      try {
        const deleted = await expireArchives(destinationOf(input), input.keep, input.complete, env);
        if (deleted.length > 0) logger.info({ bucket: input.bucket, prefix: input.prefix, keep: input.keep, deleted }, `older archives deleted (keep ${input.keep})`);
        return deleted;
      } catch (error) {
        throw typedFailure(error);
      }
    },
  };
}
