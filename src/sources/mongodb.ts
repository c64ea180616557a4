/**
 * MongoDB dump and restore with the `mongodb` driver alone (no mongodump, no mongorestore), in
 * mongodump's directory layout so the stock mongorestore can also read what this writes.
 *
 * - Documents are never decoded on the way out: the cursor returns each document's raw BSON
 *   (`raw: true`) in `_id` order, which goes to `<db>/<collection>.bson` through a write stream
 *   (backpressure respected) and into the collection's SHA-256 at the same time.
 * - On a replica set (MongoDB ≥ 5.0) every collection is read in one snapshot session, at the
 *   cluster time of its first read; elsewhere the fingerprint says why not.
 * - A restore refuses a target collection that holds documents unless `force`, checks every
 *   target before it changes anything, inserts in unordered batches, recreates the indexes and
 *   answers with the fingerprint of what the server now holds.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename as renameFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { BSON, ClientSession, Db, Document, MongoClient } from 'mongodb';
import { markProgress, stepSignal } from '../activities/heartbeat';
import { FailureType } from '../shared/failures';
import type { CollectionFingerprint, MongoFingerprint } from '../shared/fingerprints';
import { MongoSourceError, redact, toSourceError, withClient } from './mongodb-connection';
import { mongodb } from './mongodb-driver';
import { BSON_SUFFIX, METADATA_SUFFIX, MANIFEST_FILE, STAGING_FILE_MODE, STAGING_FOLDER_MODE, decodeForInsert, escapeFileName, metadataJson, parseMetadata, readBsonFile, unescapeFileName, type CollectionMetadata } from './mongodb-layout';

export { MongoSourceError, DEFAULT_SERVER_SELECTION_TIMEOUT_MS } from './mongodb-connection';
export { MANIFEST_FILE } from './mongodb-layout';

export interface MongoTarget {
  uri: string;
  /** Databases to read. Default: every database but admin, local and config. */
  databases?: string[];
  /**
   * Only these collections ("db.collection"); their databases need not be listed in
   * `databases`. With `databases` too, only the listed collections of those databases.
   */
  collections?: string[] /* "db.coll" */;
  /** How long to wait for a server to answer before failing with DatabaseUnreachable. Default 10 s. */
  serverSelectionTimeoutMs?: number;
}

export interface MongoProgress {
  database: string;
  collection: string;
  /** Documents of this collection so far. */
  documents: number;
  /** Raw BSON bytes of this collection so far. */
  bytes: number;
}

export interface MongoDumpOptions extends MongoTarget {
  /** An empty or missing folder: the dump's `<db>/` folders and dump-manifest.json go here. */
  directory: string;
  signal?: AbortSignal;
  onProgress?: (p: MongoProgress) => void;
  /** What was not dumped as asked (a listed collection that does not exist…). */
  onWarning?: (message: string) => void;
  /** Read every collection at one cluster time on a replica set (default true). */
  snapshot?: boolean;
}

export interface MongoRestoreOptions {
  uri: string;
  /** A folder written by dumpMongo (or mongodump, without --gzip or --archive). */
  directory: string;
  /** Dumped database name → target database name. */
  rename?: Record<string, string>;
  /** Only these dumped databases (names as in the dump). Default: all in the folder. */
  databases?: string[];
  /** Drop a target collection that holds documents instead of refusing it. */
  force?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: MongoProgress) => void;
  /** What the server would not take as dumped (an unsupported collection or index option…); the restore goes on. */
  onWarning?: (message: string) => void;
  serverSelectionTimeoutMs?: number;
  /** Documents per insert batch (default 1000); a batch also ends at `batchBytes` (default 8 MiB). */
  batchDocuments?: number;
  batchBytes?: number;
}

const SYSTEM_DATABASES = new Set(['admin', 'local', 'config']);
const NOT_A_REPLICA_SET = 'the server is not a replica set (its hello has no setName): collections were read one after another, not at one point in time';
const PROGRESS_INTERVAL_MS = 250;

interface SelectedCollection {
  database: string;
  name: string;
  /** "collection", "view" or "timeseries". */
  type: string;
  options: Document;
  uuid?: string;
}

const holdsDocuments = (c: { type: string }) => c.type !== 'view';

function splitName(qualified: string): { database: string; collection: string } {
  const dot = qualified.indexOf('.');
  if (dot <= 0 || dot === qualified.length - 1) throw new MongoSourceError(`"${qualified}" is not a collection name of the form "database.collection"`, FailureType.ConfigInvalid);
  return { database: qualified.slice(0, dot), collection: qualified.slice(dot + 1) };
}

async function selectDatabases(client: MongoClient, target: MongoTarget): Promise<string[]> {
  if (target.databases && target.databases.length > 0) return [...new Set(target.databases)].sort();
  if (target.collections && target.collections.length > 0) return [...new Set(target.collections.map((c) => splitName(c).database))].sort();
  const list = await client.db('admin').admin().listDatabases({ nameOnly: true });
  return list.databases.map((d) => d.name).filter((name) => !SYSTEM_DATABASES.has(name)).sort();
}

function hexUuid(value: unknown): string | undefined {
  if (value instanceof mongodb().BSON.Binary) return Buffer.from(value.buffer).toString('hex');
  return undefined;
}

/** The collections and views to read, sorted by database then name; system collections are left out. */
async function selectCollections(client: MongoClient, target: MongoTarget, warn: (m: string) => void): Promise<SelectedCollection[]> {
  const wanted = target.collections && target.collections.length > 0 ? new Set(target.collections) : undefined;
  for (const name of wanted ?? []) splitName(name);
  const selected: SelectedCollection[] = [];
  for (const database of await selectDatabases(client, target)) {
    // promoteValues: false keeps each option's BSON type (a Long size stays a Long).
    const infos = await client.db(database).listCollections({}, { nameOnly: false, promoteValues: false, promoteLongs: false }).toArray();
    for (const info of infos) {
      const name = String(info.name);
      if (name.startsWith('system.')) continue;
      if (wanted && !wanted.has(`${database}.${name}`)) continue;
      const raw = info as Document;
      selected.push({ database, name, type: typeof raw.type === 'string' ? raw.type : 'collection', options: (raw.options as Document | undefined) ?? {}, uuid: hexUuid((raw.info as Document | undefined)?.uuid) });
    }
  }
  for (const name of wanted ?? []) {
    if (!selected.some((c) => `${c.database}.${c.name}` === name)) warn(`collection ${name} does not exist: nothing dumped for it`);
  }
  return selected.sort((a, b) => (a.database === b.database ? compare(a.name, b.name) : compare(a.database, b.database)));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function listIndexes(client: MongoClient, c: SelectedCollection): Promise<Document[]> {
  if (!holdsDocuments(c)) return [];
  const indexes = await client.db(c.database).collection(c.name).listIndexes({ promoteValues: false, promoteLongs: false }).toArray();
  // mongodump leaves out the namespace (restoring under another name must not carry it).
  return indexes.map(({ ns: _ns, ...index }) => index);
}

// ---------------------------------------------------------------------------------------------
// Reading: one pass over each collection's raw documents in _id order

interface ReadContext {
  consistency: MongoFingerprint['consistency'];
  session?: ClientSession;
}

/**
 * A snapshot session pinned at one cluster time (the first read's atClusterTime: a distinct on
 * the first collection, which the driver then applies to every find in the session), or the
 * reason there is none.
 */
async function openReadContext(client: MongoClient, first: SelectedCollection | undefined, wantSnapshot: boolean): Promise<ReadContext> {
  if (!wantSnapshot) return { consistency: { snapshot: false, reason: 'snapshot reads were turned off for this read: collections were read one after another, not at one point in time' } };
  const hello = await client.db('admin').command({ hello: 1 });
  if (typeof hello.setName !== 'string') return { consistency: { snapshot: false, reason: NOT_A_REPLICA_SET } };
  if (typeof hello.maxWireVersion === 'number' && hello.maxWireVersion < 13) {
    return { consistency: { snapshot: false, reason: `the replica set ${hello.setName} runs MongoDB before 5.0, which has no snapshot reads outside transactions: collections were read one after another` } };
  }
  if (first === undefined) {
    const time = (hello.$clusterTime as { clusterTime?: BSON.Timestamp } | undefined)?.clusterTime;
    return { consistency: time ? { snapshot: true, clusterTime: `${time.t}.${time.i}` } : { snapshot: false, reason: 'there was no collection to read' } };
  }
  const session = client.startSession({ snapshot: true });
  try {
    const reply = await client.db(first.database).command({ distinct: first.name, key: '_id', query: { _id: { $in: [] } }, readConcern: { level: 'snapshot' } }, { session });
    const at = reply.atClusterTime as BSON.Timestamp | undefined;
    if (!(at instanceof mongodb().BSON.Timestamp)) {
      await session.endSession();
      return { consistency: { snapshot: false, reason: `the replica set ${hello.setName} did not report the cluster time of a snapshot read: collections were read one after another` } };
    }
    return { consistency: { snapshot: true, clusterTime: `${at.t}.${at.i}` }, session };
  } catch (error) {
    await session.endSession();
    throw error;
  }
}

/** Calls `each` with every raw document of the collection in ascending _id order; returns its fingerprint. */
async function readCollection(
  client: MongoClient,
  context: ReadContext,
  c: SelectedCollection,
  options: { signal?: AbortSignal; onProgress?: (p: MongoProgress) => void; each?: (raw: Buffer) => Promise<void> | void },
): Promise<CollectionFingerprint> {
  const hash = createHash('sha256');
  let count = 0;
  let bytes = 0;
  let lastProgress = 0;
  const report = () => options.onProgress?.({ database: c.database, collection: c.name, documents: count, bytes });
  const cursor = client.db(c.database).collection(c.name).find({}, { raw: true, sort: { _id: 1 }, session: context.session, signal: options.signal });
  try {
    for await (const document of cursor) {
      options.signal?.throwIfAborted();
      const raw = document as unknown as Buffer;
      hash.update(raw);
      count++;
      bytes += raw.length;
      const pending = options.each?.(raw);
      if (pending) await pending;
      if (options.onProgress && Date.now() - lastProgress >= PROGRESS_INTERVAL_MS) {
        lastProgress = Date.now();
        report();
      }
    }
  } catch (error) {
    if (error instanceof mongodb().MongoServerError && (error.code === 239 || error.codeName === 'SnapshotTooOld')) {
      throw new Error(`${c.database}.${c.name}: the read ran past the server's snapshot history window (minSnapshotHistoryWindowInSeconds, 300 s by default), so one cluster time cannot cover the whole dump: raise that window on the server or dump with snapshot: false (${error.message})`, { cause: error });
    }
    throw error;
  } finally {
    await cursor.close().catch(() => undefined);
  }
  report();
  return { database: c.database, collection: c.name, count, bytes, sha256: hash.digest('hex') };
}

async function readAll(
  client: MongoClient,
  collections: SelectedCollection[],
  options: { signal?: AbortSignal; onProgress?: (p: MongoProgress) => void; snapshot?: boolean; eachCollection?: (c: SelectedCollection) => Promise<{ each?: (raw: Buffer) => Promise<void> | void; done?: () => Promise<void>; abort?: () => void }> },
): Promise<MongoFingerprint> {
  const data = collections.filter(holdsDocuments);
  const context = await openReadContext(client, data[0], options.snapshot ?? true);
  try {
    const fingerprints: CollectionFingerprint[] = [];
    for (const c of collections) {
      options.signal?.throwIfAborted();
      const sink = (await options.eachCollection?.(c)) ?? {};
      try {
        if (holdsDocuments(c)) fingerprints.push(await readCollection(client, context, c, { signal: options.signal, onProgress: options.onProgress, each: sink.each }));
        await sink.done?.();
      } catch (error) {
        sink.abort?.();
        throw error;
      }
    }
    return { kind: 'mongodb', consistency: context.consistency, collections: fingerprints };
  } finally {
    await context.session?.endSession().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

function rethrow(error: unknown, options: { uri: string; serverSelectionTimeoutMs?: number; signal?: AbortSignal }): never {
  // Aborted: whatever the driver or a stream threw on the way out, the answer is the abort.
  if (options.signal?.aborted) throw options.signal.reason ?? error;
  throw toSourceError(error, options);
}

/** dbStats dataSize of each selected database (with `collections`: the size of those collections). */
export async function estimateMongoSize(target: MongoTarget): Promise<{ databases: { name: string; sizeBytes: number }[]; totalBytes: number }> {
  try {
    return await withClient(target, async (client) => {
      const databases: { name: string; sizeBytes: number }[] = [];
      if (target.collections && target.collections.length > 0) {
        const sizes = new Map<string, number>();
        for (const c of await selectCollections(client, target, () => undefined)) {
          if (!sizes.has(c.database)) sizes.set(c.database, 0);
          if (!holdsDocuments(c)) continue;
          const stats = await client.db(c.database).command({ collStats: c.name });
          sizes.set(c.database, sizes.get(c.database)! + Number(stats.size ?? 0));
        }
        for (const [name, sizeBytes] of sizes) databases.push({ name, sizeBytes });
      } else {
        for (const name of await selectDatabases(client, target)) {
          const stats = await client.db(name).command({ dbStats: 1 }).catch(async (error: unknown) => {
            // Dropped since it was listed (another client's work): nothing of it to dump or size.
            // MongoDB answers zeros for it; FerretDB fails ("database is closed").
            const listed = await client.db('admin').admin().listDatabases({ nameOnly: true, filter: { name } });
            if (listed.databases.some((d) => d.name === name)) throw error;
            return undefined;
          });
          if (stats) databases.push({ name, sizeBytes: Number(stats.dataSize ?? 0) });
        }
      }
      return { databases, totalBytes: databases.reduce((sum, d) => sum + d.sizeBytes, 0) };
    });
  } catch (error) {
    rethrow(error, target);
  }
}

/** Whether `database` exists on the server (holds a collection): a restore records the targets it creates. */
export async function mongoDatabaseExists(target: Pick<MongoTarget, 'uri' | 'serverSelectionTimeoutMs'>, database: string): Promise<boolean> {
  try {
    return await withClient(target, async (client) => (await client.db('admin').admin().listDatabases({ nameOnly: true, filter: { name: database } })).databases.some((d) => d.name === database));
  } catch (error) {
    rethrow(error, target);
  }
}

/** Count, bytes and SHA-256 of every selected collection's raw documents in _id order (nothing written). */
export async function fingerprintMongo(target: MongoTarget & { signal?: AbortSignal; snapshot?: boolean }): Promise<MongoFingerprint> {
  try {
    return await withClient(target, async (client) => readAll(client, await selectCollections(client, target, () => undefined), { signal: target.signal, snapshot: target.snapshot }));
  } catch (error) {
    rethrow(error, target);
  }
}

async function assertEmptyFolder(directory: string): Promise<void> {
  await mkdir(directory, { recursive: true, mode: STAGING_FOLDER_MODE });
  const entries = await readdir(directory);
  if (entries.length > 0) throw new Error(`the dump folder ${directory} is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}): dump into an empty or new folder`);
}

/**
 * Writes `<directory>/<db>/<collection>.bson` and `.metadata.json` for every selected collection
 * (views: metadata only), then `dump-manifest.json`; returns the fingerprint of what was read.
 */
export async function dumpMongo(opts: MongoDumpOptions): Promise<MongoFingerprint> {
  // Stops also when the activity's step stalls (documents are its progress).
  opts = { ...opts, signal: stepSignal(opts.signal) };
  const warn = opts.onWarning ?? (() => undefined);
  try {
    await assertEmptyFolder(opts.directory);
    return await withClient(opts, async (client) => {
      const collections = await selectCollections(client, opts, warn);
      const started = new Date();
      const fingerprint = await readAll(client, collections, {
        signal: opts.signal,
        onProgress: opts.onProgress,
        snapshot: opts.snapshot,
        eachCollection: async (c) => {
          const folder = join(opts.directory, c.database);
          await mkdir(folder, { recursive: true, mode: STAGING_FOLDER_MODE });
          const base = join(folder, escapeFileName(c.name));
          const metadata: CollectionMetadata = { options: c.options, indexes: await listIndexes(client, c), ...(c.uuid ? { uuid: c.uuid } : {}), collectionName: c.name, type: c.type };
          await writeFile(`${base}${METADATA_SUFFIX}`, metadataJson(metadata), { mode: STAGING_FILE_MODE });
          if (!holdsDocuments(c)) return {};
          return streamTo(`${base}${BSON_SUFFIX}`, opts.signal);
        },
      });
      const manifest = {
        format: 'mongodump-directory',
        writtenBy: 'backupctl',
        startedAt: started.toISOString(),
        finishedAt: new Date().toISOString(),
        views: collections.filter((c) => !holdsDocuments(c)).map((c) => `${c.database}.${c.name}`),
        fingerprint,
      };
      // Written last and renamed into place: a folder with a manifest holds a whole dump.
      const manifestPath = join(opts.directory, MANIFEST_FILE);
      await writeFile(`${manifestPath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`, { mode: STAGING_FILE_MODE });
      await renameFile(`${manifestPath}.tmp`, manifestPath);
      return fingerprint;
    });
  } catch (error) {
    rethrow(error, opts);
  }
}

/** A write stream for raw documents that waits on backpressure and surfaces write errors. */
function streamTo(path: string, signal?: AbortSignal): { each: (raw: Buffer) => Promise<void> | void; done: () => Promise<void>; abort: () => void } {
  const out = createWriteStream(path, { flags: 'wx', mode: STAGING_FILE_MODE, highWaterMark: 4 * 1024 * 1024 });
  let failure: Error | undefined;
  out.on('error', (error) => {
    failure = error;
  });
  return {
    each(raw) {
      if (failure) throw failure;
      if (!out.write(raw)) return once(out, 'drain', { signal }).then(() => undefined);
      return undefined;
    },
    async done() {
      out.end();
      await finished(out);
      if (failure) throw failure;
    },
    abort() {
      out.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Restore

interface DumpedCollection {
  /** Database name in the dump. */
  database: string;
  /** Database it is restored into. */
  target: string;
  name: string;
  metadata: CollectionMetadata;
  bsonPath?: string;
}

async function readDumpFolder(directory: string, databases: string[] | undefined, rename: Record<string, string>): Promise<DumpedCollection[]> {
  if (!existsSync(directory)) throw new MongoSourceError(`the dump folder ${directory} does not exist`, FailureType.SourceMissing);
  const folders = (await readdir(directory, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  for (const wanted of databases ?? []) {
    if (!folders.includes(wanted)) throw new MongoSourceError(`the dump in ${directory} has no database ${wanted} (it has: ${folders.join(', ') || 'none'})`, FailureType.ConfigInvalid);
  }
  const dumped: DumpedCollection[] = [];
  for (const database of folders) {
    if (databases && !databases.includes(database)) continue;
    const folder = join(directory, database);
    const files = (await readdir(folder)).sort();
    const names = new Set<string>();
    for (const file of files) {
      if (file.endsWith(METADATA_SUFFIX)) names.add(file.slice(0, -METADATA_SUFFIX.length));
      else if (file.endsWith(BSON_SUFFIX)) names.add(file.slice(0, -BSON_SUFFIX.length));
    }
    for (const fileName of [...names].sort()) {
      const metadataPath = join(folder, `${fileName}${METADATA_SUFFIX}`);
      const bsonPath = join(folder, `${fileName}${BSON_SUFFIX}`);
      const metadata = files.includes(`${fileName}${METADATA_SUFFIX}`)
        ? parseMetadata(await readFile(metadataPath, 'utf8'), metadataPath)
        : { options: {}, indexes: [], collectionName: unescapeFileName(fileName), type: 'collection' };
      const name = metadata.collectionName || unescapeFileName(fileName);
      if (name.startsWith('system.')) continue;
      dumped.push({ database, target: rename[database] ?? database, name, metadata, bsonPath: files.includes(`${fileName}${BSON_SUFFIX}`) ? bsonPath : undefined });
    }
  }
  return dumped;
}

// Options that only make sense together: offered to the server as one.
const OPTION_GROUPS = [['capped', 'size', 'max'], ['validator', 'validationLevel', 'validationAction'], ['timeseries', 'expireAfterSeconds', 'clusteredIndex']];

function optionGroups(options: Document): string[][] {
  const keys = Object.keys(options);
  const groups: string[][] = [];
  for (const group of OPTION_GROUPS) {
    const present = group.filter((k) => keys.includes(k));
    if (present.length > 0) groups.push(present);
  }
  for (const key of keys) if (!OPTION_GROUPS.some((g) => g.includes(key))) groups.push([key]);
  return groups;
}

const pick = (options: Document, keys: string[]): Document => Object.fromEntries(keys.filter((k) => k in options).map((k) => [k, options[k]]));
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Creates the collection with its dumped options. Where the server rejects the options, each
 * group is tried alone (and the probe dropped) to find which it takes; the collection is then
 * created with those and the others are reported, so one unsupported option never costs the data.
 */
async function createCollection(db: Db, name: string, options: Document, warn: (m: string) => void): Promise<void> {
  try {
    await db.command({ create: name, ...options });
    return;
  } catch (error) {
    if (Object.keys(options).length === 0 || (error instanceof mongodb().MongoServerError && error.code === 48)) throw error;
  }
  const accepted: string[] = [];
  for (const group of optionGroups(options)) {
    try {
      await db.command({ create: name, ...pick(options, group) });
      await db.collection(name).drop();
      accepted.push(...group);
    } catch (error) {
      warn(`${db.databaseName}.${name}: the server rejected the collection option${group.length > 1 ? 's' : ''} ${group.join(', ')} (${mongodb().BSON.EJSON.stringify(pick(options, group))}): ${message(error)}; created without ${group.length > 1 ? 'them' : 'it'}`);
    }
  }
  await db.command({ create: name, ...pick(options, accepted) });
}

/** Index specs as the server takes them back: no `v` (FerretDB rejects it, MongoDB picks its default), no ns, no background. */
function indexSpecs(metadata: CollectionMetadata): Document[] {
  return metadata.indexes.filter((i) => i.name !== '_id_').map(({ v: _v, ns: _ns, background: _background, ...spec }) => spec);
}

async function createIndexes(db: Db, name: string, specs: Document[], warn: (m: string) => void): Promise<void> {
  if (specs.length === 0) return;
  try {
    await db.command({ createIndexes: name, indexes: specs });
    return;
  } catch {
    // One at a time: the ones the server takes are kept, each refusal is reported.
  }
  for (const spec of specs) {
    try {
      await db.command({ createIndexes: name, indexes: [spec] });
    } catch (error) {
      warn(`${db.databaseName}.${name}: the server rejected the index ${String(spec.name)} ${mongodb().BSON.EJSON.stringify(spec)}: ${message(error)}; restored without it`);
    }
  }
}

interface TargetState {
  exists: boolean;
  isView: boolean;
  holdsDocuments: boolean;
}

async function targetState(client: MongoClient, c: DumpedCollection): Promise<TargetState> {
  const db = client.db(c.target);
  const found = await db.listCollections({ name: c.name }, { nameOnly: false }).toArray();
  if (found.length === 0) return { exists: false, isView: false, holdsDocuments: false };
  const isView = (found[0] as Document).type === 'view';
  const holds = !isView && (await db.collection(c.name).findOne({}, { projection: { _id: 1 } })) !== null;
  return { exists: true, isView, holdsDocuments: holds };
}

async function insertDocuments(client: MongoClient, c: DumpedCollection, opts: MongoRestoreOptions): Promise<void> {
  if (!c.bsonPath) return;
  const collection = client.db(c.target).collection(c.name);
  const maxDocuments = opts.batchDocuments ?? 1000;
  const maxBytes = opts.batchBytes ?? 8 * 1024 * 1024;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let documents = 0;
  let bytes = 0;
  let lastProgress = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    // The driver has no raw insert: each batch (never the whole file) is decoded with every
    // BSON type kept, so the driver encodes the same bytes again.
    const docs = batch.map(decodeForInsert);
    const size = batchBytes;
    batch = [];
    batchBytes = 0;
    try {
      await collection.insertMany(docs, { ordered: false });
    } catch (error) {
      if (error instanceof mongodb().MongoBulkWriteError) {
        const errors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
        const first = errors[0];
        throw new Error(`${c.target}.${c.name}: the server refused ${errors.length} of ${docs.length} documents of a batch (${documents + docs.length} read so far): ${first ? `document ${first.index} of the batch: ${first.errmsg}` : error.message}`, { cause: error });
      }
      throw error;
    }
    documents += docs.length;
    bytes += size;
    if (opts.onProgress && Date.now() - lastProgress >= PROGRESS_INTERVAL_MS) {
      lastProgress = Date.now();
      opts.onProgress({ database: c.target, collection: c.name, documents, bytes });
    }
  };
  for await (const raw of readBsonFile(c.bsonPath, opts.signal)) {
    opts.signal?.throwIfAborted();
    if (batch.length > 0 && (batch.length >= maxDocuments || batchBytes + raw.length > maxBytes)) await flush();
    batch.push(raw);
    batchBytes += raw.length;
  }
  await flush();
  opts.onProgress?.({ database: c.target, collection: c.name, documents, bytes });
}

/**
 * Restores a dump folder: every target is checked first (a collection or view that exists and
 * holds documents is refused unless `force`), then each collection is created with its options,
 * filled and indexed, then views are created. Returns the fingerprint of the restored
 * collections as read back from the server, under their target database names.
 */
export async function restoreMongo(opts: MongoRestoreOptions): Promise<MongoFingerprint> {
  opts = { ...opts, signal: stepSignal(opts.signal) };
  const warn = opts.onWarning ?? (() => undefined);
  const rename = opts.rename ?? {};
  try {
    const dumped = await readDumpFolder(opts.directory, opts.databases, rename);
    return await withClient(opts, async (client) => {
      const states = new Map<DumpedCollection, TargetState>();
      const refused: string[] = [];
      for (const c of dumped) {
        const state = await targetState(client, c);
        states.set(c, state);
        if (!opts.force && (state.holdsDocuments || state.isView || (state.exists && c.metadata.type === 'view'))) refused.push(`${c.target}.${c.name}`);
      }
      if (refused.length > 0) {
        throw new MongoSourceError(
          `refusing to restore into ${refused.slice(0, 5).join(', ')}${refused.length > 5 ? ` and ${refused.length - 5} more` : ''}: ${refused.length === 1 ? 'it already exists and is not empty' : 'they already exist and are not empty'}; pass force to replace ${refused.length === 1 ? 'it' : 'them'}, or restore into another database name (rename)`,
          FailureType.RestoreTargetUnsafe,
        );
      }
      const collections = dumped.filter((c) => c.metadata.type !== 'view');
      const views = dumped.filter((c) => c.metadata.type === 'view');
      for (const c of [...collections, ...views]) {
        opts.signal?.throwIfAborted();
        const db = client.db(c.target);
        const state = states.get(c)!;
        const isView = c.metadata.type === 'view';
        // Only reached with force, or for an empty collection (kept: it may carry its own settings).
        const replace = state.exists && (opts.force || state.isView || isView);
        if (replace) await db.collection(c.name).drop();
        else if (state.exists) warn(`${c.target}.${c.name} already existed, empty: kept as it was (its options were not changed)`);
        if (isView) {
          try {
            await db.command({ create: c.name, ...c.metadata.options });
          } catch (error) {
            warn(`${c.target}.${c.name}: the server would not create the view (${mongodb().BSON.EJSON.stringify(c.metadata.options)}): ${message(error)}; not restored`);
          }
          continue;
        }
        if (!state.exists || replace) await createCollection(db, c.name, c.metadata.options, warn);
        await insertDocuments(client, c, opts);
        await createIndexes(db, c.name, indexSpecs(c.metadata), warn);
      }
      const restored: SelectedCollection[] = collections.map((c) => ({ database: c.target, name: c.name, type: c.metadata.type, options: c.metadata.options }));
      restored.sort((a, b) => (a.database === b.database ? compare(a.name, b.name) : compare(a.database, b.database)));
      // Reading every document back takes as long as restoring them: each batch is progress.
      return readAll(client, restored, { signal: opts.signal, onProgress: markProgress });
    });
  } catch (error) {
    rethrow(error, opts);
  }
}

/** The dump folder's manifest as dumpMongo wrote it (undefined for a mongodump folder). */
export async function readDumpManifest(directory: string): Promise<{ fingerprint: MongoFingerprint; startedAt: string; finishedAt: string; views: string[] } | undefined> {
  const path = join(directory, MANIFEST_FILE);
  if (!existsSync(path)) return undefined;
  return JSON.parse(await readFile(path, 'utf8')) as { fingerprint: MongoFingerprint; startedAt: string; finishedAt: string; views: string[] };
}

/** For messages built outside this module: the URI's hosts with any credentials removed. */
export function redactMongoMessage(text: string, uri: string): string {
  return redact(text, uri);
}
