/**
 * Rewind: a restic repository on a versioned bucket as it was at a past time, copied into a new
 * prefix (never in place). For each key, the newest version (or delete marker) at or before the
 * time is chosen; a delete marker means the key did not exist then. `locks/` is skipped (a lock
 * of that time would only block the copy), and so is anything that is not restic's layout.
 */
import {
  CopyObjectCommand, GetBucketVersioningCommand, ListObjectsV2Command, ListObjectVersionsCommand, type S3Client,
} from '@aws-sdk/client-s3';
import type { S3Repository } from '../config/schema';
import { parseDuration } from '../config/units';
import { S3PreflightError, createS3Client, describeS3Error } from './s3';

/** One entry of ListObjectVersions: a version or a delete marker. */
export interface ObjectVersion {
  key: string;
  versionId: string;
  lastModified: Date;
  deleteMarker: boolean;
  size: number;
  /** S3's IsLatest: breaks a tie between two entries of one key with the same LastModified. */
  isLatest?: boolean;
}

/**
 * For each key, the newest entry with lastModified ≤ time; keys whose chosen entry is a delete
 * marker (deleted at or before the time) and keys created after the time are absent. Two
 * entries of one key with the same LastModified (S3 keeps milliseconds at best, AWS seconds):
 * the one S3 marks IsLatest wins, else the one listed first (S3 lists a key's versions newest
 * first). Sorted by key.
 */
export function versionsAt(versions: readonly ObjectVersion[], time: Date): ObjectVersion[] {
  const limit = time.getTime();
  if (Number.isNaN(limit)) throw new Error('versionsAt: invalid time');
  const chosen = new Map<string, ObjectVersion>();
  for (const version of versions) {
    if (version.lastModified.getTime() > limit) continue;
    const current = chosen.get(version.key);
    if (!current) {
      chosen.set(version.key, version);
      continue;
    }
    const newer = version.lastModified.getTime() - current.lastModified.getTime();
    if (newer > 0 || (newer === 0 && version.isLatest === true && current.isLatest !== true)) chosen.set(version.key, version);
  }
  return [...chosen.values()].filter((v) => !v.deleteMarker).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** `--to`: an ISO 8601 time with a zone (Z or ±hh:mm), or a duration ago ("90m", "2h", "1d"). */
export function parseRewindTime(text: string, now: Date = new Date()): Date {
  const value = text.trim();
  const relative = parseDuration(value);
  if (relative !== undefined) return new Date(now.getTime() - relative);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(value)) {
    throw new RewindRefused(`--to "${text}" is neither an ISO 8601 time with a zone nor a duration ago`, 'give a time such as 2026-12-05T06:00:00Z (or +01:00), or how long ago, such as 90m, 2h or 1d', 2);
  }
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) throw new RewindRefused(`--to "${text}" is not a valid time`, 'give a time such as 2026-12-05T06:00:00Z', 2);
  if (time.getTime() > now.getTime()) throw new RewindRefused(`--to ${time.toISOString()} is in the future`, 'give a time before the damage', 2);
  return time;
}

/** A refusal with what to do: nothing was copied. */
export class RewindRefused extends Error {
  override name = 'RewindRefused';
  readonly type = 'RewindRefused';
  constructor(message: string, readonly fix: string, readonly exitCode = 1) {
    super(message);
  }
}

/** The default new prefix: `<prefix>-rewound-<UTC time of the rewind, to the second>`. */
export function rewoundPrefix(prefix: string, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
  return prefix ? `${prefix}-rewound-${stamp}` : `rewound-${stamp}`;
}

/** restic's layout: what a rewind copies (locks/ is left behind, and anything else). */
const RESTIC_ENTRIES = /^(config|keys\/.+|data\/.+|index\/.+|snapshots\/.+)$/;

/** A client for listing and server-side copies (longer timeouts and more retries than the preflight's). */
export function rewindClient(repository: S3Repository, env: NodeJS.ProcessEnv = process.env): S3Client {
  return createS3Client(repository, env, 'bulk');
}

export interface RewindProgress {
  (event: { phase: 'listing'; versions: number } | { phase: 'listed'; versions: number; keys: number } | { phase: 'copied'; objects: number; of: number; bytes: number; totalBytes: number }): void;
}

export interface RewindPlan {
  repository: S3Repository;
  time: Date;
  /** The new prefix (no leading or trailing "/"). */
  prefix: string;
}

export interface RewindResult {
  bucket: string;
  fromPrefix: string;
  prefix: string;
  time: string;
  versionsListed: number;
  keysSeen: number;
  copied: number;
  bytes: number;
  /** Keys of that time that are not copied: locks/ and anything outside restic's layout. */
  skipped: string[];
  /** Keys that were deleted (a delete marker) at or before the time, or created after it. */
  absent: number;
  versioning: 'Enabled' | 'Suspended';
}

const under = (prefix: string): string => (prefix ? `${prefix}/` : '');

/** Every version and delete marker under a prefix, in S3's order (per key, newest first). */
export async function listVersions(client: S3Client, bucket: string, prefix: string, onPage?: (count: number) => void, pageSize?: number): Promise<ObjectVersion[]> {
  const all: ObjectVersion[] = [];
  let keyMarker: string | undefined;
  let versionIdMarker: string | undefined;
  for (;;) {
    const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: under(prefix), KeyMarker: keyMarker, VersionIdMarker: versionIdMarker, MaxKeys: pageSize }));
    // Versions and markers come in two lists; merged back into S3's order (key, then newest first).
    const entries: ObjectVersion[] = [
      ...(page.Versions ?? []).map((v) => ({ key: v.Key ?? '', versionId: v.VersionId ?? 'null', lastModified: v.LastModified ?? new Date(0), deleteMarker: false, size: v.Size ?? 0, isLatest: v.IsLatest })),
      ...(page.DeleteMarkers ?? []).map((m) => ({ key: m.Key ?? '', versionId: m.VersionId ?? 'null', lastModified: m.LastModified ?? new Date(0), deleteMarker: true, size: 0, isLatest: m.IsLatest })),
    ];
    entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : b.lastModified.getTime() - a.lastModified.getTime()));
    all.push(...entries);
    onPage?.(all.length);
    if (!page.IsTruncated) return all;
    keyMarker = page.NextKeyMarker;
    versionIdMarker = page.NextVersionIdMarker;
  }
}

/** CopyObject of one version; CopySource's key is URL-encoded, its "/" kept. */
function copySource(bucket: string, key: string, versionId: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}?versionId=${encodeURIComponent(versionId)}`;
}

/** Server-side copies are limited to 5 GiB; restic's packs are 16 MiB by default, 128 MiB at most. */
const MAX_COPY_BYTES = 5 * 1024 ** 3;

/**
 * Copies the repository as it was at `plan.time` into `plan.prefix` of the same bucket.
 * Refuses (nothing copied) a bucket whose versioning was never enabled, a new prefix that
 * overlaps the repository's, and a new prefix that already holds objects.
 */
export async function rewindRepository(client: S3Client, plan: RewindPlan, onProgress?: RewindProgress, concurrency = 8): Promise<RewindResult> {
  const { repository, time, prefix } = plan;
  const { bucket } = repository;
  const from = repository.prefix;
  if (!prefix || prefix.startsWith('/') || prefix.endsWith('/')) throw new RewindRefused(`the new prefix "${prefix}" is empty or starts or ends with "/"`, 'give --prefix a key prefix such as restic/main-rewound', 2);
  const overlaps = prefix === from
    || (from !== '' && (prefix.startsWith(`${from}/`) || from.startsWith(`${prefix}/`)))
    || (from === '' && /^(config|keys|data|index|snapshots|locks)(\/|$)/.test(prefix));
  if (overlaps) {
    throw new RewindRefused(`the new prefix "${prefix}" overlaps the repository's own prefix "${from}" in bucket ${bucket}`, 'rewind never writes in place: give --prefix a prefix beside the repository, such as the default <prefix>-rewound-<time>', 2);
  }
  let versioning: string | undefined;
  try {
    versioning = (await client.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status;
  } catch (error) {
    throw describeS3Error(error, repository);
  }
  if (versioning !== 'Enabled' && versioning !== 'Suspended') {
    throw new RewindRefused(
      `bucket ${bucket} has no versioning: its deleted and overwritten objects are gone, there is nothing to rewind to`,
      `enable versioning on the bucket now so that the next damage can be rewound (aws s3api put-bucket-versioning --bucket ${bucket} --versioning-configuration Status=Enabled, or a bucket created with object lock), and restore from another copy of the repository`,
    );
  }
  try {
    const existing = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, MaxKeys: 1 }));
    if ((existing.KeyCount ?? existing.Contents?.length ?? 0) > 0) {
      throw new RewindRefused(`prefix ${prefix}/ of bucket ${bucket} already holds objects`, 'give --prefix a new, empty prefix (the default adds the time of the rewind)', 2);
    }
    // A page holds up to 1000 entries: a count every 10 pages for large repositories.
    let pages = 0;
    const versions = await listVersions(client, bucket, from, (count) => {
      pages += 1;
      if (pages % 10 === 0) onProgress?.({ phase: 'listing', versions: count });
    });
    const keys = new Set(versions.map((v) => v.key)).size;
    onProgress?.({ phase: 'listed', versions: versions.length, keys });
    const chosen = versionsAt(versions, time);
    const skipped: string[] = [];
    const copies: { version: ObjectVersion; target: string }[] = [];
    for (const version of chosen) {
      const relative = version.key.slice(under(from).length);
      if (!RESTIC_ENTRIES.test(relative)) {
        skipped.push(relative);
        continue;
      }
      if (version.size > MAX_COPY_BYTES) throw new RewindRefused(`${version.key} is larger than 5 GiB, more than one server-side copy can take`, 'copy it by hand with a multipart copy (aws s3api upload-part-copy)');
      copies.push({ version, target: `${prefix}/${relative}` });
    }
    const totalBytes = copies.reduce((sum, c) => sum + c.version.size, 0);
    let copied = 0;
    let bytes = 0;
    let next = 0;
    const lane = async (): Promise<void> => {
      for (let i = next++; i < copies.length; i = next++) {
        const { version, target } = copies[i]!;
        await client.send(new CopyObjectCommand({ Bucket: bucket, Key: target, CopySource: copySource(bucket, version.key, version.versionId) }));
        copied += 1;
        bytes += version.size;
        if (copied === copies.length || copied % 100 === 0) {
          onProgress?.({ phase: 'copied', objects: copied, of: copies.length, bytes, totalBytes });
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, copies.length)) }, lane));
    } catch (error) {
      throw new RewindRefused(
        `copying into s3://${bucket}/${prefix}/ stopped after ${copied} of ${copies.length} objects: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
        `that copy is incomplete: run rewind again (a new default prefix, or another --prefix) once the cause is fixed, then remove ${prefix}/`,
      );
    }
    if (copies.length === 0) onProgress?.({ phase: 'copied', objects: 0, of: 0, bytes: 0, totalBytes: 0 });
    return {
      bucket, fromPrefix: from, prefix, time: time.toISOString(), versionsListed: versions.length, keysSeen: keys,
      copied, bytes, skipped, absent: keys - chosen.length, versioning,
    };
  } catch (error) {
    if (error instanceof RewindRefused || error instanceof S3PreflightError) throw error;
    if (error instanceof Error && /AccessDenied/.test(error.name)) {
      throw new RewindRefused(
        `the S3 key in ${repository.accessKeyIdEnv} may not list the versions of bucket ${bucket} (${error.message})`,
        `rewind with a key that may (s3:ListBucket, s3:ListBucketVersions, s3:GetObjectVersion, s3:PutObject on the bucket): export its values into ${repository.accessKeyIdEnv} and ${repository.secretAccessKeyEnv} for this command`,
      );
    }
    if (error instanceof Error && /InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket|ECONNREFUSED/.test(`${error.name} ${error.message}`)) throw describeS3Error(error, repository);
    throw error;
  }
}
