/**
 * The s3-bucket source against two real endpoints: the shared MinIO holds the source bucket of
 * "user uploads", a second MinIO started here holds the replica. Requests are counted with a
 * middleware on the injected clients, so "copies exactly what changed" is measured, not assumed.
 *
 * The tests run in order and build on each other (first copy, no-op run, changes, deletions,
 * tampering, resume, faults, restore).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import type { BucketLocation } from '../src/config/schema';
import { startMinio, type MinioServer } from '../src/servers/processes';
import { FailureType } from '../src/shared/failures';
import { compareFingerprints } from '../src/shared/fingerprints';
import {
  BucketSourceError,
  MANIFEST_KEY,
  SOURCE_ETAG_METADATA,
  checkBucketSource,
  createBucketClient,
  replicateBucket,
  restoreFromReplica,
  verifyReplica,
  type ReplicationCheckpoint,
  type ReplicationResult,
} from '../src/sources/bucket';
import { createBucket, s3Client, testServers, uniqueName } from './support/harness';

const MiB = 1024 * 1024;
/** Small enough to exercise multipart copies with a few MiB: 5 MiB parts, above 6 MiB. */
const SIZES = { multipartThresholdBytes: 6 * MiB, partSizeBytes: 5 * MiB };
const OBJECTS = 2000;

const servers = testServers();
const id = randomBytes(3).toString('hex').toUpperCase();
const names = {
  sourceKey: `T${id}_UPLOADS_KEY_ID`,
  sourceSecret: `T${id}_UPLOADS_SECRET`,
  replicaKey: `T${id}_REPLICA_KEY_ID`,
  replicaSecret: `T${id}_REPLICA_SECRET`,
};
const sourceBucket = uniqueName('uploads');
const replicaBucket = uniqueName('replica');
let replicaServer: MinioServer;
let env: NodeJS.ProcessEnv;
/** Admin clients of both endpoints, for setting up and inspecting. */
let sourceAdmin: S3Client;
let replicaAdmin: S3Client;

function sourceAt(prefix: string, bucket = sourceBucket): BucketLocation {
  return { endpoint: servers.s3Endpoint, bucket, prefix, region: 'us-east-1', pathStyle: true, accessKeyIdEnv: names.sourceKey, secretAccessKeyEnv: names.sourceSecret };
}
function replicaAt(prefix: string, bucket = replicaBucket): BucketLocation {
  return { endpoint: replicaServer.endpoint, bucket, prefix, region: 'us-east-1', pathStyle: true, accessKeyIdEnv: names.replicaKey, secretAccessKeyEnv: names.replicaSecret };
}
const source = () => sourceAt('uploads');
const replica = () => replicaAt('backups/uploads');

// ---------------------------------------------------------------------------------------------
// Request counting

interface Call {
  command: string;
  key?: string;
  ok: boolean;
}

interface Counted {
  calls: Call[];
  /** Most object reads and writes (GetObject, HeadObject, PutObject, UploadPart) in flight at once, manifest aside. */
  maxInFlight: number;
  clients: { source: S3Client; replica: S3Client };
  /** Called after each successful command. */
  onSuccess?: (call: Call) => void;
  reset(): void;
  destroy(): void;
}

function countedClients(sourceLocation: BucketLocation, replicaLocation: BucketLocation): Counted {
  let inFlight = 0;
  const counted: Counted = {
    calls: [],
    maxInFlight: 0,
    clients: { source: createBucketClient(sourceLocation, env), replica: createBucketClient(replicaLocation, env) },
    reset() {
      counted.calls = [];
    },
    destroy() {
      counted.clients.source.destroy();
      counted.clients.replica.destroy();
    },
  };
  for (const client of Object.values(counted.clients)) {
    client.middlewareStack.add((next, context) => async (args) => {
      const call: Call = { command: context.commandName ?? '?', key: (args.input as { Key?: string }).Key, ok: false };
      counted.calls.push(call);
      const transfer = /^(Get|Head|Put)Object|UploadPart/.test(call.command) && !isManifest(call);
      if (transfer) counted.maxInFlight = Math.max(counted.maxInFlight, ++inFlight);
      try {
        const output = await next(args);
        call.ok = true;
        counted.onSuccess?.(call);
        return output;
      } finally {
        if (transfer) inFlight--;
      }
    }, { step: 'initialize', name: 'countRequests' });
  }
  return counted;
}

const isManifest = (call: Call) => call.key?.endsWith(MANIFEST_KEY) === true;
const dataCalls = (calls: Call[], command: string, ok?: boolean) => calls.filter((c) => c.command === command && !isManifest(c) && (ok === undefined || c.ok === ok));
/** Objects whose copy was started: PutObject plus CreateMultipartUpload. */
const copiesStarted = (calls: Call[]) => [...dataCalls(calls, 'PutObjectCommand'), ...dataCalls(calls, 'CreateMultipartUploadCommand')];
/** Objects whose copy completed. */
const copiesCompleted = (calls: Call[]) => [...dataCalls(calls, 'PutObjectCommand', true), ...dataCalls(calls, 'CompleteMultipartUploadCommand', true)];

function tally(calls: Call[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const call of calls) out[call.command.replace(/Command$/, '')] = (out[call.command.replace(/Command$/, '')] ?? 0) + 1;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Objects

interface Spec {
  key: string;
  body: Buffer;
  headers: Omit<PutObjectCommandInput, 'Bucket' | 'Key' | 'Body'>;
}

const contentTypes = ['image/jpeg', 'image/png', 'application/pdf', 'text/plain; charset=utf-8', 'video/mp4', 'application/octet-stream'];

function smallSpec(key: string, i: number): Spec {
  const headers: Spec['headers'] = { ContentType: contentTypes[i % contentTypes.length] };
  if (i % 3 === 0) headers.Metadata = { owner: `user-${i % 97}`, 'original-name': `photo ${i}.jpg` };
  if (i % 5 === 0) headers.CacheControl = 'public, max-age=86400';
  if (i % 7 === 0) headers.ContentDisposition = `attachment; filename="file-${i}.bin"`;
  if (i % 11 === 0) headers.ContentEncoding = 'gzip';
  const size = i % 400 === 0 ? 0 : (i * 37) % 3000 + 1;
  return { key, body: randomBytes(size), headers };
}

const smallKey = (i: number) => `uploads/u${String(i % 40).padStart(2, '0')}/file-${String(i).padStart(4, '0')}.dat`;

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function putAll(client: S3Client, bucket: string, specs: Spec[], concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < specs.length) {
      const spec = specs[next++]!;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: spec.key, Body: spec.body, ...spec.headers }));
    }
  }));
}

/** Uploads through a multipart upload, so the source object's own ETag is "<md5>-<parts>". */
async function putMultipart(client: S3Client, bucket: string, key: string, body: Buffer): Promise<void> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'application/zip', Metadata: { owner: 'uploader' } }));
  const parts = [];
  for (let offset = 0, n = 1; offset < body.length; offset += 5 * MiB, n++) {
    const part = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n, Body: body.subarray(offset, offset + 5 * MiB) }));
    parts.push({ PartNumber: n, ETag: part.ETag });
  }
  await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
}

async function bytesOf(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

async function keysUnder(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((o) => o.Key!));
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

async function exists(client: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (error) {
    if ((error as Error).name === 'NotFound') return false;
    throw error;
  }
}

const toReplicaKey = (sourceKey: string) => `backups/${sourceKey}`;
/** Content of every source object under uploads/ (key → sha256), kept in step with the changes. */
const expected = new Map<string, string>();
let lastResult: ReplicationResult;

function assertInStep(result: ReplicationResult): void {
  assert.deepEqual(result.verified, { ok: true, differences: [] });
  const comparison = compareFingerprints(result.fingerprint, result.replicaFingerprint);
  assert.ok(comparison.equal, comparison.differences.join('; '));
}

before(async () => {
  replicaServer = await startMinio();
  env = {
    [names.sourceKey]: servers.s3AccessKeyId,
    [names.sourceSecret]: servers.s3SecretAccessKey,
    [names.replicaKey]: replicaServer.accessKeyId,
    [names.replicaSecret]: replicaServer.secretAccessKey,
  };
  sourceAdmin = s3Client(servers);
  replicaAdmin = new S3Client({ endpoint: replicaServer.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: replicaServer.accessKeyId, secretAccessKey: replicaServer.secretAccessKey } });
  await createBucket(sourceBucket, servers);
  await replicaAdmin.send(new CreateBucketCommand({ Bucket: replicaBucket }));

  const specs: Spec[] = [];
  for (let i = 0; i < OBJECTS - 3; i++) specs.push(smallSpec(smallKey(i), i));
  specs.push({ key: 'uploads/big/video-1.mp4', body: randomBytes(12 * MiB), headers: { ContentType: 'video/mp4', Metadata: { owner: 'user-1' }, CacheControl: 'private' } });
  specs.push({ key: 'uploads/big/video-2.mp4', body: randomBytes(7 * MiB), headers: { ContentType: 'video/mp4' } });
  // Outside the prefix: never copied ("uploads-old/" only shares the first letters).
  specs.push({ key: 'other/not-mine.txt', body: Buffer.from('no'), headers: {} });
  specs.push({ key: 'uploads-old/not-mine.txt', body: Buffer.from('no'), headers: {} });
  await putAll(sourceAdmin, sourceBucket, specs);
  const archive = randomBytes(11 * MiB);
  await putMultipart(sourceAdmin, sourceBucket, 'uploads/big/archive.zip', archive);
  for (const spec of specs) if (spec.key.startsWith('uploads/')) expected.set(spec.key, sha(spec.body));
  expected.set('uploads/big/archive.zip', sha(archive));
  assert.equal(expected.size, OBJECTS);
});

after(async () => {
  sourceAdmin?.destroy();
  replicaAdmin?.destroy();
  await replicaServer?.stop();
});

test('first replication copies all 2,000 objects to the other endpoint, with their headers and metadata, and verifies', async (t) => {
  const counted = countedClients(source(), replica());
  const started = performance.now();
  const result = await replicateBucket({ source: source(), replica: replica(), env, deletions: 'keep', clients: counted.clients, ...SIZES });
  const seconds = (performance.now() - started) / 1000;
  t.diagnostic(`2,000 objects replicated in ${seconds.toFixed(1)} s; requests ${JSON.stringify(result.requests)}; on the wire ${JSON.stringify(tally(counted.calls))}; at most ${counted.maxInFlight} transfers at once`);
  // Bounded by the default concurrency (8): one object is either read or written at a time.
  assert.ok(counted.maxInFlight > 1 && counted.maxInFlight <= 8, `${counted.maxInFlight} transfers at once`);
  counted.destroy();
  lastResult = result;

  assert.equal(result.listed, OBJECTS);
  assert.equal(result.copied, OBJECTS);
  assert.equal(result.unchanged, 0);
  assert.equal(result.fingerprint.objects, OBJECTS);
  assertInStep(result);
  // 1,997 single PutObjects; three multipart copies: 12 MiB (5+5+2), 7 MiB (5+2), 11 MiB (5+5+1).
  assert.equal(dataCalls(counted.calls, 'PutObjectCommand').length, OBJECTS - 3);
  assert.equal(dataCalls(counted.calls, 'CreateMultipartUploadCommand').length, 3);
  assert.equal(dataCalls(counted.calls, 'UploadPartCommand').length, 8);
  assert.equal(dataCalls(counted.calls, 'CompleteMultipartUploadCommand', true).length, 3);
  assert.equal(result.requests.head, 0, 'an empty replica needs no HeadObject');

  // Only the prefix, mapped to the replica's prefix.
  const replicaKeys = await keysUnder(replicaAdmin, replicaBucket);
  assert.deepEqual(replicaKeys.filter((k) => !k.endsWith(MANIFEST_KEY)).sort(), [...expected.keys()].map(toReplicaKey).sort());

  // Headers and user metadata kept; the source ETag recorded.
  // 0: empty, with metadata; 105: metadata, cache-control, disposition; 770: encoding, disposition, cache-control.
  for (const key of [smallKey(0), smallKey(1), smallKey(105), smallKey(770), 'uploads/big/video-1.mp4', 'uploads/big/archive.zip']) {
    const original = await sourceAdmin.send(new HeadObjectCommand({ Bucket: sourceBucket, Key: key }));
    const copy = await replicaAdmin.send(new HeadObjectCommand({ Bucket: replicaBucket, Key: toReplicaKey(key) }));
    for (const header of ['ContentType', 'ContentEncoding', 'CacheControl', 'ContentDisposition', 'ContentLength'] as const) assert.equal(copy[header], original[header], `${key}: ${header}`);
    const { [SOURCE_ETAG_METADATA]: recorded, ...metadata } = copy.Metadata ?? {};
    assert.deepEqual(metadata, original.Metadata ?? {}, `${key}: user metadata`);
    assert.equal(`"${recorded}"`, original.ETag, `${key}: recorded source ETag`);
  }
  // Multipart copies hold the same bytes.
  for (const key of ['uploads/big/video-1.mp4', 'uploads/big/archive.zip']) {
    assert.equal(sha(await bytesOf(replicaAdmin, replicaBucket, toReplicaKey(key))), expected.get(key), key);
  }
  const archive = await replicaAdmin.send(new HeadObjectCommand({ Bucket: replicaBucket, Key: toReplicaKey('uploads/big/archive.zip') }));
  assert.match(archive.ETag ?? '', /-3"$/, 'the 11 MiB object was copied in three parts');
});

test('a run with nothing changed copies nothing and, thanks to the manifest, sends no HeadObject; without the manifest it sends one per object', async (t) => {
  const counted = countedClients(source(), replica());
  const result = await replicateBucket({ source: source(), replica: replica(), env, deletions: 'keep', clients: counted.clients, ...SIZES });
  t.diagnostic(`no-op run with manifest: ${JSON.stringify(result.requests)}`);
  assert.equal(result.copied, 0);
  assert.equal(result.unchanged, OBJECTS);
  assert.equal(copiesStarted(counted.calls).length, 0);
  // Listings (source, replica, the replica again to verify), the manifest read, and nothing else.
  assert.deepEqual({ ...result.requests, list: 0 }, { list: 0, head: 0, get: 1, put: 0, multipart: 0, delete: 0 });
  assertInStep(result);

  await replicaAdmin.send(new DeleteObjectCommand({ Bucket: replicaBucket, Key: `backups/uploads/${MANIFEST_KEY}` }));
  counted.reset();
  const started = performance.now();
  const without = await replicateBucket({ source: source(), replica: replica(), env, deletions: 'keep', clients: counted.clients, ...SIZES });
  t.diagnostic(`no-op run without manifest (HeadObject per key) in ${((performance.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(without.requests)}`);
  counted.destroy();
  assert.equal(without.copied, 0);
  assert.equal(without.unchanged, OBJECTS);
  assert.equal(without.requests.head, OBJECTS);
  assert.equal(copiesStarted(counted.calls).length, 0);
  assertInStep(without);
});

test('10 changed and 5 new objects: the next run copies exactly those 15', async () => {
  const changed = [...expected.keys()].filter((k) => k.startsWith('uploads/u')).filter((_, i) => i % 190 === 7).slice(0, 9);
  assert.equal(changed.length, 9);
  const specs: Spec[] = changed.map((key, i) => {
    // Every other one keeps its size: only the ETag tells the change.
    const size = i % 2 === 0 ? Number(/file-(\d+)/.exec(key)![1]) * 37 % 3000 + 1 : 5000 + i;
    return { key, body: randomBytes(size), headers: { ContentType: 'image/webp', Metadata: { owner: 'changed' } } };
  });
  specs.push({ key: 'uploads/big/video-2.mp4', body: randomBytes(7 * MiB), headers: { ContentType: 'video/mp4' } }); // same size, new content
  for (let i = 0; i < 5; i++) specs.push({ key: `uploads/new/upload-${i}.png`, body: randomBytes(100 + i), headers: { ContentType: 'image/png' } });
  // A changed object whose size differs by 0 must really differ: different random bytes.
  await putAll(sourceAdmin, sourceBucket, specs, 4);
  for (const spec of specs) expected.set(spec.key, sha(spec.body));

  const counted = countedClients(source(), replica());
  const result = await replicateBucket({ source: source(), replica: replica(), env, deletions: 'keep', clients: counted.clients, ...SIZES });
  counted.destroy();
  lastResult = result;
  assert.equal(result.copied, 15);
  assert.equal(result.unchanged, OBJECTS + 5 - 15);
  assert.equal(result.listed, OBJECTS + 5);
  const started = copiesStarted(counted.calls).map((c) => c.key!).sort();
  assert.deepEqual(started, specs.map((s) => toReplicaKey(s.key)).sort(), 'exactly the changed and new objects are copied, each once');
  assert.equal(dataCalls(counted.calls, 'UploadPartCommand').length, 2);
  assert.equal(result.requests.head, 0);
  for (const spec of specs) {
    assert.equal(sha(await bytesOf(replicaAdmin, replicaBucket, toReplicaKey(spec.key))), sha(spec.body), spec.key);
  }
  const head = await replicaAdmin.send(new HeadObjectCommand({ Bucket: replicaBucket, Key: toReplicaKey(changed[0]!) }));
  assert.equal(head.ContentType, 'image/webp');
  assert.equal(head.Metadata?.owner, 'changed');
  assertInStep(result);
});

test('deletions: keep leaves the copy of a deleted object, mirror removes it', async () => {
  const removed = ['uploads/u03/file-0003.dat', 'uploads/new/upload-4.png', 'uploads/big/video-1.mp4'];
  for (const key of removed) {
    await sourceAdmin.send(new DeleteObjectCommand({ Bucket: sourceBucket, Key: key }));
    expected.delete(key);
  }
  const kept = await replicateBucket({ source: source(), replica: replica(), env, deletions: 'keep', ...SIZES });
  assert.equal(kept.copied, 0);
  assert.equal(kept.deleted, 0);
  assert.equal(kept.keptDeleted, 3);
  assertInStep(kept);
  for (const key of removed) assert.ok(await exists(replicaAdmin, replicaBucket, toReplicaKey(key)), `${key} kept`);
  const keepVerify = await verifyReplica({ source: source(), replica: replica(), env, deletions: 'keep' });
  assert.ok(keepVerify.ok, keepVerify.differences.join('; '));
  const strict = await verifyReplica({ source: source(), replica: replica(), env, deletions: 'mirror' });
  assert.equal(strict.ok, false);
  assert.deepEqual(strict.differences.map((d) => /^"([^"]+)"/.exec(d)?.[1]).sort(), removed.map((k) => k.slice('uploads/'.length)).sort());

  const mirrored = await replicateBucket({ source: source(), replica: replica(), env, deletions: 'mirror', ...SIZES });
  lastResult = mirrored;
  assert.equal(mirrored.deleted, 3);
  assert.equal(mirrored.keptDeleted, 0);
  assert.equal(mirrored.requests.delete, 3);
  assertInStep(mirrored);
  for (const key of removed) assert.equal(await exists(replicaAdmin, replicaBucket, toReplicaKey(key)), false, `${key} removed`);
  const after = await verifyReplica({ source: source(), replica: replica(), env, deletions: 'mirror', deep: true });
  assert.ok(after.ok, after.differences.join('; '));
  assert.ok(compareFingerprints(after.source, after.replica).equal);
  assert.equal(after.source.objects, expected.size);
});

test('verify names each key whose copy was damaged or lost, and the next run repairs them', async () => {
  const damaged = smallKey(5);
  const lost = smallKey(6);
  const original = await bytesOf(sourceAdmin, sourceBucket, damaged);
  await replicaAdmin.send(new PutObjectCommand({ Bucket: replicaBucket, Key: toReplicaKey(damaged), Body: randomBytes(original.length) }));
  await replicaAdmin.send(new DeleteObjectCommand({ Bucket: replicaBucket, Key: toReplicaKey(lost) }));
  for (const deep of [false, true]) {
    const verdict = await verifyReplica({ source: source(), replica: replica(), env, deletions: 'mirror', deep });
    assert.equal(verdict.ok, false);
    assert.ok(verdict.differences.some((d) => d.startsWith('"u05/file-0005.dat"')), verdict.differences.join('; '));
    assert.ok(verdict.differences.some((d) => d.startsWith('"u06/file-0006.dat"') && /missing/.test(d)), verdict.differences.join('; '));
    assert.equal(compareFingerprints(verdict.source, verdict.replica).equal, false);
  }
  const counted = countedClients(source(), replica());
  const repaired = await replicateBucket({ source: source(), replica: replica(), env, deletions: 'mirror', clients: counted.clients, ...SIZES });
  counted.destroy();
  assert.equal(repaired.copied, 2);
  assert.deepEqual(copiesStarted(counted.calls).map((c) => c.key).sort(), [toReplicaKey(damaged), toReplicaKey(lost)]);
  assertInStep(repaired);
  assert.equal(sha(await bytesOf(replicaAdmin, replicaBucket, toReplicaKey(damaged))), sha(original));
});

/** 300 small objects and a 12 MiB one in the middle, under their own prefix, for the resume tests. */
const RESUME_OBJECTS = 301;
async function seedResumeSource(): Promise<void> {
  const specs: Spec[] = [];
  for (let i = 0; i < 300; i++) specs.push(smallSpec(`resume/item-${String(i).padStart(3, '0')}`, i));
  specs.push({ key: 'resume/item-150-big', body: randomBytes(12 * MiB), headers: { ContentType: 'application/zip' } });
  await putAll(sourceAdmin, sourceBucket, specs);
}

async function abortedRun(replicaPrefix: string, abortAfter: number) {
  const counted = countedClients(sourceAt('resume'), replicaAt(replicaPrefix));
  const controller = new AbortController();
  let completed = 0;
  counted.onSuccess = (call) => {
    if ((call.command === 'PutObjectCommand' || call.command === 'CompleteMultipartUploadCommand') && !isManifest(call) && ++completed === abortAfter) controller.abort();
  };
  const checkpoints: ReplicationCheckpoint[] = [];
  await assert.rejects(
    replicateBucket({ source: sourceAt('resume'), replica: replicaAt(replicaPrefix), env, deletions: 'mirror', clients: counted.clients, signal: controller.signal, onCheckpoint: (c) => checkpoints.push(structuredClone(c)), concurrency: 4, checkpointIntervalMs: 0, ...SIZES }),
    (error: Error) => error.name === 'AbortError',
  );
  counted.destroy();
  assert.ok(counted.maxInFlight <= 4, `${counted.maxInFlight} transfers at once with concurrency 4`);
  // A checkpoint only passes keys that were copied together with every key before them.
  const copied = new Set(copiesCompleted(counted.calls).map((c) => c.key!.slice(replicaPrefix.length + 1)));
  const order = [...Array.from({ length: 300 }, (_, i) => `item-${String(i).padStart(3, '0')}`), 'item-150-big'].sort();
  let previous = '';
  for (const checkpoint of checkpoints) {
    const upTo = order.indexOf(checkpoint.startAfter);
    assert.ok(upTo >= 0 && checkpoint.startAfter >= previous, `checkpoints move forward (${checkpoint.startAfter})`);
    assert.ok(order.slice(0, upTo + 1).every((key) => copied.has(key)), `every key up to ${checkpoint.startAfter} was copied`);
    assert.equal(checkpoint.copied, upTo + 1, `the counters cover exactly the keys up to ${checkpoint.startAfter}`);
    previous = checkpoint.startAfter;
  }
  return { calls: counted.calls, checkpoints };
}

async function resumedRun(replicaPrefix: string, checkpoint: ReplicationCheckpoint) {
  const counted = countedClients(sourceAt('resume'), replicaAt(replicaPrefix));
  const result = await replicateBucket({ source: sourceAt('resume'), replica: replicaAt(replicaPrefix), env, deletions: 'mirror', clients: counted.clients, checkpoint, concurrency: 4, ...SIZES });
  counted.destroy();
  return { calls: counted.calls, result };
}

function assertEachCopiedOnce(first: Call[], second: Call[]): void {
  const completed = [...copiesCompleted(first), ...copiesCompleted(second)].map((c) => c.key!);
  assert.equal(completed.length, RESUME_OBJECTS, 'copies over both runs');
  assert.equal(new Set(completed).size, RESUME_OBJECTS, 'no object copied twice');
  // Not even started twice (an aborted multipart copy would show here).
  const started = [...copiesStarted(first), ...copiesStarted(second)].map((c) => c.key!);
  assert.equal(started.length, new Set(started).size, 'no copy started twice');
}

test('an aborted run resumed from its last checkpoint copies nothing twice', async (t) => {
  await seedResumeSource();
  const aborted = await abortedRun('resume-a', 100);
  const last = aborted.checkpoints.at(-1);
  assert.ok(last, 'checkpoints were handed out');
  t.diagnostic(`aborted after ${copiesCompleted(aborted.calls).length} copies; last checkpoint after "${last.startAfter}" (${last.copied} copied); ${aborted.checkpoints.length} checkpoints`);
  assert.ok(copiesCompleted(aborted.calls).length >= 100 && copiesCompleted(aborted.calls).length < RESUME_OBJECTS);
  const resumed = await resumedRun('resume-a', last);
  assertEachCopiedOnce(aborted.calls, resumed.calls);
  assert.equal(resumed.result.copied + resumed.result.unchanged, RESUME_OBJECTS);
  assert.equal(resumed.result.requests.head, 0, 'the manifest written with the checkpoint vouches for the copies');
  assertInStep(resumed.result);
});

test('a killed run (progress after an early checkpoint lost, manifest lost) resumed: HeadObject finds the copies, nothing is copied twice', async (t) => {
  const aborted = await abortedRun('resume-b', 100);
  const early = aborted.checkpoints[0];
  assert.ok(early);
  assert.ok(early.copied < 100);
  await replicaAdmin.send(new DeleteObjectCommand({ Bucket: replicaBucket, Key: `resume-b/${MANIFEST_KEY}` }));
  const resumed = await resumedRun('resume-b', early);
  t.diagnostic(`resumed from "${early.startAfter}" without manifest: ${JSON.stringify(resumed.result.requests)}`);
  assertEachCopiedOnce(aborted.calls, resumed.calls);
  assert.ok(resumed.result.requests.head >= copiesCompleted(aborted.calls).length);
  assertInStep(resumed.result);
});

test('a large object is streamed through, never held in memory whole', async (t) => {
  const size = 96 * MiB;
  const hash = createHash('sha256');
  async function* randomChunks() {
    for (let sent = 0; sent < size; sent += MiB) {
      const chunk = randomBytes(MiB);
      hash.update(chunk);
      yield chunk;
    }
  }
  await sourceAdmin.send(new PutObjectCommand({ Bucket: sourceBucket, Key: 'large/blob.bin', Body: Readable.from(randomChunks()), ContentLength: size }));
  const digest = hash.digest('hex');
  const baseline = process.memoryUsage().arrayBuffers;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }, 5);
  try {
    // Above the threshold the copy is streamed part by part; below it, in one PutObject: both streamed.
    for (const threshold of [128 * MiB, 6 * MiB]) {
      const result = await replicateBucket({ source: sourceAt('large'), replica: replicaAt(`large-${threshold}`), env, deletions: 'keep', multipartThresholdBytes: threshold, partSizeBytes: 16 * MiB });
      assertInStep(result);
      assert.equal(result.bytesCopied, size);
    }
  } finally {
    clearInterval(sampler);
  }
  t.diagnostic(`copying ${size / MiB} MiB twice raised buffer memory by at most ${((peak - baseline) / MiB).toFixed(1)} MiB`);
  assert.ok(peak - baseline < 48 * MiB, `buffers grew by ${((peak - baseline) / MiB).toFixed(1)} MiB while copying ${size / MiB} MiB`);
  for (const threshold of [128 * MiB, 6 * MiB]) {
    const copy = createHash('sha256');
    const got = await replicaAdmin.send(new GetObjectCommand({ Bucket: replicaBucket, Key: `large-${threshold}/blob.bin` }));
    for await (const chunk of got.Body as Readable) copy.update(chunk as Buffer);
    assert.equal(copy.digest('hex'), digest);
  }
});

test('faults: rejected credentials, a missing replica bucket, missing variables; doctor reports them with the fix', async () => {
  const wrong = 'Wr0ngSecretValue-never-shown';
  const badEnv = { ...env, [names.sourceSecret]: wrong };
  await assert.rejects(replicateBucket({ source: source(), replica: replica(), env: badEnv, deletions: 'keep' }), (error: Error) => {
    assert.ok(error instanceof BucketSourceError);
    assert.equal(error.failureType, FailureType.CredentialsRejected);
    assert.match(error.message, new RegExp(`${names.sourceKey}.*${names.sourceSecret}`));
    assert.ok(!error.message.includes(wrong) && !error.message.includes(servers.s3SecretAccessKey));
    return true;
  });
  await assert.rejects(replicateBucket({ source: source(), replica: replicaAt('x', 'no-such-bucket-here'), env, deletions: 'keep' }), (error: Error) => {
    assert.ok(error instanceof BucketSourceError);
    assert.equal(error.failureType, FailureType.BucketMissing);
    assert.match(error.message, /no-such-bucket-here/);
    return true;
  });
  await assert.rejects(replicateBucket({ source: source(), replica: replica(), env: { ...env, [names.replicaKey]: undefined }, deletions: 'keep' }), (error: Error) => {
    assert.ok(error instanceof BucketSourceError);
    assert.equal(error.failureType, FailureType.ConfigInvalid);
    assert.match(error.message, new RegExp(names.replicaKey));
    return true;
  });

  await assert.rejects(replicateBucket({ source: source(), replica: sourceAt('uploads/copy'), env, deletions: 'keep' }), (error: Error) => {
    assert.ok(error instanceof BucketSourceError);
    assert.equal(error.failureType, FailureType.ConfigInvalid);
    assert.match(error.message, /overlap/);
    return true;
  });

  const healthy = await checkBucketSource({ source: source(), replica: replica(), env });
  assert.ok(healthy.ok, healthy.detail);
  assert.equal(healthy.objects, expected.size);
  assert.equal((await keysUnder(replicaAdmin, replicaBucket, 'backups/uploads/.backupctl-probe/')).length, 0, 'the probe object was deleted');
  const rejected = await checkBucketSource({ source: source(), replica: replica(), env: { ...env, [names.replicaSecret]: wrong } });
  assert.equal(rejected.ok, false);
  assert.match(rejected.detail, /replica/);
  assert.match(rejected.fix ?? '', new RegExp(names.replicaSecret));
  assert.ok(!rejected.detail.includes(wrong));
  const missing = await checkBucketSource({ source: source(), replica: replicaAt('x', 'no-such-bucket-here'), env });
  assert.equal(missing.ok, false);
  assert.match(missing.fix ?? '', /create bucket "no-such-bucket-here"/);
});

test('restore: refuses a non-empty target; restores into an empty one what was replicated, byte for byte, with the original metadata', async (t) => {
  const occupied = uniqueName('occupied');
  await createBucket(occupied, servers);
  await sourceAdmin.send(new PutObjectCommand({ Bucket: occupied, Key: 'someone-elses.txt', Body: 'keep me' }));
  await assert.rejects(restoreFromReplica({ replica: replica(), target: sourceAt('', occupied), env, ...SIZES }), (error: Error) => {
    assert.ok(error instanceof BucketSourceError);
    assert.equal(error.failureType, FailureType.RestoreTargetUnsafe);
    assert.match(error.message, /someone-elses\.txt/);
    return true;
  });
  assert.deepEqual(await keysUnder(sourceAdmin, occupied), ['someone-elses.txt'], 'nothing was written');

  const target = uniqueName('restored');
  await createBucket(target, servers);
  const started = performance.now();
  const restored = await restoreFromReplica({ replica: replica(), target: sourceAt('', target), env, ...SIZES });
  t.diagnostic(`restored ${restored.copied} objects in ${((performance.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(restored.requests)}`);
  assertInStep(restored);
  assert.equal(restored.copied, expected.size);
  // What was restored is what was replicated: the same fingerprint, in the source's terms.
  assert.ok(compareFingerprints(lastResult.fingerprint, restored.fingerprint).equal);
  assert.ok(compareFingerprints(lastResult.fingerprint, restored.replicaFingerprint).equal);
  for (const key of ['uploads/big/archive.zip', smallKey(0), smallKey(105)]) {
    const relative = key.slice('uploads/'.length);
    assert.equal(sha(await bytesOf(sourceAdmin, target, relative)), expected.get(key));
    const original = await sourceAdmin.send(new HeadObjectCommand({ Bucket: sourceBucket, Key: key }));
    const back = await sourceAdmin.send(new HeadObjectCommand({ Bucket: target, Key: relative }));
    assert.deepEqual(back.Metadata ?? {}, original.Metadata ?? {}, `${key}: metadata without the recorded ETag`);
    assert.equal(back.ContentType, original.ContentType);
  }
  // Again into the same target: it only holds copies of the replica, so it is not refused, and nothing is copied.
  const again = await restoreFromReplica({ replica: replica(), target: sourceAt('', target), env, ...SIZES });
  assert.equal(again.copied, 0);
  assert.equal(again.unchanged, expected.size);
  // force: restores next to someone else's object, which stays.
  const forced = await restoreFromReplica({ replica: replicaAt('resume-a'), target: sourceAt('', occupied), env, force: true, ...SIZES });
  assert.equal(forced.copied, RESUME_OBJECTS);
  assert.equal(forced.keptDeleted, 1);
  assertInStep(forced);
  assert.equal(await bytesOf(sourceAdmin, occupied, 'someone-elses.txt').then(String), 'keep me');
});
