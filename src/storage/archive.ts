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
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Repository, S3Repository } from '../config/schema';
import { registerSecretValue, scrubSecrets } from '../logging/logger';
import { classifyResticFailure, repositoryEnvironment, repositoryOptions } from '../restic/restic';
import type { Snapshot } from '../restic/commands';
import { S3PreflightError } from './s3';
import { FailureType } from '../shared/failures';

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
}

export interface ArchiveManifest {
  format: 'tar+zstd';
  deployment: string;
  source: string;
  repository: string;
  snapshot: { id: string; time: string; hostname: string; paths: string[] };
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

/** A client for long uploads (the preflight client gives up after 10 s). */
export function archiveClient(destination: ArchiveDestination, env: NodeJS.ProcessEnv = process.env): S3Client {
  const { s3 } = destination;
  const accessKeyId = env[s3.accessKeyIdEnv];
  const secretAccessKey = env[s3.secretAccessKeyEnv];
  if (!accessKeyId || !secretAccessKey) throw new S3PreflightError(`environment variables ${s3.accessKeyIdEnv} and ${s3.secretAccessKeyEnv} must be set`, FailureType.ConfigInvalid);
  registerSecretValue(secretAccessKey);
  return new S3Client({
    endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.pathStyle, credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
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
      params: { Bucket: destination.bucket, Key: key, Body: body, ContentType: 'application/zstd' },
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
      snapshot: { id: snapshot.id, time: snapshot.time, hostname: snapshot.hostname, paths: snapshot.paths },
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
