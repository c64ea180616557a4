/**
 * What a repository takes in its storage and what that costs a month: per storage class, the
 * current objects (ListObjectsV2, or ListObjectVersions when the bucket keeps versions), the
 * noncurrent versions and delete markers, the open multipart uploads and their parts; a local
 * repository by walking its folder. Only restic's layout under the prefix is counted (config,
 * keys/, data/, index/, snapshots/, locks/), as the monitoring probe does: an audit trail or other
 * data beside it is not the repository's. `estimateMonthlyCost` is pure: the tests feed it figures.
 */
import { mkdir, readFile, readdir, lstat, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  GetBucketVersioningCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand, ListObjectsV2Command, ListPartsCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { DEFAULT_PRICES, TABLE_CLASSES, defaultPricingTable, priceOf, type PriceId, type PricingTable } from '../config/prices';
import type { Config, Repository, S3Repository } from '../config/schema';
import { repositoryLocation, runRestic } from '../restic/restic';
import { createS3Client } from './s3';

export const GB = 2 ** 30;
/** The storage class of a local repository's files. */
export const LOCAL_CLASS = 'local';
/** Uploads whose parts are listed (one ListParts each); beyond, only their number is known. */
const MAX_UPLOADS_WITH_PARTS = 200;
const RESTIC_LAYOUT = /^(config$|keys\/|data\/|index\/|snapshots\/|locks\/)/;

export interface ClassFigures {
  objects: number;
  bytes: number;
}

export type ByClass = Record<string, ClassFigures>;

export interface RepositoryUsage {
  repository: string;
  type: 's3' | 'local';
  location: string;
  /** When the listing finished (ISO). */
  measuredAt: string;
  /** Current objects (or files) per storage class. */
  current: ByClass;
  /** Noncurrent versions per storage class: billed like current objects until they expire. */
  noncurrent: ByClass;
  deleteMarkers: number;
  /** The bucket's versioning: `unknown` when the storage does not say (or does not support it). */
  versioning: 'enabled' | 'suspended' | 'off' | 'unknown' | 'n/a';
  /** Open multipart uploads: their parts are stored and billed until completed or aborted. */
  uploads: { count: number; parts: number; bytes: number; byClass: ByClass; partsListed: boolean };
  /** restic's deduplicated size (`stats --mode raw-data`), with --dedup. */
  dedup?: { rawDataBytes: number; uncompressedBytes?: number; blobs?: number; snapshots?: number };
  cost?: CostEstimate;
}

export interface CostLine {
  storageClass: string;
  priceId: PriceId;
  label: string;
  perGbMonth: number;
  overridden: boolean;
  currentBytes: number;
  noncurrentBytes: number;
  uploadBytes: number;
  usdPerMonth: number;
}

export interface CostEstimate {
  table: PricingTable;
  usdPerMonth: number;
  lines: CostLine[];
  notes: string[];
  /** The oldest date of the default prices used (the ones not overridden). */
  pricesAsOf?: string;
}

export interface CostInput {
  current: ByClass;
  noncurrent?: ByClass;
  uploads?: ByClass;
}

/**
 * The monthly storage cost: every byte stored (current objects, noncurrent versions, parts of
 * open uploads) at its class's price in the table, USD per GB-month (2^30 bytes).
 */
export function estimateMonthlyCost(input: CostInput, table: PricingTable, overrides: Partial<Record<PriceId, number>> = {}): CostEstimate {
  const { classes, fallback } = TABLE_CLASSES[table];
  const names = [...new Set([...Object.keys(input.current), ...Object.keys(input.noncurrent ?? {}), ...Object.keys(input.uploads ?? {})])].sort();
  const notes: string[] = [];
  const dates = new Set<string>();
  const lines = names.map((storageClass): CostLine => {
    const known = classes[storageClass];
    const priceId = known ?? fallback;
    if (!known && table !== 'b2') notes.push(`storage class ${storageClass} is not in the ${table} table: priced as ${DEFAULT_PRICES[fallback].label}`);
    const { perGbMonth, overridden, price } = priceOf(priceId, overrides);
    if (!overridden) dates.add(price.asOf);
    const currentBytes = input.current[storageClass]?.bytes ?? 0;
    const noncurrentBytes = input.noncurrent?.[storageClass]?.bytes ?? 0;
    const uploadBytes = input.uploads?.[storageClass]?.bytes ?? 0;
    const usdPerMonth = ((currentBytes + noncurrentBytes + uploadBytes) / GB) * perGbMonth;
    return { storageClass, priceId, label: price.label, perGbMonth, overridden, currentBytes, noncurrentBytes, uploadBytes, usdPerMonth };
  });
  return { table, usdPerMonth: lines.reduce((sum, line) => sum + line.usdPerMonth, 0), lines, notes, pricesAsOf: [...dates].sort()[0] };
}

/** The table a repository is billed by: its `pricing`, else by its endpoint's host; none for a local one. */
export function pricingTableOf(repository: Repository): { table?: PricingTable; note?: string } {
  if (repository.type !== 's3') return {};
  if (repository.pricing) return { table: repository.pricing };
  return defaultPricingTable(repository.endpoint);
}

/** The cost of a measured repository under the config's prices (none for a local repository). */
export function costOf(usage: Pick<RepositoryUsage, 'current' | 'noncurrent' | 'uploads'>, repository: Repository, config: Pick<Config, 'pricing'>): CostEstimate | undefined {
  const { table, note } = pricingTableOf(repository);
  if (!table) return undefined;
  const estimate = estimateMonthlyCost({ current: usage.current, noncurrent: usage.noncurrent, uploads: usage.uploads.byClass }, table, config.pricing ?? {});
  if (note) estimate.notes.unshift(note);
  return estimate;
}

const add = (figures: ByClass, storageClass: string | undefined, bytes: number): void => {
  const entry = (figures[storageClass || 'STANDARD'] ??= { objects: 0, bytes: 0 });
  entry.objects += 1;
  entry.bytes += bytes;
};

export const totalOf = (figures: ByClass): ClassFigures =>
  Object.values(figures).reduce((sum, f) => ({ objects: sum.objects + f.objects, bytes: sum.bytes + f.bytes }), { objects: 0, bytes: 0 });

async function versioningOf(client: S3Client, bucket: string): Promise<RepositoryUsage['versioning']> {
  try {
    const answer = await client.send(new GetBucketVersioningCommand({ Bucket: bucket }));
    return answer.Status === 'Enabled' ? 'enabled' : answer.Status === 'Suspended' ? 'suspended' : 'off';
  } catch {
    return 'unknown';
  }
}

/** An S3 repository's objects, versions and uploads, listed with its own credentials. */
export async function measureS3Repository(name: string, repository: S3Repository, env: NodeJS.ProcessEnv = process.env): Promise<RepositoryUsage> {
  const client = createS3Client(repository, env);
  const prefix = repository.prefix ? `${repository.prefix}/` : '';
  const inLayout = (key: string | undefined): boolean => RESTIC_LAYOUT.test((key ?? '').slice(prefix.length));
  const usage: RepositoryUsage = {
    repository: name, type: 's3', location: repositoryLocation(repository), measuredAt: '', current: {}, noncurrent: {}, deleteMarkers: 0,
    versioning: 'unknown', uploads: { count: 0, parts: 0, bytes: 0, byClass: {}, partsListed: true },
  };
  try {
    usage.versioning = await versioningOf(client, repository.bucket);
    if (usage.versioning === 'enabled' || usage.versioning === 'suspended') {
      // One listing gives current and noncurrent versions (with their storage class) and delete markers.
      let keyMarker: string | undefined;
      let versionIdMarker: string | undefined;
      do {
        const page = await client.send(new ListObjectVersionsCommand({ Bucket: repository.bucket, Prefix: prefix || undefined, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker }));
        for (const version of page.Versions ?? []) {
          if (!inLayout(version.Key)) continue;
          add(version.IsLatest ? usage.current : usage.noncurrent, version.StorageClass, version.Size ?? 0);
        }
        for (const marker of page.DeleteMarkers ?? []) if (inLayout(marker.Key)) usage.deleteMarkers += 1;
        keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        versionIdMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
      } while (keyMarker);
    } else {
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: repository.bucket, Prefix: prefix || undefined, ContinuationToken: token }));
        for (const object of page.Contents ?? []) if (inLayout(object.Key)) add(usage.current, object.StorageClass, object.Size ?? 0);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    }

    // The bucket's uploads, filtered here: MinIO answers a Prefix only when it is a whole object
    // name (an upload under restic/data/ is not listed for "restic/"), AWS either way.
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket: repository.bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
      for (const upload of page.Uploads ?? []) {
        if (!(upload.Key ?? '').startsWith(prefix) || !inLayout(upload.Key)) continue;
        usage.uploads.count += 1;
        const storageClass = upload.StorageClass || 'STANDARD';
        const entry = (usage.uploads.byClass[storageClass] ??= { objects: 0, bytes: 0 });
        entry.objects += 1;
        if (usage.uploads.count > MAX_UPLOADS_WITH_PARTS) {
          usage.uploads.partsListed = false;
          continue;
        }
        let partMarker: string | undefined;
        do {
          const parts = await client.send(new ListPartsCommand({ Bucket: repository.bucket, Key: upload.Key, UploadId: upload.UploadId, PartNumberMarker: partMarker }));
          for (const part of parts.Parts ?? []) {
            usage.uploads.parts += 1;
            usage.uploads.bytes += part.Size ?? 0;
            entry.bytes += part.Size ?? 0;
          }
          partMarker = parts.IsTruncated ? parts.NextPartNumberMarker : undefined;
        } while (partMarker);
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
  } finally {
    client.destroy();
  }
  usage.measuredAt = new Date().toISOString();
  return usage;
}

async function walk(path: string, figures: ClassFigures): Promise<void> {
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) await walk(child, figures);
    else if (entry.isFile()) {
      figures.objects += 1;
      figures.bytes += (await lstat(child)).size;
    }
  }
}

export async function measureLocalRepository(name: string, path: string): Promise<RepositoryUsage> {
  const figures: ClassFigures = { objects: 0, bytes: 0 };
  await walk(path, figures);
  return {
    repository: name, type: 'local', location: path, measuredAt: new Date().toISOString(), current: { [LOCAL_CLASS]: figures }, noncurrent: {}, deleteMarkers: 0,
    versioning: 'n/a', uploads: { count: 0, parts: 0, bytes: 0, byClass: {}, partsListed: true },
  };
}

/** restic's deduplicated size of the repository's data (`restic stats --mode raw-data --json`). */
export async function resticRawData(repository: Repository, resticBin: string, env: NodeJS.ProcessEnv = process.env): Promise<NonNullable<RepositoryUsage['dedup']>> {
  const { stdout } = await runRestic(['stats', '--mode', 'raw-data', '--json'], { bin: resticBin, repository, env });
  const stats = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { total_size?: number; total_uncompressed_size?: number; total_blob_count?: number; snapshots_count?: number };
  return { rawDataBytes: stats.total_size ?? 0, uncompressedBytes: stats.total_uncompressed_size, blobs: stats.total_blob_count, snapshots: stats.snapshots_count };
}

/** One repository measured, with its cost under the config's prices. */
export async function measureRepository(config: Pick<Config, 'pricing'>, name: string, repository: Repository, env: NodeJS.ProcessEnv = process.env): Promise<RepositoryUsage> {
  const usage = repository.type === 's3' ? await measureS3Repository(name, repository, env) : await measureLocalRepository(name, repository.path);
  usage.cost = costOf(usage, repository, config);
  return usage;
}

/** The figures `status` reads: written by `backupctl usage` beside the staging folder's dumps. */
export interface UsageCache {
  measuredAt: string;
  repositories: Record<string, { usdPerMonth?: number; bytes: number; noncurrentBytes: number; table?: PricingTable }>;
}

export const usageCachePath = (config: Pick<Config, 'staging'>): string => join(config.staging.directory, 'usage.json');

export async function writeUsageCache(config: Pick<Config, 'staging'>, usages: RepositoryUsage[]): Promise<string> {
  // A run over some repositories keeps the others' last figures.
  const cache: UsageCache = {
    measuredAt: new Date().toISOString(),
    repositories: { ...(await readUsageCache(config))?.repositories, ...Object.fromEntries(usages.map((u) => [u.repository, {
      usdPerMonth: u.cost?.usdPerMonth, bytes: totalOf(u.current).bytes, noncurrentBytes: totalOf(u.noncurrent).bytes, table: u.cost?.table,
    }])) },
  };
  const path = usageCachePath(config);
  await mkdir(config.staging.directory, { recursive: true, mode: 0o700 });
  await writeFile(`${path}.tmp`, `${JSON.stringify(cache, null, 2)}\n`, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
  return path;
}

export async function readUsageCache(config: Pick<Config, 'staging'>): Promise<UsageCache | undefined> {
  try {
    return JSON.parse(await readFile(usageCachePath(config), 'utf8')) as UsageCache;
  } catch {
    return undefined;
  }
}
