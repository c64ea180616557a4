/**
 * What /health and /metrics read, live: the ledger's answers (through a Temporal client), whether
 * Temporal answers, each repository's storage (reachable, bytes stored) and the databases this
 * worker dumps. Each probe has a short deadline and a cache, so a scrape every 15 s neither
 * lists a bucket nor opens a database connection each time, and a slow probe answers with its
 * last value while it refreshes. Secret values never leave this module: results are statuses,
 * numbers and messages scrubbed of credentials.
 */
import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { pg } from '../sources/postgres-driver';
import { optionalSecret } from '../activities/secrets';
import type { Config, Repository } from '../config/schema';
import type { DatabaseSource } from '../config/scratch';
import { scrubSecrets, type Logger } from '../logging/logger';
import { LEDGER, ledgerWorkflowId, type LastSuccessfulBackup, type LastVerified } from '../shared/ledger';
import type { OperationsView } from '../shared/operations';
import { withClient as withMongoClient } from '../sources/mongodb-connection';
import { pgClientConfig, toSourceError as toPostgresError } from '../sources/postgres-connection';
import { createS3Client } from '../storage/s3';
import { LOCAL_CLASS, measureRepository, totalOf, type ByClass } from '../storage/usage';
import type { ServiceChecks, ServiceStatus } from './health';
import type { MonitoringSnapshot, UsageFigures } from './metrics';

/** The snapshot without what the server adds itself (the config and the time). */
export type MonitoringReading = Omit<MonitoringSnapshot, 'config' | 'now'>;

export interface ProbeTimings {
  /** Temporal's system info and each ledger query. */
  temporalTimeoutMs: number;
  /** The ledger's answers are reused this long (a /health and a /metrics a moment apart ask once). */
  ledgerTtlMs: number;
  databaseTimeoutMs: number;
  databaseTtlMs: number;
  /** A repository's listing or folder walk; reused this long after a success. */
  storageTtlMs: number;
  /** ...and this long after a failure, so a recovered storage shows soon. */
  storageFailureTtlMs: number;
  /** How long a request waits for a refresh before answering with the last value. */
  refreshWaitMs: number;
  /** The usage and cost of an s3 repository (versions, uploads: more listings): measured in the background at most this often. */
  usageTtlMs: number;
  /** ...and again this soon after a failure. */
  usageFailureTtlMs: number;
}

export const DEFAULT_PROBE_TIMINGS: ProbeTimings = {
  temporalTimeoutMs: 3_000,
  ledgerTtlMs: 5_000,
  databaseTimeoutMs: 3_000,
  databaseTtlMs: 60_000,
  storageTtlMs: 5 * 60_000,
  storageFailureTtlMs: 60_000,
  refreshWaitMs: 4_000,
  usageTtlMs: 6 * 3_600_000,
  usageFailureTtlMs: 15 * 60_000,
};

export interface ProbeOptions {
  config: Config;
  /** This worker's host: only databases of sources dumped here (their `host`, or none) are pinged. */
  host: string;
  /** Where the secrets' variables are read (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** The worker's lazily connected client; a rejection means Temporal is unreachable. */
  client: () => Promise<Client>;
  logger: Logger;
  timings?: Partial<ProbeTimings>;
}

export interface Probes {
  read(): Promise<MonitoringReading>;
}

export interface LedgerAnswers {
  last: LastSuccessfulBackup | null;
  verified: LastVerified | null;
  operations: OperationsView | null;
}

export interface RepositoryProbe {
  status: 'ok' | 'critical';
  storedBytes?: number;
  error?: string;
}

function messageOf(error: unknown): string {
  return scrubSecrets(error instanceof Error ? error.message : String(error));
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A value refreshed in the background: fresh within its ttl; past it, a request starts one
 * refresh (never two at once) and waits for it at most `waitMs`, else gets the last value.
 */
export function refreshing<T>(load: () => Promise<{ value: T; ttlMs: number }>): (waitMs: number) => Promise<T | undefined> {
  let current: { value: T; expires: number } | undefined;
  let pending: Promise<void> | undefined;
  return async (waitMs) => {
    if (current && current.expires > Date.now()) return current.value;
    pending ??= load().then(({ value, ttlMs }) => {
      current = { value, expires: Date.now() + ttlMs };
    }).finally(() => {
      pending = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([pending.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, waitMs)))]).finally(() => clearTimeout(timer));
    return current?.value;
  };
}

const isNotThere = (error: unknown): boolean => error instanceof Error && (error.name === 'WorkflowNotFoundError' || error.name === 'QueryNotRegisteredError');

/** The ledger's three answers; null for each the ledger cannot give (not started yet, an older ledger without the query, Temporal down). */
export async function queryLedger(client: Client, deployment: string, timeoutMs: number, logger?: Logger): Promise<LedgerAnswers> {
  const handle = client.workflow.getHandle(ledgerWorkflowId(deployment));
  const ask = async <T>(query: string): Promise<T | null> => {
    try {
      return await client.connection.withDeadline(Date.now() + timeoutMs, () => handle.query<T>(query));
    } catch (error) {
      if (!isNotThere(error)) logger?.debug({ query, error: messageOf(error), cause: messageOf((error as Error).cause ?? '') }, `ledger query ${query} failed`);
      return null;
    }
  };
  // One after the other: concurrent queries of one run make a worker without a workflow cache
  // replay it once per query, and they queue behind each other past any deadline.
  const last = await ask<LastSuccessfulBackup>(LEDGER.lastSuccessfulBackupQuery);
  const verified = await ask<LastVerified>(LEDGER.lastVerifiedQuery);
  const operations = await ask<OperationsView>(LEDGER.operationsQuery);
  return { last, verified, operations };
}

/**
 * Whether Temporal answers this worker about its namespace (DescribeNamespace: GetSystemInfo
 * answers any caller, even one whose API key the server's authorizer refuses for everything else).
 */
export async function probeTemporal(client: () => Promise<Client>, timeoutMs: number): Promise<'ok' | 'critical'> {
  try {
    const connected = await withTimeout(client(), timeoutMs, 'Temporal');
    await connected.connection.withDeadline(Date.now() + timeoutMs, () => connected.workflowService.describeNamespace({ namespace: connected.options.namespace }));
    return 'ok';
  } catch {
    return 'critical';
  }
}

/** What restic writes into a repository: anything else under a shared prefix (an audit trail, other data) is not counted. */
const RESTIC_LAYOUT = /^(config$|keys\/|data\/|index\/|snapshots\/|locks\/)/;

async function s3StoredBytes(repository: Extract<Repository, { type: 's3' }>, env: NodeJS.ProcessEnv): Promise<{ bytes: number; classes: ByClass }> {
  const client = createS3Client(repository, env);
  const prefix = repository.prefix ? `${repository.prefix}/` : '';
  let bytes = 0;
  // The listing says each object's storage class: per class, for backupctl_repository_stored_bytes and _objects.
  const classes: ByClass = {};
  let hasConfig = false;
  try {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: repository.bucket, Prefix: prefix || undefined, ContinuationToken: token }));
      for (const object of page.Contents ?? []) {
        const key = (object.Key ?? '').slice(prefix.length);
        if (!RESTIC_LAYOUT.test(key)) continue;
        if (key === 'config') hasConfig = true;
        bytes += object.Size ?? 0;
        const entry = (classes[object.StorageClass || 'STANDARD'] ??= { objects: 0, bytes: 0 });
        entry.objects += 1;
        entry.bytes += object.Size ?? 0;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } finally {
    client.destroy();
  }
  if (!hasConfig) throw new Error(`no restic repository at s3://${repository.bucket}/${prefix} (no config object): backupctl init creates it`);
  return { bytes, classes };
}

async function folderBytes(path: string, files = { count: 0 }): Promise<number> {
  let bytes = 0;
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) bytes += await folderBytes(child, files);
    else if (entry.isFile()) {
      files.count += 1;
      bytes += (await lstat(child)).size;
    }
  }
  return bytes;
}

async function localStoredBytes(path: string): Promise<{ bytes: number; classes: ByClass }> {
  try {
    await stat(join(path, 'config'));
  } catch {
    throw new Error(`no restic repository at ${path} (no config file): backupctl init creates it`);
  }
  const files = { count: 0 };
  const bytes = await folderBytes(path, files);
  return { bytes, classes: { [LOCAL_CLASS]: { objects: files.count, bytes } } };
}

/** probeRepository's answer with the bytes and objects per storage class of the same listing. */
async function measureStorage(repository: Repository, env: NodeJS.ProcessEnv): Promise<RepositoryProbe & { classes?: ByClass }> {
  try {
    const { bytes, classes } = repository.type === 's3' ? await s3StoredBytes(repository, env) : await localStoredBytes(repository.path);
    return { status: 'ok', storedBytes: bytes, classes };
  } catch (error) {
    return { status: 'critical', error: messageOf(error) };
  }
}

/** Whether the repository's storage answers with a restic repository in it, and the bytes it holds. */
export async function probeRepository(repository: Repository, env: NodeJS.ProcessEnv = process.env): Promise<RepositoryProbe> {
  const { classes: _classes, ...probe } = await measureStorage(repository, env);
  return probe;
}


/** A ping (MongoDB) or `select 1` (PostgreSQL) within the timeout; its error, scrubbed, when it fails. */
export async function probeDatabase(source: DatabaseSource, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ status: 'ok' | 'critical'; error?: string }> {
  const variable = source.type === 'mongodb' ? source.uriEnv : source.urlEnv;
  const connection = optionalSecret(env, variable);
  if (!connection) return { status: 'critical', error: `${variable} is not set on this worker` };
  try {
    if (source.type === 'mongodb') {
      // withClient connects and pings admin before handing the client over.
      await withTimeout(withMongoClient({ uri: connection, serverSelectionTimeoutMs: timeoutMs }, async () => undefined), timeoutMs + 1_000, 'MongoDB');
    } else {
      const client = new pg.Client({ ...pgClientConfig(connection), connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, keepAlive: false });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('select 1');
      } catch (error) {
        throw toPostgresError(error, connection);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    return { status: 'ok' };
  } catch (error) {
    return { status: 'critical', error: messageOf(error) };
  }
}

export function createProbes(options: ProbeOptions): Probes {
  const { config, host, client, logger } = options;
  const env = options.env ?? process.env;
  const timings = { ...DEFAULT_PROBE_TIMINGS, ...options.timings };
  const deployment = config.deployment;

  // Said once per change, not once per scrape.
  const seen = new Map<string, string>();
  const note = (what: string, status: string, error?: string) => {
    if (seen.get(what) === status) return;
    const first = !seen.has(what);
    seen.set(what, status);
    if (status === 'critical') logger.warn({ probe: what, error }, `monitoring: ${what} is unreachable${error ? `: ${error}` : ''}`);
    else if (!first) logger.info({ probe: what }, `monitoring: ${what} is ${status} again`);
  };

  const ledger = refreshing(async () => {
    try {
      return { value: await queryLedger(await client(), deployment, timings.temporalTimeoutMs, logger), ttlMs: timings.ledgerTtlMs };
    } catch {
      return { value: { last: null, verified: null, operations: null } as LedgerAnswers, ttlMs: 0 };
    }
  });

  const repositories = new Map(Object.entries(config.repositories).map(([name, repository]) => {
    let lastBytes: number | undefined;
    let lastClasses: ByClass | undefined;
    return [name, refreshing(async () => {
      const { classes, ...probe } = await measureStorage(repository, env);
      note(`repository ${name}`, probe.status, probe.error);
      // A storage that does not answer still holds what it held: keep the last figure.
      if (probe.storedBytes !== undefined) lastBytes = probe.storedBytes;
      if (classes !== undefined) lastClasses = classes;
      return { value: { ...probe, storedBytes: lastBytes, classes: lastClasses }, ttlMs: probe.status === 'ok' ? timings.storageTtlMs : timings.storageFailureTtlMs };
    })] as const;
  }));

  // Usage and cost (noncurrent versions, open uploads: listings of their own) in the background,
  // at most every usageTtlMs: a scrape never waits for it and gets the last figures.
  const usage = new Map(Object.entries(config.repositories).filter(([, repository]) => repository.type === 's3').map(([name, repository]) => {
    let last: UsageFigures | undefined;
    return [name, refreshing(async () => {
      try {
        const measured = await measureRepository(config, name, repository, env);
        last = {
          measuredAt: measured.measuredAt, noncurrentBytes: totalOf(measured.noncurrent).bytes, uploadBytes: measured.uploads.bytes, monthlyCostUsd: measured.cost?.usdPerMonth,
        };
        return { value: last, ttlMs: timings.usageTtlMs };
      } catch (error) {
        logger.debug({ repository: name, error: messageOf(error) }, `monitoring: usage of repository ${name} not measured`);
        return { value: last, ttlMs: timings.usageFailureTtlMs };
      }
    })] as const;
  }));

  const databases = new Map<string, ((waitMs: number) => Promise<ServiceStatus | undefined>) | undefined>();
  for (const [name, source] of Object.entries(config.sources)) {
    if (source.type !== 'mongodb' && source.type !== 'postgres') continue;
    // Another host dumps it: whether it answers there is that worker's to say.
    if ((source.host ?? host) !== host) {
      databases.set(name, undefined);
      continue;
    }
    databases.set(name, refreshing(async () => {
      const probe = await probeDatabase(source, env, timings.databaseTimeoutMs);
      note(`database of source ${name}`, probe.status, probe.error);
      return { value: probe.status, ttlMs: timings.databaseTtlMs };
    }));
  }

  return {
    async read() {
      const wait = timings.refreshWaitMs;
      const [temporal, answers, repositoryResults, databaseResults, usageResults] = await Promise.all([
        probeTemporal(client, timings.temporalTimeoutMs),
        ledger(timings.temporalTimeoutMs * 2),
        Promise.all([...repositories].map(async ([name, probe]) => [name, await probe(wait)] as const)),
        Promise.all([...databases].map(async ([name, probe]) => [name, probe ? ((await probe(wait)) ?? 'unknown') : 'unknown'] as const)),
        Promise.all([...usage].map(async ([name, probe]) => [name, await probe(0)] as const)),
      ]);
      note('Temporal', temporal);
      const services: ServiceChecks = { temporal, repositories: {}, databases: Object.fromEntries(databaseResults) };
      const storage: MonitoringReading['storage'] = {};
      const storageClasses: NonNullable<MonitoringReading['storageClasses']> = {};
      for (const [name, result] of repositoryResults) {
        services.repositories[name] = result?.status ?? 'unknown';
        if (result?.storedBytes !== undefined) storage[name] = { storedBytes: result.storedBytes };
        if (result?.classes !== undefined) storageClasses[name] = result.classes;
      }
      const usageFigures: NonNullable<MonitoringReading['usage']> = {};
      for (const [name, figures] of usageResults) if (figures) usageFigures[name] = figures;
      const { last, verified, operations } = answers ?? { last: null, verified: null, operations: null };
      return { last, verified, operations, services, storage, storageClasses, usage: usageFigures };
    },
  };
}
