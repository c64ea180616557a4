/**
 * `backupctl init`: creates what a repository needs (the bucket, the restic repository).
 * It never touches a repository that already exists. An immutable repository's bucket is created
 * with object lock; an existing one gets its default retention and lifecycle rule checked and set,
 * and one without object lock is refused before anything changes (src/storage/object-lock.ts).
 * A copy repository (policies.<p>.copyTo) takes the chunker parameters of the repository it
 * copies from, created after it (src/cli/init-copy.ts).
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { Config } from '../config/schema';
import { ResticError, repositoryLocation, runRestic } from '../restic/restic';
import { FailureType } from '../shared/failures';
import { S3PreflightError, checkBucket, createS3Client } from '../storage/s3';
import { prepareImmutableBucket } from '../storage/object-lock';
import { chunkerMismatch, copySources, initCopyRepository, type CopyInitContext } from './init-copy';

export interface InitResult {
  repository: string;
  action: 'created' | 'existed';
  detail: string;
}

export async function initRepositories(config: Config, resticBin: string, names?: string[], env: NodeJS.ProcessEnv = process.env, rcloneBin?: string): Promise<InitResult[]> {
  const results: InitResult[] = [];
  const copyFrom = copySources(config);
  const copyContext: CopyInitContext = { config, resticBin, env, rcloneBin };
  // Copy repositories last: each is created from its source's config.
  const ordered = Object.entries(config.repositories).sort(([a], [b]) => Number(copyFrom.has(a)) - Number(copyFrom.has(b)));
  for (const [name, repository] of ordered) {
    if (names && names.length > 0 && !names.includes(name)) continue;
    const created: string[] = [];
    if (repository.type === 's3') {
      const client = createS3Client(repository, env);
      try {
        let exists = true;
        try {
          await checkBucket(client, repository);
        } catch (error) {
          if (!(error instanceof S3PreflightError) || error.failureType !== FailureType.BucketMissing) throw error;
          exists = false;
        }
        if (repository.immutable) {
          // Object lock first: an existing bucket without it is refused before restic writes anything.
          created.push(...await prepareImmutableBucket(client, repository, exists, name));
        } else if (!exists) {
          await client.send(new CreateBucketCommand({ Bucket: repository.bucket }));
          created.push(`bucket ${repository.bucket}`);
        }
      } finally {
        client.destroy();
      }
    }
    const copiesFrom = copyFrom.get(name);
    let existed = true;
    try {
      await runRestic(['cat', 'config', '--no-lock'], { bin: resticBin, repository, env });
    } catch (error) {
      if (!(error instanceof ResticError) || error.failureType !== FailureType.RepositoryNotInitialised) throw error;
      existed = false;
      if (copiesFrom !== undefined) created.push(await initCopyRepository(copyContext, name, repository, copiesFrom));
      else {
        await runRestic(['init'], { bin: resticBin, repository, env });
        created.push('restic repository');
      }
    }
    const mismatch = existed && copiesFrom !== undefined ? await chunkerMismatch(copyContext, name, repository, copiesFrom) : undefined;
    results.push({
      repository: name,
      action: created.length > 0 ? 'created' : 'existed',
      detail: `${created.length > 0 ? `${created.join(' and ')} at ${repositoryLocation(repository)}` : `${repositoryLocation(repository)} already initialised`}${mismatch ? `; ${mismatch}` : ''}`,
    });
  }
  return results;
}
