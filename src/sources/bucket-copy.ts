/**
 * Copies one object from a bucket to another, streamed: the GetObject body goes straight into a
 * PutObject, and an object above the multipart threshold is copied part by part (a ranged
 * GetObject per part, pinned to the first part's ETag, into UploadPart), so no object is ever held
 * in memory whole.
 */
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type GetObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { BucketLocation } from '../config/schema';
import { isNoSuchKey, s3ErrorName, s3ErrorStatus } from '../storage/s3';
import { describeBucketError, keyPrefix, normalizeEtag, type BucketRole, type ObjectEntry } from './bucket-s3';

/** S3's limits: parts of at least 5 MiB (but the last), at most 10,000 parts. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;

export type RequestKind = 'list' | 'head' | 'get' | 'put' | 'multipart' | 'delete';

export interface BucketEnd {
  client: S3Client;
  location: BucketLocation;
  role: BucketRole;
}

export interface CopyRequest {
  from: BucketEnd;
  to: BucketEnd;
  /** The object as listed (key relative to the prefixes). */
  entry: ObjectEntry;
  multipartThresholdBytes: number;
  partSizeBytes: number;
  /** Checked between parts: an aborted multipart copy stops and aborts its upload. */
  signal?: AbortSignal;
  count: (kind: RequestKind) => void;
  /** The copy's user metadata, from the source's and the ETag of the version read. */
  metadata: (source: Record<string, string>, sourceEtag: string) => Record<string, string>;
}

export interface CopyOutcome {
  /** ETag and size of the source version actually read (it may have changed since the listing). */
  etag: string;
  size: number;
  /** ETag of the copy, as the target answered. */
  targetEtag: string;
  /** The source object's user metadata. */
  sourceMetadata: Record<string, string>;
  multipart: boolean;
}

/** The source object was deleted after it was listed. */
export const GONE = 'gone';

class SourceChanged extends Error {}
class RangeNotSatisfiable extends Error {}

export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const error = new Error('the copy was aborted');
  error.name = 'AbortError';
  return error;
}

function headersOf(got: GetObjectCommandOutput) {
  return {
    ContentType: got.ContentType,
    ContentEncoding: got.ContentEncoding,
    CacheControl: got.CacheControl,
    ContentDisposition: got.ContentDisposition,
    ContentLanguage: got.ContentLanguage,
  };
}

function release(body: unknown): void {
  const stream = body as Readable | undefined;
  if (stream && typeof stream.destroy === 'function' && !stream.readableEnded) stream.destroy();
}

async function getObject(request: CopyRequest, range?: string, ifMatch?: string): Promise<GetObjectCommandOutput | typeof GONE> {
  const { from } = request;
  request.count('get');
  try {
    return await from.client.send(new GetObjectCommand({ Bucket: from.location.bucket, Key: keyPrefix(from.location) + request.entry.key, Range: range, IfMatch: ifMatch }));
  } catch (error) {
    if (isNoSuchKey(error)) return GONE;
    if (ifMatch !== undefined && (s3ErrorStatus(error) === 412 || s3ErrorName(error) === 'PreconditionFailed')) throw new SourceChanged();
    if (range !== undefined && (s3ErrorStatus(error) === 416 || s3ErrorName(error) === 'InvalidRange')) throw new RangeNotSatisfiable();
    throw describeBucketError(error, from.location, from.role);
  }
}

/**
 * Copies the object; retries from the start (at most three times) when the source changes in the
 * middle of a multipart copy.
 */
export async function copyObject(request: CopyRequest): Promise<CopyOutcome | typeof GONE> {
  for (let attempt = 1; ; attempt++) {
    try {
      return request.entry.size > request.multipartThresholdBytes ? await copyMultipart(request) : await copySingle(request);
    } catch (error) {
      if (!(error instanceof SourceChanged) || attempt >= 3) {
        if (error instanceof SourceChanged) throw describeBucketError(new Error(`object "${request.entry.key}" kept changing while it was copied`), request.from.location, request.from.role);
        throw error;
      }
    }
  }
}

async function copySingle(request: CopyRequest): Promise<CopyOutcome | typeof GONE> {
  const { to } = request;
  const source = await getObject(request);
  if (source === GONE) return GONE;
  const size = source.ContentLength ?? 0;
  const etag = normalizeEtag(source.ETag);
  const sourceMetadata = source.Metadata ?? {};
  try {
    request.count('put');
    const put = await to.client.send(new PutObjectCommand({
      Bucket: to.location.bucket,
      Key: keyPrefix(to.location) + request.entry.key,
      // An empty stream makes some endpoints wait for a body that never comes.
      Body: size === 0 ? new Uint8Array(0) : (source.Body as Readable),
      ContentLength: size,
      ...headersOf(source),
      Metadata: request.metadata(sourceMetadata, etag),
    }));
    return { etag, size, targetEtag: normalizeEtag(put.ETag), sourceMetadata, multipart: false };
  } catch (error) {
    throw describeBucketError(error, to.location, to.role);
  } finally {
    release(source.Body);
  }
}

async function copyMultipart(request: CopyRequest): Promise<CopyOutcome | typeof GONE> {
  const { to, entry } = request;
  const partSize = Math.max(request.partSizeBytes, MIN_PART_BYTES, Math.ceil(entry.size / MAX_PARTS));
  let first: GetObjectCommandOutput | typeof GONE;
  try {
    first = await getObject(request, `bytes=0-${partSize - 1}`);
  } catch (error) {
    // The object shrank to nothing since it was listed.
    if (error instanceof RangeNotSatisfiable) return copySingle(request);
    throw error;
  }
  if (first === GONE) return GONE;
  const total = Number(/\/(\d+)$/.exec(first.ContentRange ?? '')?.[1] ?? first.ContentLength ?? 0);
  const sourceEtag = first.ETag;
  const etag = normalizeEtag(sourceEtag);
  const sourceMetadata = first.Metadata ?? {};
  const target = { Bucket: to.location.bucket, Key: keyPrefix(to.location) + entry.key };

  let uploadId: string | undefined;
  let body: unknown = first.Body;
  try {
    request.count('multipart');
    const created = await to.client.send(new CreateMultipartUploadCommand({ ...target, ...headersOf(first), Metadata: request.metadata(sourceMetadata, etag) })).catch((error: unknown) => {
      throw describeBucketError(error, to.location, to.role);
    });
    uploadId = created.UploadId;
    const parts: CompletedPart[] = [];
    let offset = 0;
    let length = first.ContentLength ?? 0;
    for (let partNumber = 1; ; partNumber++) {
      request.count('multipart');
      const uploaded = await to.client.send(new UploadPartCommand({ ...target, UploadId: uploadId, PartNumber: partNumber, Body: body as Readable, ContentLength: length })).catch((error: unknown) => {
        throw describeBucketError(error, to.location, to.role);
      });
      release(body);
      parts.push({ PartNumber: partNumber, ETag: uploaded.ETag });
      offset += length;
      if (offset >= total) break;
      if (request.signal?.aborted) throw abortError(request.signal);
      const next = await getObject(request, `bytes=${offset}-${Math.min(offset + partSize, total) - 1}`, sourceEtag);
      if (next === GONE) throw new SourceChanged();
      body = next.Body;
      length = next.ContentLength ?? 0;
    }
    request.count('multipart');
    const completed = await to.client.send(new CompleteMultipartUploadCommand({ ...target, UploadId: uploadId, MultipartUpload: { Parts: parts } })).catch((error: unknown) => {
      throw describeBucketError(error, to.location, to.role);
    });
    uploadId = undefined;
    return { etag, size: total, targetEtag: normalizeEtag(completed.ETag), sourceMetadata, multipart: true };
  } finally {
    release(body);
    if (uploadId !== undefined) {
      // Best effort: an upload left behind only costs storage until a lifecycle rule removes it.
      request.count('multipart');
      await to.client.send(new AbortMultipartUploadCommand({ ...target, UploadId: uploadId })).catch(() => undefined);
    }
  }
}
