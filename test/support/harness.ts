/**
 * What integration tests share: the real servers started by scripts/run-tests.ts (read from
 * TEST_* variables), a deployment of their own (random name, so files can run in parallel), an
 * in-process worker, a Temporal client, buckets and restic repositories.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { readEnvironment, type WorkerEnvironment } from '../../src/config/environment';
import { parseConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { createLogger, type Logger } from '../../src/logging/logger';
import { connectClient } from '../../src/temporal/client';
import { startWorker, type RunningWorker } from '../../src/worker';

export interface TestServers {
  temporalAddress: string;
  namespace: string;
  s3Endpoint: string;
  s3AccessKeyId: string;
  s3SecretAccessKey: string;
  mongodbUri: string;
  postgresUrl: string;
  resticBin: string;
  temporalBin: string;
  /** Mailpit's SMTP (smtp://127.0.0.1:port, any credentials); unset outside scripts/run-tests.ts. */
  smtpUrl?: string;
  /** Mailpit's HTTP API (http://127.0.0.1:port). */
  mailpitApi?: string;
}

export function testServers(): TestServers {
  const need = (name: string): string => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set: run the integration tests through \`npm test\` (scripts/run-tests.ts starts the servers)`);
    return value;
  };
  return {
    temporalAddress: need('TEST_TEMPORAL_ADDRESS'),
    namespace: process.env.TEST_TEMPORAL_NAMESPACE ?? 'default',
    s3Endpoint: need('TEST_S3_ENDPOINT'),
    s3AccessKeyId: need('TEST_S3_ACCESS_KEY_ID'),
    s3SecretAccessKey: need('TEST_S3_SECRET_ACCESS_KEY'),
    mongodbUri: need('TEST_MONGODB_URI'),
    postgresUrl: need('TEST_POSTGRES_URL'),
    resticBin: need('RESTIC_BIN'),
    temporalBin: need('TEMPORAL_BIN'),
    smtpUrl: process.env.TEST_SMTP_URL,
    mailpitApi: process.env.TEST_MAILPIT_API,
  };
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

export function s3Client(servers = testServers(), secretAccessKey = servers.s3SecretAccessKey): S3Client {
  return new S3Client({ endpoint: servers.s3Endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: servers.s3AccessKeyId, secretAccessKey } });
}

export async function createBucket(name: string, servers = testServers()): Promise<void> {
  const client = s3Client(servers);
  try {
    await client.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    client.destroy();
  }
}

/** Every object key and ETag under a bucket: "nothing in the repository changed" compares these. */
export async function bucketListing(bucket: string, servers = testServers()): Promise<string[]> {
  const client = s3Client(servers);
  const keys: string[] = [];
  try {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const object of page.Contents ?? []) keys.push(`${object.Key} ${object.ETag} ${object.Size}`);
      token = page.NextContinuationToken;
    } while (token);
  } finally {
    client.destroy();
  }
  return keys.sort();
}

/**
 * Environment for a test deployment: each secret gets its own random variable name, so tests in
 * one process cannot see each other's values.
 */
export function testSecrets(prefix: string) {
  const id = randomBytes(3).toString('hex').toUpperCase();
  const servers = testServers();
  const names = {
    password: `T${id}_${prefix}_RESTIC_PASSWORD`,
    accessKeyId: `T${id}_${prefix}_S3_KEY_ID`,
    secretAccessKey: `T${id}_${prefix}_S3_SECRET`,
    mongodbUri: `T${id}_${prefix}_MONGODB_URI`,
    postgresUrl: `T${id}_${prefix}_DATABASE_URL`,
  };
  const values: Record<string, string> = {
    [names.password]: `pw-${randomUUID()}`,
    [names.accessKeyId]: servers.s3AccessKeyId,
    [names.secretAccessKey]: servers.s3SecretAccessKey,
    [names.mongodbUri]: servers.mongodbUri,
    [names.postgresUrl]: servers.postgresUrl,
  };
  return { names, values };
}

/**
 * The smallest deployment: the files under `<root>/app/<path>` (default `applications`) as source
 * `artifacts`, backed up daily by policy `artifacts` into the local repository `<root>/repository`,
 * staging in `<root>/staging`. `host` puts the source on another host's task queue.
 */
export function oneFolderConfig(options: { deployment: string; root: string; passwordEnv: string; path?: string; host?: string }): string {
  const { deployment, root, passwordEnv, path = 'applications', host } = options;
  return `deployment: ${deployment}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [${path}]${host ? `, host: ${host}` : ''} }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${passwordEnv} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`;
}

export interface TestDeployment {
  config: Config;
  environment: WorkerEnvironment;
  env: NodeJS.ProcessEnv;
  client: Client;
  worker: RunningWorker;
  /** Stops the worker, closes the client, removes temp folders. */
  close(): Promise<void>;
}

/** Parses a YAML config against the given env (all checks on), then starts a worker and a client for it. */
export async function startDeployment(yaml: string, env: Record<string, string>, options: { worker?: boolean; cleanup?: string[]; logger?: Logger } = {}): Promise<TestDeployment> {
  const servers = testServers();
  Object.assign(process.env, env);
  const config = parseConfig(yaml, 'test-config.yaml', { env: process.env });
  // Tests restore into their own temporary folders: allowed unless a test's config says otherwise.
  config.restore.allowedRoots ??= [tmpdir()];
  // No workflow cache: every workflow task replays its history, so a non-deterministic change fails here.
  const environment: WorkerEnvironment = { ...readEnvironment({}), host: hostname(), resticBin: servers.resticBin, workflowCacheSize: 0 };
  environment.temporal = { ...environment.temporal, address: servers.temporalAddress, namespace: servers.namespace };
  const logger = options.logger ?? createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn', format: 'json' });
  const worker = options.worker === false ? undefined : await startWorker({ config, environment, logger, shutdownGraceTime: '2 seconds' });
  const client = await connectClient(environment);
  return {
    config, environment, env: process.env, client, worker: worker!,
    async close() {
      await worker?.shutdown();
      await client.connection.close();
      for (const dir of options.cleanup ?? []) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** True while a process with this pid exists (signal 0 only checks). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits for a condition with a deadline (no fixed sleeps in tests). */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The innermost failure of a chain (workflow → activity → application failure): its message, type and retryability. */
export function rootCause(error: unknown): { message: string; type?: string; nonRetryable?: boolean } {
  let current = error as (Error & { cause?: unknown; type?: string; nonRetryable?: boolean }) | undefined;
  while (current?.cause instanceof Error) current = current.cause as typeof current;
  return { message: current?.message ?? '', type: current?.type, nonRetryable: current?.nonRetryable };
}
