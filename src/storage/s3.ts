/** S3 clients for repositories, and the preflight that tells rejected credentials from a missing bucket. */
import { HeadBucketCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { S3Repository } from '../config/schema';
import { FailureType } from '../shared/failures';
import { registerSecretValue } from '../logging/logger';

export function createS3Client(repository: S3Repository, env: NodeJS.ProcessEnv = process.env): S3Client {
  const accessKeyId = env[repository.accessKeyIdEnv];
  const secretAccessKey = env[repository.secretAccessKeyEnv];
  if (!accessKeyId || !secretAccessKey) {
    throw new S3PreflightError(`environment variables ${repository.accessKeyIdEnv} and ${repository.secretAccessKeyEnv} must be set on this worker`, FailureType.ConfigInvalid);
  }
  registerSecretValue(secretAccessKey);
  return new S3Client({
    endpoint: repository.endpoint,
    region: repository.region,
    forcePathStyle: repository.pathStyle,
    credentials: { accessKeyId, secretAccessKey },
    // The preflight should answer in seconds; restic has its own retries for the data path.
    maxAttempts: 2,
    // Checksums only where an operation requires one (PutObjectRetention, PutObjectLockConfiguration,
    // DeleteObjects...): Cloudflare R2 rejected the SDK's default CRC32 on every request in 2025.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { requestTimeout: 10_000, connectionTimeout: 5_000 },
  });
}

export class S3PreflightError extends Error {
  constructor(message: string, readonly failureType: FailureType) {
    super(message);
    this.name = 'S3PreflightError';
  }
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

export function describeS3Error(error: unknown, repository: S3Repository): S3PreflightError {
  const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
  const name = error instanceof Error ? error.name : String(error);
  if (status === 403 || /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden/.test(name)) {
    return new S3PreflightError(`S3 credentials were rejected by ${repository.endpoint} (${name}): check the values of ${repository.accessKeyIdEnv} and ${repository.secretAccessKeyEnv}`, FailureType.CredentialsRejected);
  }
  if (status === 404 || /NoSuchBucket|NotFound/.test(name)) {
    return new S3PreflightError(`bucket "${repository.bucket}" does not exist at ${repository.endpoint}: create it (\`backupctl init\` does) or fix repositories.*.bucket`, FailureType.BucketMissing);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new S3PreflightError(`S3 endpoint ${repository.endpoint} is unreachable: ${message}`, FailureType.StorageUnreachable);
}
