/**
 * The one S3 module: a client for any S3 place in the config (a restic repository, a bucket
 * source or its replica, an archive destination, the audit trail), the preflight that tells
 * rejected credentials from a missing bucket, and the one classification of S3 errors into
 * failure types, each with what the operator must fix. Callers adapt it in a line or two:
 * src/sources/bucket-s3.ts (bucket sources) and src/audit/store.ts (the audit trail).
 */
import { HeadBucketCommand, S3Client, S3ServiceException, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { S3Repository } from '../config/schema';
import { FailureType } from '../shared/failures';
import { registerSecretValue, scrubSecrets } from '../logging/logger';

/** How to reach a bucket with keys from the environment: the fields every S3 place in the config has. */
export interface S3Connection {
  endpoint: string;
  bucket: string;
  region: string;
  pathStyle: boolean;
  /** Names of the variables that hold the key; their values are read from the environment only. */
  accessKeyIdEnv: string;
  secretAccessKeyEnv: string;
}

/**
 * What a client is for, which sets its retries and timeouts (requestTimeout is a socket's idle
 * time, not the length of a transfer):
 * - preflight: HeadBucket, listings for usage and metrics, lock settings, the audit trail; it
 *   should answer in seconds, and restic has its own retries for the data path;
 * - transfer: a bucket source's streamed copies;
 * - bulk: rewind's listings of every version and its server-side copies;
 * - upload: archive uploads of any length (the SDK's own retries and timeouts).
 */
const CLIENT_SETTINGS = {
  preflight: { maxAttempts: 2, requestHandler: { requestTimeout: 10_000, connectionTimeout: 5_000 } },
  transfer: { maxAttempts: 3, requestHandler: { requestTimeout: 120_000, connectionTimeout: 10_000 } },
  bulk: { maxAttempts: 5, requestHandler: { requestTimeout: 300_000, connectionTimeout: 10_000 } },
  upload: {},
} satisfies Record<string, Partial<S3ClientConfig>>;

export type S3ClientUse = keyof typeof CLIENT_SETTINGS;

/** An S3 failure with the failure type an activity raises it as. */
export class S3PreflightError extends Error {
  constructor(message: string, readonly failureType: FailureType) {
    super(message);
    this.name = 'S3PreflightError';
  }
}

/**
 * The one S3 client factory. Missing key variables are a ConfigInvalid naming them; the secret's
 * value is registered with the logger so it is scrubbed wherever it might appear.
 */
export function createS3Client(connection: S3Connection, env: NodeJS.ProcessEnv = process.env, use: S3ClientUse = 'preflight'): S3Client {
  const accessKeyId = env[connection.accessKeyIdEnv];
  const secretAccessKey = env[connection.secretAccessKeyEnv];
  if (!accessKeyId || !secretAccessKey) {
    throw new S3PreflightError(`environment variables ${connection.accessKeyIdEnv} and ${connection.secretAccessKeyEnv} must be set on this worker (for bucket "${connection.bucket}" at ${connection.endpoint})`, FailureType.ConfigInvalid);
  }
  registerSecretValue(secretAccessKey);
  return new S3Client({
    endpoint: connection.endpoint,
    region: connection.region,
    forcePathStyle: connection.pathStyle,
    credentials: { accessKeyId, secretAccessKey },
    // Checksums only where an operation requires one (PutObjectRetention, DeleteObjects...):
    // Cloudflare R2 rejected the SDK's default CRC32 on every request in 2025, and the streamed
    // CRC32 trailer (aws-chunked encoding) is not understood by every S3-compatible endpoint.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...CLIENT_SETTINGS[use],
  });
}

/** HeadBucket, with each way it can fail turned into what the operator must fix. */
export async function checkBucket(client: S3Client, repository: S3Repository): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: repository.bucket }));
  } catch (error) {
    throw describeS3Error(error, repository);
  }
}

/** checkBucket with a client of its own: the repository's keys reach its bucket, or a typed S3PreflightError says why not. */
export async function checkRepositoryBucket(repository: S3Repository, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const client = createS3Client(repository, env);
  try {
    await checkBucket(client, repository);
  } finally {
    client.destroy();
  }
}

export function s3ErrorStatus(error: unknown): number | undefined {
  if (error instanceof S3ServiceException) return error.$metadata.httpStatusCode;
  if (typeof error === 'object' && error !== null && '$metadata' in error) {
    return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  }
  return undefined;
}

export function s3ErrorName(error: unknown): string {
  return error instanceof Error ? error.name : String(error);
}

/** "The object is not there" (deleted since it was listed), as opposed to "the bucket is not there". */
export function isNoSuchKey(error: unknown): boolean {
  const name = s3ErrorName(error);
  return name === 'NoSuchKey' || (name === 'NotFound' && s3ErrorStatus(error) === 404);
}

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || (error.name === 'TimeoutError' && /abort/i.test(error.message)));
}

/** What an S3 call was about, as the messages of classifyS3Error name it. */
export interface S3Subject {
  connection: S3Connection;
  /** The bucket as a message names it: `bucket "b"`, `the replica bucket "b"`. */
  bucket: string;
  /** What was being done, where that says more than the bucket: "writing entry 3 to s3://b/audit/". */
  doing?: string;
  /** How to get a missing bucket: "create it (`backupctl init` does) or fix repositories.*.bucket". */
  create: string;
  /** What the keys must be allowed besides being right: "read and write that prefix". */
  keysMay?: string;
  /** A bare 404 "NotFound" (a HEAD request's, no body) is the bucket missing: the subject's only HEAD is HeadBucket. */
  headIsBucket?: boolean;
  /** Set where writes carry an object lock: a 400 naming the lock is a bucket without one, and this is the fix. */
  lockFix?: string;
}

const REJECTED = /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden/;
const OBJECT_MISSING = new Set(['NoSuchKey', 'NoSuchVersion', 'NoSuchUpload']);

/** The one classification of S3 errors: the failure type, and a message naming what to fix (the variables, never their values). */
export function classifyS3Error(error: unknown, subject: S3Subject): { failureType: FailureType; message: string } {
  if (error instanceof S3PreflightError) return error;
  const { endpoint, bucket, accessKeyIdEnv, secretAccessKeyEnv } = subject.connection;
  const status = s3ErrorStatus(error);
  const name = s3ErrorName(error);
  const message = scrubSecrets(error instanceof Error ? error.message || name : String(error));
  const about = subject.doing ? `while ${subject.doing}` : `for ${subject.bucket}`;
  if (status === 403 || REJECTED.test(name)) {
    return {
      failureType: FailureType.CredentialsRejected,
      message: `S3 credentials were rejected by ${endpoint} ${about} (${name}): check the values of ${accessKeyIdEnv} and ${secretAccessKeyEnv}${subject.keysMay ? ` and that they may ${subject.keysMay}` : ''}`,
    };
  }
  if (name === 'NoSuchBucket' || (status === 404 && !OBJECT_MISSING.has(name) && (name !== 'NotFound' || subject.headIsBucket === true))) {
    return { failureType: FailureType.BucketMissing, message: `${subject.bucket} does not exist at ${endpoint}: ${subject.create}` };
  }
  if (subject.lockFix && status === 400 && /object ?lock/i.test(`${name} ${message}`)) {
    return {
      failureType: FailureType.ConfigInvalid,
      message: `${subject.doing ?? `writing to ${subject.bucket}`} with an object lock was refused by ${endpoint}: bucket ${bucket} has no object lock (${message}); S3 enables it only when a bucket is created: ${subject.lockFix}`,
    };
  }
  return { failureType: FailureType.StorageUnreachable, message: `S3 endpoint ${endpoint} failed or is unreachable ${about} (${name}): ${message}` };
}

/** classifyS3Error for a restic repository's bucket. */
export function describeS3Error(error: unknown, repository: S3Repository): S3PreflightError {
  if (error instanceof S3PreflightError) return error;
  const { failureType, message } = classifyS3Error(error, {
    connection: repository, bucket: `bucket "${repository.bucket}"`, headIsBucket: true,
    create: 'create it (`backupctl init` does) or fix repositories.*.bucket',
  });
  return new S3PreflightError(message, failureType);
}
