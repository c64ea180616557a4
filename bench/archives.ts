/**
 * The baselines without the service, both ways: the first seed's script (`tar -czf` of
 * `applications/`, one PutObject of the archive; back: download, `tar -xzf`) and the practical
 * limit, a bare compressed copy (`tar -cf - | zstd -3 -T0`, one PutObject; back: the download
 * streamed into `zstd -d | tar -x`).
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { run, runPipeline, seconds, shellQuote, syncDisks } from './common';

export const ARCHIVE_BUCKET = 'bench-script';

export interface ArchiveMeasure {
  total: number;
  /** Making the archive (tar -czf, or tar | zstd). */
  pack: number;
  upload: number;
  archiveBytes: number;
}

export type ArchiveKind = 'gzip' | 'zstd';

export const ARCHIVE_COMMAND: Record<ArchiveKind, string> = {
  gzip: '`tar -czf` + one PutObject of the archive',
  // A table cell: GitHub's Markdown splits cells at a pipe even inside backticks.
  zstd: '`tar -cf - \\| zstd -3 -T0` + one PutObject of the archive',
};

/** Packs `<root>/applications` into one archive and uploads it as `key`; `keep` leaves it in the bucket. */
export async function archiveAndUpload(kind: ArchiveKind, s3: S3Client, root: string, work: string, key: string): Promise<ArchiveMeasure> {
  const archive = join(work, kind === 'gzip' ? 'applications.tgz' : 'applications.tar.zst');
  rmSync(archive, { force: true });
  syncDisks();
  const started = performance.now();
  if (kind === 'gzip') await run('tar', ['-czf', archive, 'applications'], root);
  else await runPipeline(`tar -cf - applications | zstd -3 -T0 -q -o ${shellQuote(archive)}`, root);
  const packed = performance.now();
  const archiveBytes = statSync(archive).size;
  await s3.send(new PutObjectCommand({ Bucket: ARCHIVE_BUCKET, Key: key, Body: createReadStream(archive), ContentLength: archiveBytes }));
  const done = performance.now();
  rmSync(archive, { force: true });
  return { total: seconds(done - started), pack: seconds(packed - started), upload: seconds(done - packed), archiveBytes };
}

export interface ExtractMeasure {
  total: number;
  /** gzip only: the download to a file before `tar -xzf` (zstd streams the download into tar). */
  download: number;
  extract: number;
}

/** Brings an archive back into `target` (empty): the script's way for gzip, streamed for zstd. */
export async function downloadAndExtract(kind: ArchiveKind, s3: S3Client, key: string, work: string, target: string): Promise<ExtractMeasure> {
  mkdirSync(target, { recursive: true });
  const started = performance.now();
  const object = await s3.send(new GetObjectCommand({ Bucket: ARCHIVE_BUCKET, Key: key }));
  const body = object.Body as Readable;
  if (kind === 'gzip') {
    const archive = join(work, 'download.tgz');
    await pipeline(body, createWriteStream(archive));
    const downloaded = performance.now();
    await run('tar', ['-xzf', archive], target);
    const done = performance.now();
    rmSync(archive, { force: true });
    return { total: seconds(done - started), download: seconds(downloaded - started), extract: seconds(done - downloaded) };
  }
  const child = spawn('bash', ['-o', 'pipefail', '-c', 'zstd -d -q -c | tar -xf -'], { cwd: target, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4096); });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await pipeline(body, child.stdin);
  const code = await exited;
  if (code !== 0) throw new Error(`zstd -d | tar -x exited with ${String(code)}: ${stderr}`);
  const done = performance.now();
  return { total: seconds(done - started), download: Number.NaN, extract: seconds(done - started) };
}
