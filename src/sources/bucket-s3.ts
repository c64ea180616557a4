/**
 * The S3 plumbing of the s3-bucket source: src/storage/s3.ts's client and error classification
 * adapted to a BucketLocation (a source, replica or restore target), listings relative to a
 * location's prefix, and the fingerprint of a listing.
 */
import { createHash } from 'node:crypto';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { BucketLocation } from '../config/schema';
import { scrubSecrets } from '../logging/logger';
import { S3PreflightError, classifyS3Error, createS3Client, isAbortError } from '../storage/s3';
import { FailureType } from '../shared/failures';
import type { BucketFingerprint } from '../shared/fingerprints';

/** User metadata (x-amz-meta-backupctl-source-etag) holding the ETag of the source object a copy was made from. */
export const SOURCE_ETAG_METADATA = 'backupctl-source-etag';

/**
 * Keys (relative to a location's prefix) this service writes into a replica: its manifest and
 * doctor's write probe. Source objects under them are not replicated, as they would collide.
 */
export const RESERVED_PREFIXES = ['.backupctl/', '.backupctl-probe/'] as const;

export type BucketRole = 'source' | 'replica' | 'restore target';

export class BucketSourceError extends Error {
  constructor(message: string, readonly failureType: FailureType) {
    // An endpoint URL may carry a user and password.
    super(scrubSecrets(message));
    this.name = 'BucketSourceError';
  }
}

/** What an operator does about each failure, for doctor. */
export function fixFor(error: BucketSourceError, location: BucketLocation, role: BucketRole): string {
  switch (error.failureType) {
    case FailureType.ConfigInvalid:
      return `set ${location.accessKeyIdEnv} and ${location.secretAccessKeyEnv} in the worker's environment`;
    case FailureType.CredentialsRejected:
      return `set ${location.accessKeyIdEnv} and ${location.secretAccessKeyEnv} to a key that may ${role === 'source' ? 'list and read' : 'list, read, write and delete'} in bucket "${location.bucket}"`;
    case FailureType.BucketMissing:
      return `create bucket "${location.bucket}" at ${location.endpoint}, or fix the ${role === 'source' ? '' : 'replica\'s '}bucket name in the config`;
    default:
      return `check that ${location.endpoint} is the right endpoint and that this worker reaches it`;
  }
}

export function keyPrefix(location: BucketLocation): string {
  return location.prefix === '' ? '' : `${location.prefix}/`;
}

export function isReserved(relativeKey: string): boolean {
  return RESERVED_PREFIXES.some((reserved) => relativeKey.startsWith(reserved));
}

/** ETags come quoted (and, from some servers, weak): compare them bare. */
export function normalizeEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

/** A single-part upload's ETag is the MD5 of its bytes: 32 hex digits, no "-<parts>" suffix. */
export function isSinglePartEtag(etag: string): boolean {
  return /^[0-9a-f]{32}$/i.test(etag);
}

/** S3 lists keys in the order of their UTF-8 bytes, which is not JavaScript's string order. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A client for a bucket location (streamed copies: longer timeouts than a preflight's); missing variables are a ConfigInvalid naming them. */
export function createBucketClient(location: BucketLocation, env: NodeJS.ProcessEnv): S3Client {
  try {
    return createS3Client(location, env, 'transfer');
  } catch (error) {
    // Unset key variables (a ConfigInvalid naming them and the bucket), as a bucket source's error.
    if (!(error instanceof S3PreflightError)) throw error;
    throw new BucketSourceError(error.message, error.failureType);
  }
}

/** classifyS3Error (src/storage/s3.ts) for a source, replica or restore target. */
export function describeBucketError(error: unknown, location: BucketLocation, role: BucketRole): Error {
  if (error instanceof BucketSourceError || isAbortError(error)) return error as Error;
  const { failureType, message } = classifyS3Error(error, {
    connection: location, bucket: `the ${role} bucket "${location.bucket}"`,
    create: 'create it or fix the bucket name in the config',
  });
  return new BucketSourceError(message, failureType);
}

/** One object, its key relative to the location's prefix. */
export interface ObjectEntry {
  key: string;
  size: number;
  /** Bare ETag (no quotes). */
  etag: string;
}

export interface ListOptions {
  signal?: AbortSignal;
  onRequest?: () => void;
  /** Stop after this many pages (doctor's estimate); undefined: everything. */
  maxPages?: number;
}

/** Every object under the location's prefix, in listing (UTF-8 byte) order, reserved keys left out. */
export async function listObjects(client: S3Client, location: BucketLocation, role: BucketRole, options: ListOptions = {}): Promise<{ entries: ObjectEntry[]; complete: boolean }> {
  const prefix = keyPrefix(location);
  const entries: ObjectEntry[] = [];
  let token: string | undefined;
  let pages = 0;
  try {
    do {
      options.onRequest?.();
      const page = await client.send(new ListObjectsV2Command({ Bucket: location.bucket, Prefix: prefix === '' ? undefined : prefix, ContinuationToken: token, MaxKeys: 1000 }), { abortSignal: options.signal });
      pages++;
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(prefix)) continue;
        const key = object.Key.slice(prefix.length);
        if (key === '' || isReserved(key)) continue;
        entries.push({ key, size: object.Size ?? 0, etag: normalizeEtag(object.ETag) });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined && (options.maxPages === undefined || pages < options.maxPages));
  } catch (error) {
    throw describeBucketError(error, location, role);
  }
  return { entries, complete: token === undefined };
}

/** The fingerprint of a listing: "key size etag" lines in key order, hashed. */
export function fingerprintOf(entries: readonly { key: string; size: number; etag: string }[]): BucketFingerprint {
  const hash = createHash('sha256');
  let bytes = 0;
  for (const entry of [...entries].sort((a, b) => compareKeys(a.key, b.key))) {
    hash.update(`${entry.key} ${entry.size} ${entry.etag}\n`);
    bytes += entry.size;
  }
  return { kind: 'bucket', objects: entries.length, bytes, checksum: hash.digest('hex') };
}
