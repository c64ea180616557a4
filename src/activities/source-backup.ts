/**
 * Backups of the sources that are not plain folders: a MongoDB dump staged on disk, PostgreSQL
 * streamed from pg_dump into restic (one snapshot per database, then one for the manifest and the
 * roles), a git bundle staged on disk. Each writes a manifest with the source's fingerprint into
 * its snapshot, and removes its staging, also after a failure.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Context } from '@temporalio/activity';
import type { GitSource, MongoSource, PostgresSource } from '../config/schema';
import { formatBytes } from '../config/units';
import type { Logger } from '../logging/logger';
import { backup, type BackupResult, type ResticContext } from '../restic/commands';
import { PART_TAG_KEY, type BackupHeartbeat, type SourceBackupInput } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import type { PostgresDatabaseFingerprint, SourceFingerprint } from '../shared/fingerprints';
import { bundleRepository, mirrorPush } from '../sources/git';
import { dumpMongo, estimateMongoSize } from '../sources/mongodb';
import { listDatabases, openConsistentRead, pgDumpallGlobalsArgs, pgToolEnv } from '../sources/postgres';
import { backupDatabaseWithRestic } from '../sources/postgres-restic';
import { stagingSpace } from './disk';
import { failure } from './failures';
import { requireSecret } from './secrets';
import { auditHeadTag, MANIFEST_FILE, type ManifestAuditHead } from './manifest';

const run = promisify(execFile);

/** Where a source's dump is staged: the same folder every run, so restic finds its parent snapshot. */
export function stagedDirectory(input: Pick<SourceBackupInput, 'stagingDirectory' | 'deployment' | 'sourceName'>): string {
  return join(input.stagingDirectory, 'dumps', input.deployment, input.sourceName);
}

/** The manifest stored in a database or git snapshot; `restore` and verification read it back. */
export interface SourceManifest {
  manifestVersion: 1;
  service: 'backupctl';
  deployment: string;
  policy: string;
  source: string;
  sourceType: 'mongodb' | 'postgres' | 'git';
  host: string;
  scheduledTime: string;
  createdAt: string;
  fingerprint: SourceFingerprint;
  /** PostgreSQL: each database's dump, in its own snapshot carrying this run's tag and `part=database:<name>`. */
  databases?: { database: string; filename: string; part: string }[];
  /** PostgreSQL: roles and tablespaces (pg_dumpall --globals-only), beside this manifest; null when not dumped. */
  globals?: { file: string; rolePasswords: boolean; note?: string } | null;
  /** git: the bundle's file name beside this manifest. */
  bundle?: string;
  /** MongoDB: the mongodump-layout folder beside this manifest. */
  dump?: string;
  recovery: string;
  /** The audit trail's head when the backup ran (src/activities/manifest.ts). */
  auditHead?: ManifestAuditHead;
}

export interface SourceBackupContext {
  input: SourceBackupInput;
  restic: ResticContext;
  beat: BackupHeartbeat & Record<string, unknown>;
  activity: Context;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** restic's --time for every snapshot of this run. */
  snapshotTime: string;
  /** The audit trail's head from the ledger, into the manifest and the tags; null when the ledger did not answer. */
  auditHead?: ManifestAuditHead | null;
}

export interface SourceBackupResult {
  snapshotId: string;
  files: number;
  bytes: number;
  dataAdded: number;
  fingerprint: SourceFingerprint;
  parts?: { part: string; snapshotId: string }[];
}

function tagsOf(context: SourceBackupContext, part?: string): string[] {
  const { input } = context;
  const tags = [`deployment=${input.deployment}`, `source=${input.sourceName}`, `policy=${input.policy}`, `scheduled=${input.scheduledTime}`, `host=${input.host}`, input.runTag];
  if (context.auditHead) tags.push(auditHeadTag(context.auditHead));
  return part ? [...tags, `${PART_TAG_KEY}=${part}`] : tags;
}

async function writeManifest(directory: string, manifest: SourceManifest): Promise<void> {
  await writeFile(join(directory, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
}

function manifestBase(context: SourceBackupContext, sourceType: SourceManifest['sourceType'], fingerprint: SourceFingerprint, recovery: string): SourceManifest {
  const { input } = context;
  return {
    manifestVersion: 1, service: 'backupctl', deployment: input.deployment, policy: input.policy, source: input.sourceName, sourceType,
    host: input.host, scheduledTime: input.scheduledTime, createdAt: new Date().toISOString(), fingerprint, recovery,
    ...(context.auditHead ? { auditHead: context.auditHead } : {}),
  };
}

/** restic backup of a staged folder, progress into the heartbeat. */
async function backupFolder(context: SourceBackupContext, directory: string, part?: string): Promise<BackupResult> {
  const { restic, beat, activity } = context;
  return backup(restic, {
    paths: [directory], cwd: directory, host: context.input.host, tags: tagsOf(context, part), time: context.snapshotTime,
    tuning: { packSizeMiB: context.input.repository.packSizeMiB },
    onStart: (pid) => {
      beat.pid = pid;
      activity.heartbeat(beat);
    },
    onStatus: (status) => {
      Object.assign(beat, { percentDone: status.percent_done, bytesDone: status.bytes_done, totalBytes: status.total_bytes });
      activity.heartbeat(beat);
    },
  });
}

/** Refuses a dump that would not fit, before anything is written. */
function checkStagingSpace(input: SourceBackupInput, neededBytes: number, what: string): void {
  const { free, needed } = stagingSpace(input.stagingDirectory, input.minFreeSpace ?? '0', neededBytes);
  if (free < needed) {
    throw failure(FailureType.InsufficientDiskSpace,
      `${what} needs about ${formatBytes(neededBytes)} of staging plus ${input.minFreeSpace ?? '0'} kept free, but only ${formatBytes(free)} is free at ${input.stagingDirectory}: free space or point staging.directory at a larger disk (nothing was written)`);
  }
}

/** Runs `step` in a fresh staging folder and removes the folder afterwards, whatever happens. */
async function inStaging<T>(input: SourceBackupInput, step: (directory: string) => Promise<T>): Promise<T> {
  const directory = stagedDirectory(input);
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true, mode: 0o700 });
  try {
    return await step(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

function result(backupResult: BackupResult, fingerprint: SourceFingerprint, parts?: SourceBackupResult['parts']): SourceBackupResult {
  const { summary } = backupResult;
  return { snapshotId: summary.snapshot_id, files: summary.total_files_processed, bytes: summary.total_bytes_processed, dataAdded: summary.data_added, fingerprint, ...(parts ? { parts } : {}) };
}

async function backupMongo(context: SourceBackupContext, source: MongoSource): Promise<SourceBackupResult> {
  const { input, beat, activity } = context;
  const uri = requireSecret(context.env, source.uriEnv, 'MongoDB connection string');
  const target = { uri, databases: source.databases, collections: source.collections };
  const estimate = await estimateMongoSize(target);
  checkStagingSpace(input, estimate.totalBytes, `the dump of source ${input.sourceName} (${estimate.databases.map((d) => d.name).join(', ')})`);
  return inStaging(input, async (directory) => {
    beat.stage = 'dump';
    const fingerprint = await dumpMongo({
      ...target, directory: join(directory, 'dump'), signal: activity.cancellationSignal,
      onProgress: (p) => {
        Object.assign(beat, { collection: `${p.database}.${p.collection}`, documents: p.documents, bytesDumped: p.bytes });
      },
    });
    await writeManifest(directory, {
      ...manifestBase(context, 'mongodb', fingerprint, `backupctl restore --source ${input.sourceName} --target <database>; or by hand: mongorestore --dir dump`),
      dump: 'dump',
    });
    beat.stage = 'store';
    return result(await backupFolder(context, directory), fingerprint);
  });
}

async function backupPostgres(context: SourceBackupContext, source: PostgresSource): Promise<SourceBackupResult> {
  const { input, restic, beat, activity, logger } = context;
  const url = requireSecret(context.env, source.urlEnv, 'PostgreSQL connection URL');
  const toolEnv = pgToolEnv(url, { PATH: context.env.PATH, HOME: context.env.HOME });
  const databases = await listDatabases(url, source.databases);
  const fingerprints: PostgresDatabaseFingerprint[] = [];
  const parts: { part: string; snapshotId: string }[] = [];
  const entries: NonNullable<SourceManifest['databases']> = [];
  for (const database of databases) {
    beat.stage = `dump ${database}`;
    // pg_dump reads the exported snapshot of a transaction kept open meanwhile: the fingerprint
    // and the dump see exactly the same rows.
    const read = await openConsistentRead(url, database);
    try {
      const part = `database:${database}`;
      const [fingerprint, saved] = await Promise.all([
        read.fingerprint(),
        backupDatabaseWithRestic({
          restic: { bin: restic.bin, repository: restic.repository, env: restic.env }, url, database, snapshot: read.snapshotId,
          host: input.host, tags: tagsOf(context, part), time: context.snapshotTime, signal: restic.signal,
          onStart: (pid) => {
            beat.pid = pid;
            activity.heartbeat(beat);
          },
          onStatus: (status) => {
            Object.assign(beat, { bytesDone: status.bytes_done });
            activity.heartbeat(beat);
          },
        }),
      ]);
      const filename = saved.filename;
      fingerprints.push(fingerprint);
      parts.push({ part, snapshotId: saved.snapshotId });
      entries.push({ database, filename, part });
      logger.info({ source: input.sourceName, database, snapshot: saved.snapshotId.slice(0, 8), bytes: saved.bytes }, 'database dumped into the repository');
    } finally {
      await read.close();
    }
  }
  const fingerprint: SourceFingerprint = { kind: 'postgres', databases: fingerprints };
  return inStaging(input, async (directory) => {
    let globals: SourceManifest['globals'] = null;
    if (source.globals) {
      beat.stage = 'roles';
      globals = await dumpGlobals(directory, toolEnv);
    }
    await writeManifest(directory, {
      ...manifestBase(context, 'postgres', fingerprint, `backupctl restore --source ${input.sourceName} --database <name> --target <database>; or by hand: restic dump <snapshot> /<database>.dump | pg_restore -d <database>`),
      databases: entries, globals,
    });
    beat.stage = 'store';
    return result(await backupFolder(context, directory, 'manifest'), fingerprint, parts);
  });
}

/** Roles and tablespaces; without superuser rights, roles without their passwords (said in the manifest). */
async function dumpGlobals(directory: string, toolEnv: NodeJS.ProcessEnv): Promise<NonNullable<SourceManifest['globals']>> {
  const [bin, ...args] = pgDumpallGlobalsArgs();
  const file = 'globals.sql';
  try {
    const { stdout } = await run(bin!, args, { env: toolEnv, maxBuffer: 256 * 1024 * 1024 });
    await writeFile(join(directory, file), stdout, { mode: 0o600 });
    return { file, rolePasswords: true };
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? (error as Error).message);
    if (!/permission denied/i.test(stderr)) throw failure(FailureType.ResticFailed, `pg_dumpall --globals-only failed: ${stderr.trim().split('\n').slice(-2).join(' | ')}`);
    const { stdout } = await run(bin!, [...args, '--no-role-passwords'], { env: toolEnv, maxBuffer: 256 * 1024 * 1024 });
    await writeFile(join(directory, file), stdout, { mode: 0o600 });
    return { file, rolePasswords: false, note: 'the connection\'s user is not a superuser: roles were dumped without their passwords' };
  }
}

async function backupGit(context: SourceBackupContext, source: GitSource): Promise<SourceBackupResult> {
  const { input, beat, activity } = context;
  const stored = await inStaging(input, async (directory) => {
    beat.stage = 'bundle';
    const bundle = 'repository.bundle';
    const fingerprint = await bundleRepository({ repoPath: source.path, bundleFile: join(directory, bundle), signal: activity.cancellationSignal });
    await writeManifest(directory, {
      ...manifestBase(context, 'git', fingerprint, `backupctl restore --source ${input.sourceName} --target <folder>; or by hand: git clone --mirror ${bundle} <folder>`),
      bundle,
    });
    beat.stage = 'store';
    return result(await backupFolder(context, directory), fingerprint);
  });
  await pushMirror(context, source);
  return stored;
}

/** The second remote, after the snapshot exists: a mirror that is down never loses the backup. */
export async function pushMirror(context: Pick<SourceBackupContext, 'env' | 'beat' | 'activity'>, source: GitSource): Promise<void> {
  if (!source.mirrorUrlEnv) return;
  const url = requireSecret(context.env, source.mirrorUrlEnv, 'git mirror URL');
  context.beat.stage = 'mirror';
  await mirrorPush({ repoPath: source.path, remoteUrl: url, signal: context.activity.cancellationSignal });
}

/** One source that is not a folder of files, into one repository. */
export async function backupOtherSource(context: SourceBackupContext): Promise<SourceBackupResult> {
  const { source } = context.input;
  try {
    switch (source.type) {
      case 'mongodb':
        return await backupMongo(context, source);
      case 'postgres':
        return await backupPostgres(context, source);
      case 'git':
        return await backupGit(context, source);
      default:
        throw failure(FailureType.ConfigInvalid, `source ${context.input.sourceName}: ${source.type} sources are backed up as files`);
    }
  } catch (error) {
    // A database that refuses or does not answer: name the source and the variable to fix.
    const type = (error as { failureType?: string; type?: string }).failureType ?? (error as { type?: string }).type;
    const variable = source.type === 'mongodb' ? source.uriEnv : source.type === 'postgres' ? source.urlEnv : undefined;
    if (variable && (type === FailureType.DatabaseAuthFailed || type === FailureType.DatabaseUnreachable)) {
      throw failure(type, `source ${context.input.sourceName}: ${(error as Error).message} (the connection comes from ${variable} on ${hostname()})`);
    }
    throw error;
  }
}
