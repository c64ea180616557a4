/**
 * The one S3 module (issue 20, point 6): one client factory and one error classification for a
 * repository, a bucket source or replica and the audit trail. Pure: the errors are the SDK's own
 * exception class as it throws them, built here; the servers' answers are covered by
 * bucket-source, audit-store, audit-lock, immutable-repository and doctor tests.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { S3ServiceException } from '@aws-sdk/client-s3';
import { AuditStoreError, createAuditS3Client, describeAuditS3Error, type S3AuditLocation } from '../src/audit/store';
import type { BucketLocation, S3Repository } from '../src/config/schema';
import { registerSecretValue } from '../src/logging/logger';
import { FailureType } from '../src/shared/failures';
import { BucketSourceError, createBucketClient, describeBucketError } from '../src/sources/bucket-s3';
import { S3PreflightError, createS3Client, describeS3Error, type S3ClientUse } from '../src/storage/s3';

const endpoint = 'https://s3.example.test';
const keys = { accessKeyIdEnv: 'APP_S3_KEY', secretAccessKeyEnv: 'APP_S3_SECRET' };
const repository = { type: 's3', endpoint, bucket: 'backups', prefix: 'restic', region: 'us-east-1', pathStyle: true, ...keys, passwordEnv: 'RESTIC_PASSWORD' } as S3Repository;
const location: BucketLocation = { endpoint, bucket: 'uploads-copy', prefix: '', region: 'us-east-1', pathStyle: true, ...keys };
const audit: S3AuditLocation = { type: 's3', endpoint, bucket: 'audit-trail', prefix: 'audit/dep', region: 'us-east-1', pathStyle: true, accessKeyIdEnv: 'AUDIT_KEY', secretAccessKeyEnv: 'AUDIT_SECRET' };
const locked: S3AuditLocation = { ...audit, lock: { mode: 'compliance', days: 30 } };

function s3Error(name: string, status: number | undefined, message = `${name} from the server`): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: status === undefined ? {} : { httpStatusCode: status }, message });
}

/** Each of the three subjects, classified by the one classifier. */
const subjects = {
  repository: (error: unknown) => describeS3Error(error, repository),
  replica: (error: unknown) => describeBucketError(error, location, 'replica') as BucketSourceError,
  audit: (error: unknown) => describeAuditS3Error(error, audit, 'listing'),
};

test('rejected keys are CredentialsRejected for every subject, naming both variables and never a value', () => {
  registerSecretValue('sEcReT-VaLuE-123');
  for (const [subject, describe] of Object.entries(subjects)) {
    for (const error of [s3Error('InvalidAccessKeyId', 403), s3Error('SignatureDoesNotMatch', 403), s3Error('AccessDenied', 403), s3Error('Whatever', 403, 'signed with sEcReT-VaLuE-123')]) {
      const failure = describe(error);
      assert.equal(failure.failureType, FailureType.CredentialsRejected, `${subject} ${error.name}`);
      assert.match(failure.message, /S3 credentials were rejected by https:\/\/s3\.example\.test/);
      const [key, secret] = subject === 'audit' ? ['AUDIT_KEY', 'AUDIT_SECRET'] : ['APP_S3_KEY', 'APP_S3_SECRET'];
      assert.match(failure.message, new RegExp(`check the values of ${key} and ${secret}`));
      assert.ok(!failure.message.includes('sEcReT-VaLuE-123'), failure.message);
    }
  }
  assert.match(subjects.audit(s3Error('AccessDenied', 403)).message, /while listing s3:\/\/audit-trail\/audit\/dep\/ .*and that they may read and write that prefix$/);
  assert.match(subjects.replica(s3Error('AccessDenied', 403)).message, /for the replica bucket "uploads-copy"/);
});

test('a missing bucket is BucketMissing with how to create it; a missing object never is', () => {
  assert.deepEqual(
    Object.values(subjects).map((describe) => [describe(s3Error('NoSuchBucket', 404)).failureType, describe(s3Error('NoSuchBucket', 404)).message]),
    [
      [FailureType.BucketMissing, 'bucket "backups" does not exist at https://s3.example.test: create it (`backupctl init` does) or fix repositories.*.bucket'],
      [FailureType.BucketMissing, 'the replica bucket "uploads-copy" does not exist at https://s3.example.test: create it or fix the bucket name in the config'],
      [FailureType.BucketMissing, 'bucket audit-trail does not exist at https://s3.example.test: run backupctl init (or fix audit.bucket)'],
    ],
  );
  for (const describe of Object.values(subjects)) {
    for (const name of ['NoSuchKey', 'NoSuchVersion', 'NoSuchUpload']) assert.equal(describe(s3Error(name, 404)).failureType, FailureType.StorageUnreachable, name);
  }
  // A HEAD's 404 has no body: for a repository it is HeadBucket's (the bucket is gone), for a bucket source HeadObject's.
  assert.equal(subjects.repository(s3Error('NotFound', 404)).failureType, FailureType.BucketMissing);
  assert.equal(subjects.replica(s3Error('NotFound', 404)).failureType, FailureType.StorageUnreachable);
  assert.equal(subjects.audit(s3Error('NotFound', 404)).failureType, FailureType.StorageUnreachable);
});

test('a locked audit trail in a bucket without object lock is ConfigInvalid with the fix; unlocked, the same answer is a failure of the endpoint', () => {
  const refused = s3Error('InvalidRequest', 400, 'Bucket is missing Object Lock Configuration');
  const failure = describeAuditS3Error(refused, locked, 'writing entry 3 to');
  assert.equal(failure.failureType, FailureType.ConfigInvalid);
  assert.equal(failure.message, 'writing entry 3 to s3://audit-trail/audit/dep/ with an object lock was refused by https://s3.example.test: bucket audit-trail has no object lock (Bucket is missing Object Lock Configuration); S3 enables it only when a bucket is created: set audit.bucket to a new bucket and run backupctl init (it creates it locked), or remove audit.immutable');
  assert.equal(describeAuditS3Error(refused, audit, 'writing entry 3 to').failureType, FailureType.StorageUnreachable);
  assert.equal(describeS3Error(refused, repository).failureType, FailureType.StorageUnreachable);
});

test('anything else is StorageUnreachable naming the endpoint, the bucket and what was done', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { name: 'Error' });
  assert.equal(subjects.repository(refused).message, 'S3 endpoint https://s3.example.test failed or is unreachable for bucket "backups" (Error): connect ECONNREFUSED 127.0.0.1:9');
  assert.equal(subjects.audit(refused).message, 'S3 endpoint https://s3.example.test failed or is unreachable while listing s3://audit-trail/audit/dep/ (Error): connect ECONNREFUSED 127.0.0.1:9');
  assert.equal(subjects.replica(s3Error('InternalError', 500)).failureType, FailureType.StorageUnreachable);
  assert.ok(subjects.replica(s3Error('InternalError', 500)) instanceof BucketSourceError);
  assert.ok(subjects.audit(refused) instanceof AuditStoreError);
  // An abort is the caller's own, passed on as it is.
  const abort = Object.assign(new Error('aborted'), { name: 'AbortError' });
  assert.equal(describeBucketError(abort, location, 'source'), abort);
});

test('unset key variables: each subject\'s own error class, ConfigInvalid, naming both variables and the bucket', () => {
  const only = { APP_S3_KEY: 'id', AUDIT_KEY: 'id' };
  assert.throws(() => createS3Client(repository, only), (error: Error) => error instanceof S3PreflightError && error.failureType === FailureType.ConfigInvalid
    && error.message === 'environment variables APP_S3_KEY and APP_S3_SECRET must be set on this worker (for bucket "backups" at https://s3.example.test)');
  assert.throws(() => createBucketClient(location, only), (error: Error) => error instanceof BucketSourceError && error.failureType === FailureType.ConfigInvalid
    && /APP_S3_KEY and APP_S3_SECRET must be set on this worker \(for bucket "uploads-copy"/.test(error.message));
  assert.throws(() => createAuditS3Client(audit, only), (error: Error) => error instanceof AuditStoreError && error.failureType === FailureType.ConfigInvalid
    && /^audit trail at s3:\/\/audit-trail\/audit\/dep\/: environment variables AUDIT_KEY and AUDIT_SECRET must be set/.test(error.message));
});

test('one factory, its retries set by what the client is for', async () => {
  const env = { APP_S3_KEY: 'id', APP_S3_SECRET: 'secret-of-the-test' };
  const attempts: Record<S3ClientUse, number> = { preflight: 2, transfer: 3, bulk: 5, upload: 3 };
  for (const [use, expected] of Object.entries(attempts) as [S3ClientUse, number][]) {
    const client = createS3Client(repository, env, use);
    try {
      assert.equal(await client.config.maxAttempts(), expected, use);
      assert.equal(client.config.forcePathStyle, true);
      assert.equal(await client.config.region(), 'us-east-1');
    } finally {
      client.destroy();
    }
  }
  // The bucket source's client is the transfer one; the audit trail's the preflight one (its own keys, no restic password).
  const bucketClient = createBucketClient(location, env);
  const auditClient = createAuditS3Client(audit, { AUDIT_KEY: 'a', AUDIT_SECRET: 'b' });
  try {
    assert.equal(await bucketClient.config.maxAttempts(), 3);
    assert.equal(await auditClient.config.maxAttempts(), 2);
    assert.equal((await auditClient.config.credentials()).accessKeyId, 'a');
  } finally {
    bucketClient.destroy();
    auditClient.destroy();
  }
});
