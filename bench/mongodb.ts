/**
 * How fast dumpMongo is against the practical limit of reading the same documents.
 *
 *   npx tsx bench/mongodb.ts [--bytes 50MB] [--uri mongodb://…] [--rounds 3]
 *
 * Without --uri it starts a FerretDB (SQLite, in a temp folder) like the tests do. benchMongo
 * loads ~sizeBytes of documents shaped like a job pipeline's state (pipeline_runs, job_cache,
 * applications) unless the counts already match, then alternates, round after round, (a) a
 * dumpMongo into `directory` (emptied before each round) and (b) a bare `raw: true` read of the
 * same collections in the same `_id` order that throws the buffers away: (b) is what the server
 * and the driver allow, (a) − (b) is what hashing and writing the files cost.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BSON, MongoClient, type Document } from 'mongodb';
import { startFerretDb } from '../src/servers/processes';
import { dumpMongo } from '../src/sources/mongodb';

export interface MongoBenchResult {
  documents: number;
  bytes: number;
  dumpSeconds: number[];
  rawReadSeconds: number[];
}

const { ObjectId } = BSON;
const DATABASE = 'bench_job_pipeline';
/** Share of the bytes per collection. */
const SHARES: Record<string, number> = { pipeline_runs: 0.35, job_cache: 0.45, applications: 0.2 };

/** A small deterministic generator, so two loads of the same size hold the same documents. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const WORDS = ['platform', 'engineer', 'remote', 'senior', 'backend', 'distributed', 'systems', 'kubernetes', 'typescript', 'postgres', 'temporal', 'workflow', 'pipeline', 'observability', 'latency', 'throughput', 'on-call', 'migration', 'terraform', 'mentoring', 'product', 'customer', 'reliability', 'budget', 'hiring', 'equity', 'benefits', 'hybrid', 'Berlin', 'Lisbon', 'London', 'Amsterdam'];
const COMPANIES = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Vandelay', 'Tyrell', 'Cyberdyne', 'Northwind', 'Contoso'];
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

function text(next: () => number, bytes: number): string {
  const words: string[] = [];
  let length = 0;
  while (length < bytes) {
    const word = WORDS[Math.floor(next() * WORDS.length)]!;
    words.push(word);
    length += word.length + 1;
  }
  return words.join(' ');
}

const pick = <T>(next: () => number, values: readonly T[]): T => values[Math.floor(next() * values.length)]!;
const objectId = (next: () => number, seconds: number) => ObjectId.createFromTime(seconds).toHexString().slice(0, 8) + Math.floor(next() * 2 ** 32).toString(16).padStart(8, '0') + Math.floor(next() * 2 ** 32).toString(16).padStart(8, '0');

function makeDocument(collection: string, i: number): Document {
  const next = random(i * 7919 + collection.length);
  const at = new Date(Date.UTC(2025, 0, 1) + i * 60_000);
  const id = new ObjectId(objectId(next, Math.floor(at.getTime() / 1000)));
  if (collection === 'pipeline_runs') {
    const steps = ['fetch', 'dedupe', 'score', 'draft', 'review', 'apply'].map((name, s) => ({
      name, status: pick(next, STATUSES), startedAt: new Date(at.getTime() + s * 30_000), finishedAt: new Date(at.getTime() + s * 30_000 + 25_000),
      attempts: 1 + Math.floor(next() * 3), ...(next() < 0.1 ? { error: text(next, 120) } : {}),
    }));
    return {
      _id: id, pipeline: 'job-search', run: i, status: pick(next, STATUSES), trigger: next() < 0.8 ? 'schedule' : 'manual', startedAt: at, finishedAt: new Date(at.getTime() + 180_000),
      durationMs: 150_000 + Math.floor(next() * 60_000), steps, counts: { fetched: Math.floor(next() * 500), matched: Math.floor(next() * 50), applied: Math.floor(next() * 5) },
      tags: Array.from({ length: 4 }, () => pick(next, WORDS)), log: text(next, 400),
    };
  }
  if (collection === 'job_cache') {
    return {
      _id: id, source: pick(next, ['linkedin', 'indeed', 'wellfound', 'company-site']), url: `https://jobs.example.com/${pick(next, COMPANIES).toLowerCase()}/${i}`,
      fetchedAt: at, expiresAt: new Date(at.getTime() + 14 * 86_400_000), title: `${pick(next, ['Senior', 'Staff', 'Lead'])} ${pick(next, ['Platform', 'Backend', 'SRE'])} Engineer`,
      company: pick(next, COMPANIES), location: { city: pick(next, WORDS.slice(-4)), remote: next() < 0.5 }, salary: { min: 70_000 + Math.floor(next() * 30_000), max: 110_000 + Math.floor(next() * 40_000), currency: 'EUR' },
      description: text(next, 700), skills: Array.from({ length: 6 }, () => pick(next, WORDS)), hash: Math.floor(next() * 2 ** 52).toString(16).padStart(16, '0'),
    };
  }
  return {
    _id: id, jobId: new ObjectId(objectId(next, Math.floor(at.getTime() / 1000) - 3600)), company: pick(next, COMPANIES), position: `${pick(next, ['Platform', 'Backend'])} Engineer`,
    status: pick(next, ['draft', 'sent', 'interview', 'offer', 'rejected']), appliedAt: at, updatedAt: new Date(at.getTime() + 5 * 86_400_000),
    coverLetter: text(next, 500), notes: Array.from({ length: 3 }, () => text(next, 60)), contacts: [{ name: 'Recruiter', email: `talent@${pick(next, COMPANIES).toLowerCase()}.example` }],
    history: [{ status: 'draft', at }, { status: 'sent', at: new Date(at.getTime() + 3_600_000) }],
  };
}

/** Documents per collection for ~sizeBytes in all, from each collection's average BSON size. */
function plan(sizeBytes: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const [collection, share] of Object.entries(SHARES)) {
    let sample = 0;
    for (let i = 0; i < 50; i++) sample += BSON.calculateObjectSize(makeDocument(collection, i));
    counts[collection] = Math.max(1, Math.round((sizeBytes * share) / (sample / 50)));
  }
  return counts;
}

async function load(client: MongoClient, counts: Record<string, number>, log: (s: string) => void): Promise<void> {
  const db = client.db(DATABASE);
  for (const [collection, count] of Object.entries(counts)) {
    const existing = await db.collection(collection).countDocuments();
    if (existing === count) {
      log(`${DATABASE}.${collection}: ${count} documents already loaded`);
      continue;
    }
    await db.collection(collection).drop().catch(() => undefined);
    const started = performance.now();
    let bytes = 0;
    for (let i = 0; i < count; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, count - i) }, (_, j) => makeDocument(collection, i + j));
      for (const doc of batch) bytes += BSON.calculateObjectSize(doc);
      await db.collection(collection).insertMany(batch, { ordered: false });
    }
    const seconds = (performance.now() - started) / 1000;
    log(`${DATABASE}.${collection}: loaded ${count} documents, ${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s (${(bytes / 1e6 / seconds).toFixed(2)} MB/s, ${Math.round(count / seconds)} documents/s)`);
  }
  await db.collection('pipeline_runs').createIndex({ startedAt: -1 });
  await db.collection('job_cache').createIndex({ url: 1 }, { unique: true });
  await db.collection('applications').createIndex({ company: 1, status: 1 });
}

export async function benchMongo(opts: { uri: string; directory: string; sizeBytes: number; log: (s: string) => void; rounds?: number }): Promise<MongoBenchResult> {
  const counts = plan(opts.sizeBytes);
  const client = await MongoClient.connect(opts.uri, { serverSelectionTimeoutMS: 10_000 });
  const result: MongoBenchResult = { documents: 0, bytes: 0, dumpSeconds: [], rawReadSeconds: [] };
  try {
    await load(client, counts, opts.log);
    const collections = Object.keys(counts).map((c) => `${DATABASE}.${c}`);
    for (let round = 1; round <= (opts.rounds ?? 3); round++) {
      rmSync(opts.directory, { recursive: true, force: true });
      let started = performance.now();
      const fingerprint = await dumpMongo({ uri: opts.uri, collections, directory: opts.directory });
      const dumpSeconds = (performance.now() - started) / 1000;
      result.dumpSeconds.push(dumpSeconds);
      result.documents = fingerprint.collections.reduce((n, c) => n + c.count, 0);
      result.bytes = fingerprint.collections.reduce((n, c) => n + c.bytes, 0);
      rmSync(opts.directory, { recursive: true, force: true });

      started = performance.now();
      let documents = 0;
      let bytes = 0;
      for (const collection of Object.keys(counts)) {
        for await (const raw of client.db(DATABASE).collection(collection).find({}, { raw: true, sort: { _id: 1 } })) {
          documents++;
          bytes += (raw as unknown as Buffer).length;
        }
      }
      const rawSeconds = (performance.now() - started) / 1000;
      result.rawReadSeconds.push(rawSeconds);
      if (documents !== result.documents || bytes !== result.bytes) throw new Error(`the raw read saw ${documents} documents / ${bytes} bytes, the dump ${result.documents} / ${result.bytes}`);
      const mb = result.bytes / 1e6;
      opts.log(`round ${round}: dump ${dumpSeconds.toFixed(2)} s (${(mb / dumpSeconds).toFixed(1)} MB/s), raw read ${rawSeconds.toFixed(2)} s (${(mb / rawSeconds).toFixed(1)} MB/s) for ${result.documents} documents, ${mb.toFixed(1)} MB`);
    }
  } finally {
    await client.close();
  }
  return result;
}

function parseBytes(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(value.trim());
  if (!match) throw new Error(`--bytes ${value}: give a size such as 50MB`);
  const unit = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9 }[(match[2] ?? 'b').toLowerCase() as 'b' | 'kb' | 'mb' | 'gb'];
  return Math.round(Number(match[1]) * unit);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const sizeBytes = parseBytes(value('bytes') ?? '50MB');
  const server = value('uri') ? undefined : await startFerretDb();
  const uri = value('uri') ?? server!.uri;
  const directory = join(tmpdir(), `bench-mongodb-${process.pid}`);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  try {
    const result = await benchMongo({ uri, directory, sizeBytes, log, rounds: Number(value('rounds') ?? 3) });
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    log(JSON.stringify({ ...result, medianDumpSeconds: median(result.dumpSeconds), medianRawReadSeconds: median(result.rawReadSeconds) }));
  } finally {
    rmSync(directory, { recursive: true, force: true });
    await server?.stop();
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
