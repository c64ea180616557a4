/**
 * The replica's manifest: for every copied key, the source ETag and size it was copied from and
 * the ETag the copy got. It lives in the replica under `<prefix>/.backupctl/`, is written at each
 * checkpoint and at the end of a run, and saves a HeadObject per object: a key is unchanged when
 * the source's listing (ETag, size) equals the manifest's source side and the replica's listing
 * (ETag, size) equals its replica side. The manifest is only a cache: a key it does not vouch for
 * (no entry, or the copy's ETag is not the one it recorded) is asked about with HeadObject, which
 * reads the source ETag from the copy's own metadata.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { BucketLocation } from '../config/schema';
import { isNoSuchKey } from '../storage/s3';
import { describeBucketError, keyPrefix } from './bucket-s3';

export const MANIFEST_KEY = '.backupctl/replication-manifest.json.gz';

export interface ManifestEntry {
  sourceEtag: string;
  size: number;
  replicaEtag: string;
}

interface ManifestFile {
  version: 1;
  /** Which source the entries describe (endpoint, bucket, prefix). */
  source: string;
  writtenAt: string;
  /** [key, sourceEtag, size, replicaEtag]: a quarter of the size of objects with names. */
  entries: [string, string, number, string][];
}

export function locationIdentity(location: BucketLocation): string {
  return `${location.endpoint.replace(/\/+$/, '')}|${location.bucket}|${location.prefix}`;
}

/**
 * The manifest's entries, or an empty map when there is none, it is unreadable or it describes
 * another source (`source` undefined: any source, for a restore).
 */
export async function readManifest(client: S3Client, replica: BucketLocation, source: BucketLocation | undefined, options: { signal?: AbortSignal; onRequest?: () => void } = {}): Promise<Map<string, ManifestEntry>> {
  const entries = new Map<string, ManifestEntry>();
  let bytes: Uint8Array;
  try {
    options.onRequest?.();
    const got = await client.send(new GetObjectCommand({ Bucket: replica.bucket, Key: keyPrefix(replica) + MANIFEST_KEY }), { abortSignal: options.signal });
    bytes = await got.Body!.transformToByteArray();
  } catch (error) {
    if (isNoSuchKey(error)) return entries;
    throw describeBucketError(error, replica, 'replica');
  }
  let file: ManifestFile;
  try {
    file = JSON.parse(gunzipSync(bytes).toString('utf8')) as ManifestFile;
  } catch {
    return entries; // A damaged manifest costs HeadObject requests, never a wrong answer.
  }
  if (file.version !== 1 || !Array.isArray(file.entries) || (source !== undefined && file.source !== locationIdentity(source))) return entries;
  for (const row of file.entries) {
    if (Array.isArray(row) && row.length === 4 && typeof row[0] === 'string' && typeof row[1] === 'string' && typeof row[2] === 'number' && typeof row[3] === 'string') {
      entries.set(row[0], { sourceEtag: row[1], size: row[2], replicaEtag: row[3] });
    }
  }
  return entries;
}

export async function writeManifest(client: S3Client, replica: BucketLocation, source: BucketLocation, entries: ReadonlyMap<string, ManifestEntry>, options: { onRequest?: () => void } = {}): Promise<void> {
  const file: ManifestFile = {
    version: 1,
    source: locationIdentity(source),
    writtenAt: new Date().toISOString(),
    entries: [...entries].map(([key, entry]) => [key, entry.sourceEtag, entry.size, entry.replicaEtag]),
  };
  const body = gzipSync(JSON.stringify(file));
  try {
    options.onRequest?.();
    await client.send(new PutObjectCommand({ Bucket: replica.bucket, Key: keyPrefix(replica) + MANIFEST_KEY, Body: body, ContentLength: body.length, ContentType: 'application/gzip' }));
  } catch (error) {
    throw describeBucketError(error, replica, 'replica');
  }
}
