/**
 * The s3-bucket source: incremental replication of a bucket (user uploads) to a bucket on another
 * endpoint, its verification, the restore from the replica, and doctor's check.
 *
 * An object is copied when it is new or its size or ETag differ from the source version the
 * replica recorded for it (user metadata `x-amz-meta-backupctl-source-etag`: a multipart copy's
 * own ETag is not the source's). What the replica recorded is read from the replica's manifest
 * (bucket-manifest.ts) when the manifest vouches for the copy, otherwise with one HeadObject.
 *
 * Keys are handled in listing order with bounded concurrency; the checkpoint only moves past a key
 * when it and every key before it are done, and is handed to the caller (who heartbeats it) right
 * after the manifest that covers it was written, so a retry from it copies nothing again.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { BucketLocation } from '../config/schema';
import { formatBytes } from '../config/units';
import { FailureType } from '../shared/failures';
import type { BucketFingerprint } from '../shared/fingerprints';
import { isNoSuchKey } from '../storage/s3';
import { GONE, MIN_PART_BYTES, abortError, copyObject, type BucketEnd, type RequestKind } from './bucket-copy';
import { locationIdentity, readManifest, writeManifest, type ManifestEntry } from './bucket-manifest';
import {
  BucketSourceError,
  SOURCE_ETAG_METADATA,
  compareKeys,
  createBucketClient,
  describeBucketError,
  fingerprintOf,
  fixFor,
  isSinglePartEtag,
  keyPrefix,
  listObjects,
  normalizeEtag,
  type ObjectEntry,
} from './bucket-s3';

export { BucketSourceError, SOURCE_ETAG_METADATA, createBucketClient };
export { MANIFEST_KEY } from './bucket-manifest';

export type RequestCounts = Record<RequestKind, number>;

/** What a retry needs to go on where an attempt stopped, without copying anything again. */
export interface ReplicationCheckpoint {
  version: 1;
  kind: 'replicate' | 'restore';
  /** Which copy this is (from and to locations): a checkpoint of another copy is ignored. */
  copy: string;
  /**
   * The last key (relative to the prefix) that was handled together with every key before it in
   * listing order. The replica's manifest was written, covering it, before this checkpoint was handed out.
   */
  startAfter: string;
  /** Counters over the keys up to startAfter. */
  copied: number;
  bytesCopied: number;
  unchanged: number;
  /** Every request so far, over all attempts. */
  requests: RequestCounts;
}

export interface ReplicationResult {
  /** Source objects (under the prefix) as replicated. */
  listed: number;
  copied: number;
  bytesCopied: number;
  unchanged: number;
  /** Replica objects deleted because their source object is gone (deletions: mirror). */
  deleted: number;
  /** Replica objects whose source object is gone, left in place (deletions: keep). */
  keptDeleted: number;
  /** Requests sent, over all attempts (a resumed run starts from the checkpoint's). */
  requests: RequestCounts;
  /** The source as replicated: "key size etag" lines. */
  fingerprint: BucketFingerprint;
  /**
   * The replica over the same keys, each with the source ETag it recorded: equal to `fingerprint`
   * when the replica is in step. Kept copies of deleted objects (deletions: keep) are left out.
   */
  replicaFingerprint: BucketFingerprint;
  verified: { ok: boolean; differences: string[] };
}

export interface TransferOptions {
  env: NodeJS.ProcessEnv;
  checkpoint?: ReplicationCheckpoint;
  onCheckpoint?: (checkpoint: ReplicationCheckpoint) => void;
  signal?: AbortSignal;
  /** Objects larger than this are copied with a multipart upload. Default 64 MiB. */
  multipartThresholdBytes?: number;
  /** Part size of multipart copies, at least 5 MiB. Default 16 MiB. */
  partSizeBytes?: number;
  /** Objects copied at the same time. Default 8. */
  concurrency?: number;
  /** Least time between two checkpoints (each writes the manifest). Default 10 s. */
  checkpointIntervalMs?: number;
}

export interface ReplicateOptions extends TransferOptions {
  source: BucketLocation;
  replica: BucketLocation;
  deletions: 'keep' | 'mirror';
  clients?: { source: S3Client; replica: S3Client };
  /**
   * deletions: mirror refuses to delete more than this share of the replica's objects in one run
   * (when more than 10): a source emptied by mistake or an attack must not empty its backup too.
   * Default 0.5; 1 turns the guard off.
   */
  maxDeletionShare?: number;
}

export interface VerifyOptions {
  source: BucketLocation;
  replica: BucketLocation;
  env: NodeJS.ProcessEnv;
  clients?: { source: S3Client; replica: S3Client };
  /** Whether replica objects whose source is gone are differences (mirror) or expected (keep, the default). */
  deletions?: 'keep' | 'mirror';
  /** HeadObject every copy instead of trusting the manifest for the source ETag it recorded. */
  deep?: boolean;
  signal?: AbortSignal;
  concurrency?: number;
}

export interface VerifyResult {
  ok: boolean;
  differences: string[];
  source: BucketFingerprint;
  replica: BucketFingerprint;
}

export interface RestoreOptions extends TransferOptions {
  replica: BucketLocation;
  target: BucketLocation;
  /** Restore into a target that holds objects other than copies of the replica's (they may be overwritten). */
  force?: boolean;
  clients?: { replica: S3Client; target: S3Client };
}

const DEFAULTS = { multipartThresholdBytes: 64 * 1024 * 1024, partSizeBytes: 16 * 1024 * 1024, concurrency: 8, checkpointIntervalMs: 10_000 };
const MAX_DIFFERENCES = 100;

function zeroRequests(): RequestCounts {
  return { list: 0, head: 0, get: 0, put: 0, multipart: 0, delete: 0 };
}

function settingsOf(opts: TransferOptions) {
  const multipartThresholdBytes = opts.multipartThresholdBytes ?? DEFAULTS.multipartThresholdBytes;
  const partSizeBytes = opts.partSizeBytes ?? DEFAULTS.partSizeBytes;
  const concurrency = opts.concurrency ?? DEFAULTS.concurrency;
  if (partSizeBytes < MIN_PART_BYTES) throw new BucketSourceError(`partSizeBytes must be at least ${MIN_PART_BYTES} (5 MiB, S3's smallest part)`, FailureType.ConfigInvalid);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new BucketSourceError('concurrency must be a positive integer', FailureType.ConfigInvalid);
  return { multipartThresholdBytes, partSizeBytes, concurrency, checkpointIntervalMs: opts.checkpointIntervalMs ?? DEFAULTS.checkpointIntervalMs };
}

/** Copying a location into itself, or into a prefix inside itself, would copy the copies again on every run. */
function assertSeparate(from: BucketLocation, to: BucketLocation, what: string): void {
  const endpoint = (location: BucketLocation) => location.endpoint.replace(/\/+$/, '').toLowerCase();
  if (endpoint(from) !== endpoint(to) || from.bucket !== to.bucket) return;
  const within = (inner: string, outer: string) => outer === '' || inner === outer || inner.startsWith(`${outer}/`);
  if (within(from.prefix, to.prefix) || within(to.prefix, from.prefix)) {
    throw new BucketSourceError(`${what}: ${describeLocation(from)} and ${describeLocation(to)} overlap (one prefix holds the other): use another bucket or separate prefixes`, FailureType.ConfigInvalid);
  }
}

function describeLocation(location: BucketLocation): string {
  return `"${location.bucket}${location.prefix === '' ? '' : `/${location.prefix}`}" at ${location.endpoint}`;
}

/** Clients given by the caller are theirs to destroy; ours are destroyed when the call ends. */
async function withClients<T>(given: Record<string, S3Client> | undefined, make: () => Record<string, S3Client>, use: (clients: Record<string, S3Client>) => Promise<T>): Promise<T> {
  if (given) return use(given);
  const made: Record<string, S3Client> = {};
  try {
    Object.assign(made, make());
    return await use(made);
  } finally {
    for (const client of Object.values(made)) client.destroy();
  }
}

/** Runs `handle` over 0..count-1 in order, at most `concurrency` at a time; stops taking new ones on the first failure or on abort. */
async function inOrder(count: number, concurrency: number, signal: AbortSignal | undefined, handle: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && !signal?.aborted && next < count) {
      const index = next++;
      try {
        await handle(index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failure !== undefined) throw failure.error;
  if (signal?.aborted) throw abortError(signal);
}

/**
 * Tracks which keys are done and how far the contiguous done run reaches (the frontier), with
 * the counters over that run.
 */
class Frontier {
  private readonly done: Uint8Array;
  private readonly outcomes: ({ copied: number; bytes: number; unchanged: number } | undefined)[];
  index = -1;
  readonly counters: { copied: number; bytesCopied: number; unchanged: number };

  constructor(size: number, start: { copied: number; bytesCopied: number; unchanged: number }) {
    this.done = new Uint8Array(size);
    this.outcomes = new Array(size);
    this.counters = { ...start };
  }

  finish(index: number, outcome?: { copied: number; bytes: number; unchanged: number }): void {
    this.done[index] = 1;
    this.outcomes[index] = outcome;
    while (this.index + 1 < this.done.length && this.done[this.index + 1] === 1) {
      this.index++;
      const o = this.outcomes[this.index];
      if (o) {
        this.counters.copied += o.copied;
        this.counters.bytesCopied += o.bytes;
        this.counters.unchanged += o.unchanged;
      }
      this.outcomes[this.index] = undefined;
    }
  }
}

/** Checkpoints at most every intervalMs, one at a time, and on flush. */
class Checkpointer {
  private last = Date.now();
  private running: Promise<void> | undefined;

  constructor(private readonly intervalMs: number, private readonly write: () => Promise<void>) {}

  poke(): void {
    if (this.running !== undefined || Date.now() - this.last < this.intervalMs) return;
    this.running = this.write()
      // A failed checkpoint is not fatal: the next one, or flush(), writes everything again.
      .catch(() => undefined)
      .finally(() => {
        this.last = Date.now();
        this.running = undefined;
      });
  }

  async flush(): Promise<void> {
    await this.running;
    await this.write();
  }
}

function capped(differences: string[]): string[] {
  if (differences.length <= MAX_DIFFERENCES) return differences;
  return [...differences.slice(0, MAX_DIFFERENCES), `… and ${differences.length - MAX_DIFFERENCES} more differences`];
}

interface Comparison {
  differences: string[];
  replicaFingerprint: BucketFingerprint;
  /** Replica keys whose source is gone. */
  extra: ObjectEntry[];
}

/**
 * Compares the source (as replicated) with a fresh listing of the replica: every key present,
 * same size, the copy made from the same source version (ETag), and, where both are single-part
 * uploads, the copy's own ETag (its MD5) equal to the source's.
 */
async function compareCopies(p: {
  source: readonly ObjectEntry[];
  replica: readonly ObjectEntry[];
  deletions: 'keep' | 'mirror';
  concurrency: number;
  signal?: AbortSignal;
  /** The source ETag the copy recorded; undefined when it recorded none. */
  recorded: (copy: ObjectEntry) => Promise<string | undefined>;
}): Promise<Comparison> {
  const replicaByKey = new Map(p.replica.map((entry) => [entry.key, entry]));
  const sourceKeys = new Set(p.source.map((entry) => entry.key));
  const differences: string[][] = p.source.map(() => []);
  const lines: ({ key: string; size: number; etag: string } | undefined)[] = new Array(p.source.length);
  await inOrder(p.source.length, p.concurrency, p.signal, async (index) => {
    const source = p.source[index]!;
    const copy = replicaByKey.get(source.key);
    const found = differences[index]!;
    if (copy === undefined) {
      found.push(`"${source.key}": in the source (${source.size} bytes), missing from the replica`);
      return;
    }
    const recorded = await p.recorded(copy);
    lines[index] = { key: copy.key, size: copy.size, etag: recorded ?? `copy:${copy.etag}` };
    if (copy.size !== source.size) found.push(`"${source.key}": ${source.size} bytes in the source, ${copy.size} in the replica`);
    if (recorded === undefined) found.push(`"${source.key}": the replica's copy does not record which source version it was made from`);
    else if (recorded !== source.etag) found.push(`"${source.key}": the replica holds another version (source ETag ${source.etag}, the copy was made from ${recorded})`);
    if (isSinglePartEtag(source.etag) && isSinglePartEtag(copy.etag) && source.etag !== copy.etag) {
      found.push(`"${source.key}": different content (MD5 ${source.etag} in the source, ${copy.etag} in the replica)`);
    }
  });
  const extra = p.replica.filter((entry) => !sourceKeys.has(entry.key));
  const all = differences.flat();
  const fingerprinted = lines.filter((line) => line !== undefined);
  if (p.deletions === 'mirror') {
    for (const entry of extra) all.push(`"${entry.key}": in the replica, no longer in the source`);
    fingerprinted.push(...extra.map((entry) => ({ key: entry.key, size: entry.size, etag: `copy:${entry.etag}` })));
  }
  return { differences: all, replicaFingerprint: fingerprintOf(fingerprinted), extra };
}

/** HeadObject on a copy: the source ETag it recorded, its ETag and size; undefined when it is gone. */
async function headCopy(end: BucketEnd, key: string, count: (kind: RequestKind) => void, signal?: AbortSignal): Promise<{ recorded?: string; etag: string; size: number } | undefined> {
  count('head');
  try {
    const head = await end.client.send(new HeadObjectCommand({ Bucket: end.location.bucket, Key: keyPrefix(end.location) + key }), { abortSignal: signal });
    return { recorded: head.Metadata?.[SOURCE_ETAG_METADATA], etag: normalizeEtag(head.ETag), size: head.ContentLength ?? 0 };
  } catch (error) {
    if (isNoSuchKey(error)) return undefined;
    throw describeBucketError(error, end.location, end.role);
  }
}

function validCheckpoint(checkpoint: ReplicationCheckpoint | undefined, kind: ReplicationCheckpoint['kind'], copy: string): ReplicationCheckpoint | undefined {
  if (checkpoint === undefined || checkpoint.version !== 1 || checkpoint.kind !== kind || checkpoint.copy !== copy) return undefined;
  return checkpoint;
}

/** Copies what changed in the source since the last run into the replica; see the file comment. */
export async function replicateBucket(opts: ReplicateOptions): Promise<ReplicationResult> {
  const settings = settingsOf(opts);
  assertSeparate(opts.source, opts.replica, 'the source and its replica');
  return withClients(opts.clients, () => ({ source: createBucketClient(opts.source, opts.env), replica: createBucketClient(opts.replica, opts.env) }), async (clients) => {
    const source: BucketEnd = { client: clients.source!, location: opts.source, role: 'source' };
    const replica: BucketEnd = { client: clients.replica!, location: opts.replica, role: 'replica' };
    const copyId = `replicate ${locationIdentity(opts.source)} -> ${locationIdentity(opts.replica)}`;
    const checkpoint = validCheckpoint(opts.checkpoint, 'replicate', copyId);
    const requests = { ...zeroRequests(), ...checkpoint?.requests };
    const count = (kind: RequestKind) => void requests[kind]++;
    const { signal } = opts;

    const entries = (await listObjects(source.client, source.location, 'source', { signal, onRequest: () => count('list') })).entries;
    const copies = (await listObjects(replica.client, replica.location, 'replica', { signal, onRequest: () => count('list') })).entries;
    const copyByKey = new Map(copies.map((entry) => [entry.key, entry]));
    const known = await readManifest(replica.client, replica.location, source.location, { signal, onRequest: () => count('get') });
    /** Changes to `known` so far, and how many of them the replica's manifest holds. */
    let changes = 0;
    let written = 0;

    const isUnchanged = async (entry: ObjectEntry): Promise<boolean> => {
      const copy = copyByKey.get(entry.key);
      if (copy === undefined || copy.size !== entry.size) return false;
      const recorded = known.get(entry.key);
      if (recorded !== undefined && recorded.replicaEtag === copy.etag && recorded.size === copy.size) return recorded.sourceEtag === entry.etag;
      const head = await headCopy(replica, entry.key, count, signal);
      if (head === undefined || head.recorded !== entry.etag || head.size !== entry.size) return false;
      known.set(entry.key, { sourceEtag: entry.etag, size: entry.size, replicaEtag: head.etag });
      changes++;
      return true;
    };

    const gone = new Set<number>();
    const frontier = new Frontier(entries.length, { copied: checkpoint?.copied ?? 0, bytesCopied: checkpoint?.bytesCopied ?? 0, unchanged: checkpoint?.unchanged ?? 0 });
    const resumedUpTo = checkpoint?.startAfter;
    const checkpointer = new Checkpointer(settings.checkpointIntervalMs, async () => {
      // The frontier before the manifest snapshot: every key up to it is in the snapshot.
      const reached = frontier.index;
      const counters = { ...frontier.counters };
      const version = changes;
      if (version !== written) {
        await writeManifest(replica.client, replica.location, source.location, known, { onRequest: () => count('put') });
        written = version;
      }
      let startAfter = reached >= 0 ? entries[reached]!.key : undefined;
      if (resumedUpTo !== undefined && (startAfter === undefined || compareKeys(startAfter, resumedUpTo) < 0)) startAfter = resumedUpTo;
      if (startAfter !== undefined) opts.onCheckpoint?.({ version: 1, kind: 'replicate', copy: copyId, startAfter, ...counters, requests: { ...requests } });
    });

    try {
      await inOrder(entries.length, settings.concurrency, signal, async (index) => {
        const entry = entries[index]!;
        // Done by an earlier attempt: not counted again, unless it has to be copied after all.
        const resumed = resumedUpTo !== undefined && compareKeys(entry.key, resumedUpTo) <= 0;
        if (await isUnchanged(entry)) {
          frontier.finish(index, resumed ? undefined : { copied: 0, bytes: 0, unchanged: 1 });
        } else {
          const outcome = await copyObject({
            from: source, to: replica, entry, signal, count,
            multipartThresholdBytes: settings.multipartThresholdBytes,
            partSizeBytes: settings.partSizeBytes,
            metadata: (metadata, etag) => ({ ...metadata, [SOURCE_ETAG_METADATA]: etag }),
          });
          if (outcome === GONE) {
            gone.add(index);
            frontier.finish(index);
          } else {
            // Replicated as read, which may be newer than the listing.
            entries[index] = { key: entry.key, size: outcome.size, etag: outcome.etag };
            known.set(entry.key, { sourceEtag: outcome.etag, size: outcome.size, replicaEtag: outcome.targetEtag });
            changes++;
            frontier.finish(index, { copied: 1, bytes: outcome.size, unchanged: 0 });
          }
        }
        checkpointer.poke();
      });
    } catch (error) {
      // Keep what was done (aborted, or a failure the retry will get past): manifest and checkpoint.
      await checkpointer.flush().catch(() => undefined);
      throw error;
    }

    const replicated = entries.filter((_, index) => !gone.has(index));
    const sourceKeys = new Set(replicated.map((entry) => entry.key));
    const orphans = copies.filter((entry) => !sourceKeys.has(entry.key));
    let deleted = 0;
    if (opts.deletions === 'mirror' && orphans.length > 0) {
      const share = opts.maxDeletionShare ?? 0.5;
      if (orphans.length > 10 && orphans.length > share * copies.length) {
        throw new BucketSourceError(`the source ${describeLocation(opts.source)} no longer has ${orphans.length} of the replica's ${copies.length} objects: deleting them from the replica as well (deletions: mirror) was refused, in case the source was emptied by mistake. If it was meant, run once with maxDeletionShare: 1 or with deletions: keep`, FailureType.SourceMissing);
      }
      await inOrder(orphans.length, settings.concurrency, signal, async (index) => {
        const orphan = orphans[index]!;
        count('delete');
        try {
          await replica.client.send(new DeleteObjectCommand({ Bucket: replica.location.bucket, Key: keyPrefix(replica.location) + orphan.key }));
        } catch (error) {
          if (!isNoSuchKey(error)) throw describeBucketError(error, replica.location, 'replica');
        }
        if (known.delete(orphan.key)) changes++;
        deleted++;
      });
    }
    await checkpointer.flush();

    const fresh = (await listObjects(replica.client, replica.location, 'replica', { signal, onRequest: () => count('list') })).entries;
    const comparison = await compareCopies({
      source: replicated, replica: fresh, deletions: opts.deletions, concurrency: settings.concurrency, signal,
      recorded: async (copy) => {
        const entry = known.get(copy.key);
        if (entry !== undefined && entry.replicaEtag === copy.etag) return entry.sourceEtag;
        return (await headCopy(replica, copy.key, count, signal))?.recorded;
      },
    });
    return {
      listed: replicated.length,
      copied: frontier.counters.copied,
      bytesCopied: frontier.counters.bytesCopied,
      unchanged: frontier.counters.unchanged,
      deleted,
      keptDeleted: opts.deletions === 'keep' ? comparison.extra.length : 0,
      requests,
      fingerprint: fingerprintOf(replicated),
      replicaFingerprint: comparison.replicaFingerprint,
      verified: { ok: comparison.differences.length === 0, differences: capped(comparison.differences) },
    };
  });
}

/**
 * Checks the replica against the source as it is now: every source key copied, same size, made
 * from the same source version, and same MD5 where both are single-part. The source ETag a copy
 * recorded is taken from the manifest when it vouches for the copy (deep: always HeadObject).
 */
export async function verifyReplica(opts: VerifyOptions): Promise<VerifyResult> {
  return withClients(opts.clients, () => ({ source: createBucketClient(opts.source, opts.env), replica: createBucketClient(opts.replica, opts.env) }), async (clients) => {
    const replica: BucketEnd = { client: clients.replica!, location: opts.replica, role: 'replica' };
    const count = () => undefined;
    const { signal } = opts;
    const sources = (await listObjects(clients.source!, opts.source, 'source', { signal })).entries;
    const copies = (await listObjects(replica.client, opts.replica, 'replica', { signal })).entries;
    const known = opts.deep ? new Map<string, ManifestEntry>() : await readManifest(replica.client, opts.replica, opts.source, { signal });
    const comparison = await compareCopies({
      source: sources, replica: copies, deletions: opts.deletions ?? 'keep', concurrency: opts.concurrency ?? DEFAULTS.concurrency, signal,
      recorded: async (copy) => {
        const entry = known.get(copy.key);
        if (entry !== undefined && entry.replicaEtag === copy.etag) return entry.sourceEtag;
        return (await headCopy(replica, copy.key, count, signal))?.recorded;
      },
    });
    return { ok: comparison.differences.length === 0, differences: capped(comparison.differences), source: fingerprintOf(sources), replica: comparison.replicaFingerprint };
  });
}

/**
 * Copies the replica back into a target bucket (a new source bucket after a disaster), with the
 * objects' original headers and user metadata (the recorded source ETag is dropped). Refuses a
 * target that holds anything but identical copies of replica objects (those are what an earlier,
 * interrupted restore left, and are skipped) unless `force`.
 *
 * `fingerprint` is the replica in the source's terms (the source ETags it recorded), comparable
 * with a replication's; `replicaFingerprint` is the target's, in the same terms where the target
 * object is the replica's copy byte for byte (same ETag, with the same multipart settings).
 * `keptDeleted` counts the target's objects that are not the replica's (only with `force`).
 */
export async function restoreFromReplica(opts: RestoreOptions): Promise<ReplicationResult> {
  const settings = settingsOf(opts);
  assertSeparate(opts.replica, opts.target, 'the replica and the restore target');
  return withClients(opts.clients, () => ({ replica: createBucketClient(opts.replica, opts.env), target: createBucketClient(opts.target, opts.env) }), async (clients) => {
    const replica: BucketEnd = { client: clients.replica!, location: opts.replica, role: 'replica' };
    const target: BucketEnd = { client: clients.target!, location: opts.target, role: 'restore target' };
    const copyId = `restore ${locationIdentity(opts.replica)} -> ${locationIdentity(opts.target)}`;
    const checkpoint = validCheckpoint(opts.checkpoint, 'restore', copyId);
    const requests = { ...zeroRequests(), ...checkpoint?.requests };
    const count = (kind: RequestKind) => void requests[kind]++;
    const { signal } = opts;

    const entries = (await listObjects(replica.client, opts.replica, 'replica', { signal, onRequest: () => count('list') })).entries;
    const existing = (await listObjects(target.client, opts.target, 'restore target', { signal, onRequest: () => count('list') })).entries;
    const byKey = new Map(entries.map((entry) => [entry.key, entry]));
    const identical = (entry: ObjectEntry | undefined, other: ObjectEntry | undefined) => entry !== undefined && other !== undefined && entry.size === other.size && entry.etag === other.etag;
    const foreign = existing.filter((entry) => !identical(entry, byKey.get(entry.key)));
    if (foreign.length > 0 && !opts.force) {
      const examples = foreign.slice(0, 3).map((entry) => `"${entry.key}"`).join(', ');
      throw new BucketSourceError(`the restore target ${describeLocation(opts.target)} already holds ${foreign.length} object(s) that are not copies of the replica's (${examples}${foreign.length > 3 ? ', …' : ''}): restore into an empty bucket or prefix, or pass force to overwrite them`, FailureType.RestoreTargetUnsafe);
    }
    const existingByKey = new Map(existing.map((entry) => [entry.key, entry]));
    const known = await readManifest(replica.client, opts.replica, undefined, { signal, onRequest: () => count('get') });
    /** Source ETags recorded by the replica's copies, learnt while copying. */
    const recordedByKey = new Map<string, string>();

    const frontier = new Frontier(entries.length, { copied: checkpoint?.copied ?? 0, bytesCopied: checkpoint?.bytesCopied ?? 0, unchanged: checkpoint?.unchanged ?? 0 });
    const resumedUpTo = checkpoint?.startAfter;
    const gone = new Set<number>();
    const checkpointer = new Checkpointer(settings.checkpointIntervalMs, async () => {
      let startAfter = frontier.index >= 0 ? entries[frontier.index]!.key : undefined;
      if (resumedUpTo !== undefined && (startAfter === undefined || compareKeys(startAfter, resumedUpTo) < 0)) startAfter = resumedUpTo;
      if (startAfter !== undefined) opts.onCheckpoint?.({ version: 1, kind: 'restore', copy: copyId, startAfter, ...frontier.counters, requests: { ...requests } });
    });
    try {
      await inOrder(entries.length, settings.concurrency, signal, async (index) => {
        const entry = entries[index]!;
        const resumed = resumedUpTo !== undefined && compareKeys(entry.key, resumedUpTo) <= 0;
        if (identical(entry, existingByKey.get(entry.key))) {
          frontier.finish(index, resumed ? undefined : { copied: 0, bytes: 0, unchanged: 1 });
        } else {
          const outcome = await copyObject({
            from: replica, to: target, entry, signal, count,
            multipartThresholdBytes: settings.multipartThresholdBytes,
            partSizeBytes: settings.partSizeBytes,
            metadata: (metadata) => Object.fromEntries(Object.entries(metadata).filter(([name]) => name !== SOURCE_ETAG_METADATA)),
          });
          if (outcome === GONE) {
            gone.add(index);
            frontier.finish(index);
          } else {
            entries[index] = { key: entry.key, size: outcome.size, etag: outcome.etag };
            const recorded = outcome.sourceMetadata[SOURCE_ETAG_METADATA];
            if (recorded !== undefined) recordedByKey.set(entry.key, recorded);
            frontier.finish(index, { copied: 1, bytes: outcome.size, unchanged: 0 });
          }
        }
        checkpointer.poke();
      });
    } catch (error) {
      await checkpointer.flush().catch(() => undefined);
      throw error;
    }
    await checkpointer.flush();

    const restored = entries.filter((_, index) => !gone.has(index));
    const recordedFor = async (entry: ObjectEntry): Promise<string> => {
      const learnt = recordedByKey.get(entry.key);
      if (learnt !== undefined) return learnt;
      const manifest = known.get(entry.key);
      if (manifest !== undefined && manifest.replicaEtag === entry.etag) return manifest.sourceEtag;
      return (await headCopy(replica, entry.key, count, signal))?.recorded ?? `copy:${entry.etag}`;
    };
    const fresh = (await listObjects(target.client, opts.target, 'restore target', { signal, onRequest: () => count('list') })).entries;
    const freshByKey = new Map(fresh.map((entry) => [entry.key, entry]));
    const differences: string[] = [];
    const sourceLines: ObjectEntry[] = new Array(restored.length);
    const targetLines: (ObjectEntry | undefined)[] = new Array(restored.length);
    await inOrder(restored.length, settings.concurrency, signal, async (index) => {
      const entry = restored[index]!;
      const recorded = await recordedFor(entry);
      sourceLines[index] = { key: entry.key, size: entry.size, etag: recorded };
      const restoredCopy = freshByKey.get(entry.key);
      if (restoredCopy === undefined) {
        differences.push(`"${entry.key}": in the replica, missing from the restore target`);
      } else if (restoredCopy.size !== entry.size) {
        differences.push(`"${entry.key}": ${entry.size} bytes in the replica, ${restoredCopy.size} in the restore target`);
      } else if (restoredCopy.etag !== entry.etag) {
        differences.push(`"${entry.key}": different content (ETag ${entry.etag} in the replica, ${restoredCopy.etag} in the restore target)`);
      }
      if (restoredCopy !== undefined) targetLines[index] = { key: entry.key, size: restoredCopy.size, etag: identical(entry, restoredCopy) ? recorded : `target:${restoredCopy.etag}` };
    });
    const restoredKeys = new Set(restored.map((entry) => entry.key));
    return {
      listed: restored.length,
      copied: frontier.counters.copied,
      bytesCopied: frontier.counters.bytesCopied,
      unchanged: frontier.counters.unchanged,
      deleted: 0,
      keptDeleted: fresh.filter((entry) => !restoredKeys.has(entry.key)).length,
      requests,
      fingerprint: fingerprintOf(sourceLines),
      replicaFingerprint: fingerprintOf(targetLines.filter((line) => line !== undefined)),
      verified: { ok: differences.length === 0, differences: capped(differences.sort()) },
    };
  });
}

export interface BucketSourceCheck {
  ok: boolean;
  detail: string;
  fix?: string;
  /** Objects and bytes under the source prefix (at least, when the listing was cut short). */
  objects?: number;
  bytes?: number;
}

/**
 * doctor: both endpoints answer and accept their credentials, the source can be listed and read,
 * the replica listed, written and deleted from (a small probe object under `.backupctl-probe/`),
 * and the source's size (listing at most `maxListPages` pages of 1,000 objects, default 50).
 */
export async function checkBucketSource(opts: { source: BucketLocation; replica: BucketLocation; env: NodeJS.ProcessEnv; clients?: { source: S3Client; replica: S3Client }; maxListPages?: number }): Promise<BucketSourceCheck> {
  const made: S3Client[] = [];
  const clientFor = (location: BucketLocation, given: S3Client | undefined): S3Client => {
    if (given) return given;
    const client = createBucketClient(location, opts.env);
    made.push(client);
    return client;
  };
  let role: 'source' | 'replica' = 'source';
  const locationOf = () => (role === 'source' ? opts.source : opts.replica);
  try {
    const source = clientFor(opts.source, opts.clients?.source);
    const listing = await listObjects(source, opts.source, 'source', { maxPages: opts.maxListPages ?? 50 });
    const sample = listing.entries.find((entry) => entry.size > 0);
    if (sample !== undefined) {
      try {
        const got = await source.send(new GetObjectCommand({ Bucket: opts.source.bucket, Key: keyPrefix(opts.source) + sample.key, Range: 'bytes=0-0' }));
        (got.Body as Readable | undefined)?.destroy();
      } catch (error) {
        if (!isNoSuchKey(error)) throw describeBucketError(error, opts.source, 'source');
      }
    }
    role = 'replica';
    const replica = clientFor(opts.replica, opts.clients?.replica);
    await listObjects(replica, opts.replica, 'replica', { maxPages: 1 });
    const probe = `${keyPrefix(opts.replica)}.backupctl-probe/${randomUUID()}`;
    try {
      await replica.send(new PutObjectCommand({ Bucket: opts.replica.bucket, Key: probe, Body: 'backupctl write probe\n', ContentType: 'text/plain' }));
      await replica.send(new DeleteObjectCommand({ Bucket: opts.replica.bucket, Key: probe }));
    } catch (error) {
      throw describeBucketError(error, opts.replica, 'replica');
    }
    const bytes = listing.entries.reduce((sum, entry) => sum + entry.size, 0);
    const atLeast = listing.complete ? '' : 'at least ';
    return {
      ok: true,
      detail: `source ${describeLocation(opts.source)} readable, ${atLeast}${listing.entries.length} objects, ${atLeast}${formatBytes(bytes)}; replica ${describeLocation(opts.replica)} writable`,
      objects: listing.entries.length,
      bytes,
    };
  } catch (error) {
    const failure = describeBucketError(error, locationOf(), role);
    if (!(failure instanceof BucketSourceError)) throw failure;
    return { ok: false, detail: failure.message, fix: fixFor(failure, locationOf(), role) };
  } finally {
    for (const client of made) client.destroy();
  }
}
