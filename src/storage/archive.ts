/**
 * A self-contained archive of one snapshot (issue 17, point 4): `restic dump --archive tar` piped
 * through `zstd` into an S3 multipart upload, its SHA-256 computed in the pipe. The upload is
 * completed only after restic and zstd both exit 0; otherwise it is aborted and no object remains.
 * Beside it, `<name>.tar.zst.sha256` (sha256sum's format) and `<name>.tar.zst.json` (a manifest
 * that says how to restore it with stock tools: `curl … | zstd -d | tar -x`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import {
  AbortMultipartUploadCommand, DeleteObjectsCommand, GetBucketLifecycleConfigurationCommand, GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand, PutObjectCommand, type LifecycleRule, type S3Client, type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Config, Repository, S3Repository, Schedule } from '../config/schema';
import { parseDuration } from '../config/units';
import { scrubSecrets } from '../logging/logger';
import { classifyResticFailure, repositoryEnvironment, repositoryOptions } from '../restic/restic';
import type { Snapshot } from '../restic/commands';
import { createS3Client } from './s3';
import { PARTIAL_TAG, VERIFIED_TAG } from '../shared/backup-types';

export class ArchiveFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveFailed';
  }
}

export interface ArchiveDestination {
  /** Endpoint, region, addressing and the credentials' variables (the repository's). */
  s3: S3Repository;
  bucket: string;
  /** Folder of the archive, without trailing "/". */
  prefix: string;
}

export interface ArchiveRequest {
  deployment: string;
  source: string;
  /** The restic repository that holds the snapshot. */
  repository: Repository;
  repositoryName: string;
  snapshot: Snapshot;
  destination: ArchiveDestination;
  resticBin: string;
  zstdBin?: string;
  /** zstd's level (default 3). */
  level?: number;
  env?: NodeJS.ProcessEnv;
  /** Told restic's pid once it runs (tests stop it midway). */
  onResticSpawn?: (pid: number) => void;
  /** Compressed bytes that went through the pipe so far. */
  onProgress?: (bytes: number) => void;
  /** Multipart part size (default 8 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** The S3 storage class of the .tar.zst (the .sha256 and manifest stay in the bucket's default). */
  storageClass?: string;
  /** Whether the snapshot passed a verification (tagged verified); false: the newest, unverified, said so in the manifest. */
  verified?: boolean;
  /** Why this snapshot was chosen, for the manifest (e.g. "no verified snapshot: the newest"). */
  note?: string;
}

export interface ArchiveManifest {
  format: 'tar+zstd';
  deployment: string;
  source: string;
  repository: string;
  snapshot: { id: string; time: string; hostname: string; paths: string[]; verified?: boolean };
  /** Why this snapshot (the newest verified one, or the newest when none was verified). */
  note?: string;
  storageClass?: string;
  bucket: string;
  key: string;
  bytes: number;
  sha256: string;
  createdAt: string;
  restore: string[];
}

export interface ArchiveResult {
  bucket: string;
  key: string;
  sha256Key: string;
  manifestKey: string;
  manifest: ArchiveManifest;
}

/** `2026-12-05T06-00-00Z` from restic's `2026-12-05T06:00:00.123456789Z`: no colons in the key. */
export function archiveTimeName(time: string): string {
  const date = new Date(time.replace(/(\.\d{3})\d+/, '$1'));
  if (Number.isNaN(date.getTime())) throw new ArchiveFailed(`snapshot time ${time} is not a time`);
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/:/g, '-');
}

/** `archives/<deployment>/<source>`: the default folder in the repository's bucket. */
export function defaultArchivePrefix(deployment: string, source: string): string {
  return `archives/${deployment}/${source}`;
}

export function archiveKey(prefix: string, snapshotTime: string): string {
  return `${prefix ? `${prefix.replace(/\/+$/, '')}/` : ''}${archiveTimeName(snapshotTime)}.tar.zst`;
}

/** The newest snapshot of a source among restic's snapshots (tags deployment=, source=). */
export function newestSnapshot(snapshots: readonly Snapshot[]): Snapshot | undefined {
  return [...snapshots].sort((a, b) => Date.parse(a.time.replace(/(\.\d{3})\d+/, '$1')) - Date.parse(b.time.replace(/(\.\d{3})\d+/, '$1'))).at(-1);
}

/**
 * What an archive run takes of a source: its newest snapshot tagged `verified` (a verification
 * restored and compared it), else its newest complete one, else its newest, saying which.
 */
export function chooseArchiveSnapshot(found: readonly Snapshot[]): { snapshot: Snapshot; verified: boolean; note: string } | undefined {
  const verified = newestSnapshot(found.filter((s) => s.tags?.includes(VERIFIED_TAG)));
  if (verified) return { snapshot: verified, verified: true, note: `the newest verified snapshot (tagged ${VERIFIED_TAG})` };
  const complete = newestSnapshot(found.filter((s) => !s.tags?.includes(PARTIAL_TAG)));
  const newest = complete ?? newestSnapshot(found);
  if (!newest) return undefined;
  return { snapshot: newest, verified: false, note: `no verified snapshot of this source (run backupctl verify): the newest${complete ? '' : ', tagged partial (files were unreadable)'}, not verified` };
}

/** A client for long uploads (the preflight client gives up after 10 s). */
export function archiveClient(destination: ArchiveDestination, env: NodeJS.ProcessEnv = process.env): S3Client {
  return createS3Client({ ...destination.s3, bucket: destination.bucket }, env, 'upload');
}

/** The shell lines that restore the archive with stock tools. */
export function restoreLines(destination: ArchiveDestination, key: string): string[] {
  const name = key.split('/').at(-1)!;
  const url = `${destination.s3.endpoint.replace(/\/+$/, '')}/${destination.bucket}/${key}`;
  return [
    `aws s3 cp s3://${destination.bucket}/${key} ${name} --endpoint-url ${destination.s3.endpoint} && aws s3 cp s3://${destination.bucket}/${key}.sha256 - --endpoint-url ${destination.s3.endpoint} | sha256sum -c -`,
    `mkdir restored && zstd -d -c ${name} | tar -x -C restored`,
    `or, with a presigned URL (aws s3 presign s3://${destination.bucket}/${key} --endpoint-url ${destination.s3.endpoint}): curl -fsS "<url>" | zstd -d | tar -x -C restored   (the object: ${url})`,
  ];
}

interface Exit { code: number | null; signal: NodeJS.Signals | null; stderr: string }

function exited(child: ChildProcess, name: string): Promise<Exit> {
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-16 * 1024); });
  return new Promise((resolve) => {
    child.on('error', (error) => resolve({ code: null, signal: null, stderr: `could not run ${name}: ${error.message}` }));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** Aborts what a failed upload may have left open under the key (lib-storage aborts its own; this makes sure). */
async function abortOpenUploads(client: S3Client, bucket: string, key: string): Promise<void> {
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  do {
    const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
    for (const upload of page.Uploads ?? []) {
      if (upload.Key === key && upload.UploadId) await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId }));
    }
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
  } while (keyMarker);
}

export async function archiveSnapshot(request: ArchiveRequest): Promise<ArchiveResult> {
  const env = request.env ?? process.env;
  const { destination, snapshot } = request;
  const key = archiveKey(destination.prefix, snapshot.time);
  const client = archiveClient(destination, env);
  try {
    const restic = spawn(request.resticBin, [...repositoryOptions(request.repository), 'dump', '--archive', 'tar', snapshot.id, '/'], {
      env: repositoryEnvironment(request.repository, env), stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (restic.pid !== undefined) request.onResticSpawn?.(restic.pid);
    const zstd = spawn(request.zstdBin ?? 'zstd', ['-q', '-c', `-${request.level ?? 3}`, '-T0'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const resticExit = exited(restic, 'restic');
    const zstdExit = exited(zstd, 'zstd');
    restic.stdout.pipe(zstd.stdin);
    zstd.stdin.on('error', () => { /* zstd gone: its exit says why */ });

    const hash = createHash('sha256');
    let bytes = 0;
    // The body ends only when both processes exited 0; else it errors and the upload is aborted.
    const body = new PassThrough();
    zstd.stdout.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      request.onProgress?.(bytes);
    });
    zstd.stdout.pipe(body, { end: false });
    const outcome = Promise.all([resticExit, zstdExit, new Promise<void>((resolve) => zstd.stdout.on('close', () => resolve()))]).then(([r, z]) => {
      if (r.code !== 0) {
        const said = r.signal && !r.stderr.trim() ? `restic was stopped by ${r.signal}` : r.stderr;
        return classifyResticFailure('dump', r.code, scrubSecrets(said), request.repository).message;
      }
      if (z.code !== 0) return `zstd failed (exit ${String(z.code)}${z.signal ? `, ${z.signal}` : ''}): ${z.stderr.trim()}`;
      return undefined;
    });
    void outcome.then((failure) => {
      if (failure) body.destroy(new ArchiveFailed(failure));
      else body.end();
    });

    const upload = new Upload({
      client, partSize: request.partSize ?? 8 * 1024 * 1024, queueSize: 2, leavePartsOnError: false,
      params: { Bucket: destination.bucket, Key: key, Body: body, ContentType: 'application/zstd', ...(request.storageClass ? { StorageClass: request.storageClass as StorageClass } : {}) },
    });
    try {
      await upload.done();
    } catch (error) {
      restic.kill('SIGINT');
      zstd.kill('SIGTERM');
      await Promise.all([resticExit, zstdExit]);
      await abortOpenUploads(client, destination.bucket, key).catch(() => undefined);
      const failure = await outcome;
      throw new ArchiveFailed(`the archive of snapshot ${snapshot.short_id} was not stored (the upload was aborted): ${failure ?? (error instanceof Error ? error.message : String(error))}`);
    }
    // Defensive: the body cannot end unless both exited 0.
    const failure = await outcome;
    if (failure) throw new ArchiveFailed(`archive of snapshot ${snapshot.short_id}: ${failure}`);

    const sha256 = hash.digest('hex');
    const name = key.split('/').at(-1)!;
    const manifest: ArchiveManifest = {
      format: 'tar+zstd', deployment: request.deployment, source: request.source, repository: request.repositoryName,
      snapshot: { id: snapshot.id, time: snapshot.time, hostname: snapshot.hostname, paths: snapshot.paths, ...(request.verified !== undefined ? { verified: request.verified } : {}) },
      ...(request.note ? { note: request.note } : {}), ...(request.storageClass ? { storageClass: request.storageClass } : {}),
      bucket: destination.bucket, key, bytes, sha256, createdAt: new Date().toISOString(),
      restore: restoreLines(destination, key),
    };
    await client.send(new PutObjectCommand({ Bucket: destination.bucket, Key: `${key}.sha256`, Body: `${sha256}  ${name}\n`, ContentType: 'text/plain' }));
    await client.send(new PutObjectCommand({ Bucket: destination.bucket, Key: `${key}.json`, Body: `${JSON.stringify(manifest, null, 2)}\n`, ContentType: 'application/json' }));
    return { bucket: destination.bucket, key, sha256Key: `${key}.sha256`, manifestKey: `${key}.json`, manifest };
  } finally {
    client.destroy();
  }
}

/** The .tar.zst keys of a source's folder, oldest first (their names are the snapshots' times). */
export async function listArchiveKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix.replace(/\/+$/, '')}/`, ContinuationToken: token }));
    for (const object of page.Contents ?? []) if (object.Key?.endsWith('.tar.zst')) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/**
 * Deletes the archives of a folder beyond the newest `keep` (each with its .sha256 and manifest),
 * never `complete`: the archive this run just finished. Called only after it is complete.
 */
export async function expireArchives(destination: ArchiveDestination, keep: number, complete: string, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  if (!Number.isSafeInteger(keep) || keep < 1) throw new ArchiveFailed(`keep must be a whole number from 1, got ${keep}`);
  const client = archiveClient(destination, env);
  try {
    const keys = await listArchiveKeys(client, destination.bucket, destination.prefix);
    if (!keys.includes(complete)) throw new ArchiveFailed(`the archive s3://${destination.bucket}/${complete} just written is not listed under ${destination.prefix}/: nothing was deleted`);
    // The one just written, and the newest keep - 1 of the others.
    const others = keys.filter((key) => key !== complete);
    const kept = new Set([complete, ...others.slice(others.length - (keep - 1))]);
    const deleted = keys.filter((key) => !kept.has(key));
    for (let i = 0; i < deleted.length; i += 300) {
      const objects = deleted.slice(i, i + 300).flatMap((key) => [{ Key: key }, { Key: `${key}.sha256` }, { Key: `${key}.json` }]);
      const result = await client.send(new DeleteObjectsCommand({ Bucket: destination.bucket, Delete: { Objects: objects, Quiet: true } }));
      if (result.Errors?.length) throw new ArchiveFailed(`deleting older archives: ${result.Errors.slice(0, 3).map((e) => `${e.Key}: ${e.Code} ${e.Message}`).join('; ')}`);
    }
    return deleted;
  } finally {
    client.destroy();
  }
}

/** A presigned GET URL of an object, valid `hours` hours (at most 7 days, S3's limit for SigV4). */
export async function presignArchiveUrl(destination: ArchiveDestination, key: string, hours: number, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (!(hours > 0 && hours <= 168)) throw new ArchiveFailed(`a presigned URL is valid 1 second to 168 hours (7 days, S3's limit), got ${hours} hours`);
  const client = archiveClient(destination, env);
  try {
    return await getSignedUrl(client, new GetObjectCommand({ Bucket: destination.bucket, Key: key }), { expiresIn: Math.round(hours * 3600) });
  } finally {
    client.destroy();
  }
}

/**
 * The longest gap between two runs of a schedule, for the lifecycle's backstop: `every` says it;
 * a cron expression is read by its fields (a fixed month: a year; a fixed day of the month: 31
 * days; a fixed day of the week: 7 days; a fixed hour: a day; else an hour), rounding up.
 */
export function longestIntervalDays(schedule: Schedule): number {
  if (schedule.every !== undefined) return Math.max(1, Math.ceil(parseDuration(schedule.every)! / 86_400_000));
  const [, , dayOfMonth, month, dayOfWeek] = schedule.cron!.trim().split(/\s+/);
  const fixed = (field: string | undefined) => field !== undefined && field !== '*' && field !== '?';
  if (fixed(month)) return 366;
  if (fixed(dayOfMonth)) return 31;
  if (fixed(dayOfWeek)) return 7;
  return 1;
}

/** Days after which init's lifecycle rule expires an archive: (keep + 1) intervals plus 30 days, so only archives that keep missed go. */
export function archiveExpiryDays(schedule: Schedule, keep: number): number {
  return (keep + 1) * longestIntervalDays(schedule) + 30;
}

export type ArchiveLifecycleAction = 'created' | 'updated' | 'unchanged';

export interface ArchiveLifecycle {
  archive: string;
  source: string;
  bucket: string;
  prefix: string;
  days: number;
  storageClass?: string;
  action: ArchiveLifecycleAction;
}

/** "backupctl-archive-<deployment>-<archive>-<source>": one rule per source folder. */
export function archiveLifecycleRuleId(deployment: string, archive: string, source: string): string {
  return `backupctl-archive-${deployment}-${archive}-${source}`.slice(0, 255);
}

function sameRule(a: LifecycleRule, b: LifecycleRule): boolean {
  const prefix = (rule: LifecycleRule) => rule.Filter?.Prefix ?? rule.Prefix;
  return a.Status === b.Status && prefix(a) === prefix(b) && a.Expiration?.Days === b.Expiration?.Days
    && !a.Filter?.And && !a.Filter?.Tag && !a.Transitions?.length && !a.NoncurrentVersionExpiration?.NoncurrentDays && !b.Transitions?.length;
}

/**
 * `init`: a lifecycle rule per archived source's folder: objects expire after
 * archiveExpiryDays (a backstop: keep deletes older archives after each complete run). Merged by rule ID with the bucket's other
 * rules (PutBucketLifecycleConfiguration replaces all of them): read, merge, write once per bucket.
 * The storage class is set at upload time (archives.<n>.storageClass), not by a transition.
 */
export async function ensureArchiveLifecycles(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<ArchiveLifecycle[]> {
  const wanted = new Map<string, { s3: S3Repository; bucket: string; rules: { rule: LifecycleRule; row: Omit<ArchiveLifecycle, 'action'> }[] }>();
  for (const [archiveName, archive] of Object.entries(config.archives ?? {})) {
    const repository = config.repositories[archive.repository];
    if (repository?.type !== 's3') continue;
    const bucket = archive.bucket ?? repository.bucket;
    const days = archiveExpiryDays(archive.schedule, archive.keep);
    const entry = wanted.get(`${repository.endpoint} ${bucket}`) ?? { s3: repository, bucket, rules: [] };
    for (const source of archive.sources) {
      const prefix = `${archive.prefix ?? `archives/${config.deployment}`}/${source}/`;
      entry.rules.push({
        rule: { ID: archiveLifecycleRuleId(config.deployment, archiveName, source), Status: 'Enabled', Filter: { Prefix: prefix }, Expiration: { Days: days } },
        row: { archive: archiveName, source, bucket, prefix, days, ...(archive.storageClass ? { storageClass: archive.storageClass } : {}) },
      });
    }
    wanted.set(`${repository.endpoint} ${bucket}`, entry);
  }
  const rows: ArchiveLifecycle[] = [];
  for (const { s3, bucket, rules } of wanted.values()) {
    const client = archiveClient({ s3, bucket, prefix: '' }, env);
    try {
      let current: LifecycleRule[] = [];
      try {
        current = (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
      } catch (error) {
        if (!(error instanceof Error && error.name === 'NoSuchLifecycleConfiguration')) throw new ArchiveFailed(`reading the lifecycle rules of bucket ${bucket}: ${(error as Error).message}`);
      }
      const byId = new Map(current.map((rule) => [rule.ID, rule]));
      const actions = rules.map(({ rule }) => {
        const existing = byId.get(rule.ID);
        return !existing ? 'created' as const : sameRule(existing, rule) ? 'unchanged' as const : 'updated' as const;
      });
      if (actions.some((action) => action !== 'unchanged')) {
        const ids = new Set(rules.map(({ rule }) => rule.ID));
        const merged = [...current.filter((rule) => !ids.has(rule.ID)), ...rules.map(({ rule }) => rule)];
        try {
          await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: bucket, LifecycleConfiguration: { Rules: merged } }));
        } catch (error) {
          throw new ArchiveFailed(`setting the lifecycle rules of bucket ${bucket} (the archives' expiry): ${(error as Error).message}`);
        }
      }
      rules.forEach(({ row }, i) => rows.push({ ...row, action: actions[i]! }));
    } finally {
      client.destroy();
    }
  }
  return rows;
}
