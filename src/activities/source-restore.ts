/**
 * Restore of databases, git repositories and buckets, each followed by the proof: the restored
 * data's fingerprint compared with the one the snapshot's manifest recorded at backup time. A
 * target that holds data is refused unless forced; nothing is written before that check. The one
 * exception is a database this very activity created in an attempt whose worker was killed: its
 * heartbeat recorded it (DatabaseRestoreRecord), and the retry drops and restores it again.
 */
import { mkdir, rm } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Context } from '@temporalio/activity';
import type { BucketSource, Repository } from '../config/schema';
import type { Logger } from '../logging/logger';
import { readSnapshotFile, restore, snapshots, tagValue, type ResticContext, type Snapshot } from '../restic/commands';
import { PARTIAL_TAG, PART_TAG_KEY, VERIFIED_TAG, type RepositorySource } from '../shared/backup-types';
import type { RestorePoint } from '../shared/recovery-types';
import { FailureType } from '../shared/failures';
import { compareFingerprints, type FingerprintComparison, type SourceFingerprint } from '../shared/fingerprints';
import type { RestoreResult } from '../shared/restore-types';
import { restoreBundle } from '../sources/git';
import { mongoDatabaseExists, restoreMongo } from '../sources/mongodb';
import { databaseExists, fingerprintDatabase } from '../sources/postgres';
import { restoreDatabaseFromRestic } from '../sources/postgres-restic';
import { restoreFromReplica } from '../sources/bucket';
import { stagingSpace } from './disk';
import { failure, typed } from './failures';
import { requireSecret } from './secrets';
import { withHeartbeat } from './heartbeat';
import { MANIFEST_FILE } from './manifest';
import type { SourceManifest } from './source-backup';

export interface RestoreSourceInput {
  deployment: string;
  sourceName: string;
  source: RepositorySource | BucketSource;
  /** The restic repository that holds the source (none for an s3-bucket: its copy is the replica). */
  repositoryName?: string;
  repository?: Repository;
  snapshot?: string;
  /** A database name, a folder (git) or a bucket name (s3-bucket). */
  target?: string;
  /** Which of the source's databases (when it dumps several). */
  database?: string;
  force?: boolean;
  /** Where a MongoDB dump or a git bundle is unpacked before it is loaded. */
  stagingDirectory?: string;
}

export interface SourceRestoreDependencies {
  logger: Logger;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
}

/** Picks the snapshot a restore point names among a source's snapshots (complete ones only). */
export function chooseSnapshot(all: Snapshot[], point: RestorePoint): Snapshot | undefined {
  const complete = all.filter((s) => !s.tags?.includes(PARTIAL_TAG) && [undefined, 'manifest'].includes(tagValue(s, PART_TAG_KEY)))
    .sort((a, b) => b.time.localeCompare(a.time));
  switch (point.type) {
    case 'latest':
      return complete[0];
    case 'latest-verified':
      return complete.find((s) => s.tags?.includes(VERIFIED_TAG));
    case 'snapshot':
      return all.find((s) => s.id === point.id || s.id.startsWith(point.id) || s.short_id === point.id);
    case 'as-of':
      return complete.find((s) => Date.parse(s.time) <= Date.parse(point.time));
  }
}

/** The snapshot holding the source's manifest: the one asked for, or the newest. */
export async function manifestSnapshot(restic: ResticContext, input: RestoreSourceInput): Promise<Snapshot> {
  const all = await snapshots(restic, { tags: [`deployment=${input.deployment}`, `source=${input.sourceName}`] });
  // A PostgreSQL backup's database snapshots are found from its manifest snapshot.
  const chosen = chooseSnapshot(all, input.snapshot ? { type: 'snapshot', id: input.snapshot } : { type: 'latest' });
  if (!chosen) {
    throw failure(FailureType.SourceMissing, input.snapshot
      ? `snapshot ${input.snapshot} of source ${input.sourceName} is not in repository ${input.repositoryName} (backupctl snapshots --source ${input.sourceName} lists them)`
      : `repository ${input.repositoryName} has no snapshot of source ${input.sourceName} yet`);
  }
  const part = tagValue(chosen, PART_TAG_KEY);
  if (part !== undefined && part !== 'manifest') {
    // A database snapshot's id was given: use the manifest of the same run.
    const runTag = chosen.tags?.find((t) => t.startsWith('run='));
    const manifest = all.find((s) => runTag && s.tags?.includes(runTag) && tagValue(s, PART_TAG_KEY) === 'manifest');
    if (!manifest) throw failure(FailureType.SourceMissing, `snapshot ${chosen.short_id} belongs to a backup whose manifest snapshot is missing: choose another snapshot`);
    return manifest;
  }
  return chosen;
}

export async function readManifest(restic: ResticContext, snapshot: Snapshot): Promise<SourceManifest> {
  const folder = snapshot.paths[0];
  if (!folder) throw failure(FailureType.RepositoryCorrupted, `snapshot ${snapshot.short_id} lists no path`);
  try {
    return JSON.parse(await readSnapshotFile(restic, snapshot.id, `${folder}/${MANIFEST_FILE}`)) as SourceManifest;
  } catch (error) {
    if (error instanceof SyntaxError) throw failure(FailureType.RepositoryCorrupted, `the manifest of snapshot ${snapshot.short_id} is not valid JSON`);
    throw error;
  }
}

/**
 * What a database restore's heartbeat carries, so that the next attempt of the same activity (its
 * worker killed midway) resumes instead of refusing the target it half filled itself.
 */
export interface DatabaseRestoreRecord {
  /** The manifest snapshot being restored: a retry restores from the same one. */
  snapshot?: string;
  /** Databases already restored and proven equal, with their comparison. */
  done?: { database: string; target: string; what: string }[];
  /** The target database this activity created and is filling: a retry may drop and recreate it. */
  created?: string;
}

/** The record the previous attempt of the current activity left in its heartbeat (empty on a first attempt). */
export function previousRestoreRecord(): DatabaseRestoreRecord {
  const details: unknown = Context.current().info.heartbeatDetails;
  if (typeof details !== 'object' || details === null) return {};
  const { snapshot, done, created } = details as Record<string, unknown>;
  const text = (value: unknown): value is string => typeof value === 'string' && value.length > 0;
  const entries = Array.isArray(done) ? (done as unknown[]).filter((d): d is { database: string; target: string; what: string } => {
    const entry = d as Record<string, unknown> | null;
    return typeof entry === 'object' && entry !== null && text(entry.database) && text(entry.target) && text(entry.what);
  }) : [];
  return { ...(text(snapshot) ? { snapshot } : {}), done: entries, ...(text(created) ? { created } : {}) };
}

/**
 * Whether a target database may be dropped and recreated although it holds data: only the one the
 * previous attempt of this activity recorded as created (its worker was killed while filling it).
 * A target that does not exist yet is recorded as created before anything is written into it;
 * any other is left to the restore's own rule (refused when not empty, unless forced).
 */
async function claimTarget(progress: DatabaseRestoreRecord, target: string, exists: () => Promise<boolean>, logger: Logger): Promise<boolean> {
  const ours = previousRestoreRecord().created === target;
  if (ours) logger.warn({ target, attempt: Context.current().info.attempt }, 'the target database was created by an earlier attempt of this restore, stopped midway: it is dropped and restored again');
  if (ours || !(await exists())) progress.created = target;
  return ours;
}

function mismatch(what: string, comparison: FingerprintComparison): Error {
  return failure(FailureType.RestoreMismatch, `${what}: the restored data differs from the backup: ${comparison.differences.slice(0, 10).join('; ')}${comparison.differences.length > 10 ? ` (and ${comparison.differences.length - 10} more)` : ''}`);
}

function checked(expected: SourceFingerprint, actual: SourceFingerprint, what: string, rename: Record<string, string> = {}): FingerprintComparison & { what: string } {
  const comparison = compareFingerprints(expected, actual, rename);
  if (!comparison.equal) throw mismatch(what, comparison);
  return { ...comparison, what };
}

/**
 * The restore behind the restoreSource activity. `progress` is the heartbeat's details: an
 * activity that restores several databases (recoverSource) passes its own, so its beats and this
 * restore's carry the same record (DatabaseRestoreRecord).
 */
export function createSourceRestore({ logger, resticBin, env }: SourceRestoreDependencies) {
  return {
    async restoreSource(input: RestoreSourceInput, progress: Record<string, unknown> & DatabaseRestoreRecord = { stage: 'listing' }): Promise<RestoreResult> {
      const activity = Context.current();
      progress.stage = 'listing';
      return typed(() => withHeartbeat(() => progress, async () => {
        const started = Date.now();
        const { source } = input;
        if (source.type === 's3-bucket') {
          if (!input.target) throw failure(FailureType.RestoreTargetUnsafe, `give the bucket to restore into: --target <bucket> (on ${source.endpoint}; it must be empty unless --force)`);
          progress.stage = 'copying';
          const copied = await restoreFromReplica({
            replica: source.replica, target: { ...source, bucket: input.target, prefix: source.prefix }, env, force: input.force, signal: activity.cancellationSignal,
          });
          const what = `bucket ${source.replica.bucket} copied into ${input.target}`;
          if (!copied.verified.ok) throw failure(FailureType.RestoreMismatch, `${what}: ${copied.verified.differences.slice(0, 10).join('; ')}`);
          return {
            source: input.sourceName, repository: `replica:${source.replica.bucket}`, snapshotId: 'latest', target: input.target,
            filesRestored: copied.copied, bytesRestored: copied.bytesCopied, durationSeconds: (Date.now() - started) / 1000,
            comparison: { ...compareFingerprints(copied.fingerprint, copied.replicaFingerprint), what },
          };
        }

        if (!input.repository || !input.repositoryName) throw failure(FailureType.ConfigInvalid, `source ${input.sourceName}: no repository given to restore it from`);
        const restic: ResticContext = { bin: await resticBin(), repository: input.repository, env, signal: activity.cancellationSignal };
        const snapshot = await manifestSnapshot(restic, input);
        const manifest = await readManifest(restic, snapshot);
        const folder = snapshot.paths[0]!;
        const base = { source: input.sourceName, repository: input.repositoryName, snapshotId: snapshot.id };

        if (source.type === 'postgres') {
          const url = requireSecret(env, source.urlEnv, 'PostgreSQL connection URL');
          const entries = manifest.databases ?? [];
          const entry = input.database ? entries.find((d) => d.database === input.database) : entries.length === 1 ? entries[0] : undefined;
          if (!entry) {
            throw failure(FailureType.RestoreTargetUnsafe, input.database
              ? `snapshot ${snapshot.short_id} holds no database "${input.database}" (it holds: ${entries.map((d) => d.database).join(', ')})`
              : `snapshot ${snapshot.short_id} holds several databases (${entries.map((d) => d.database).join(', ')}): choose one with --database`);
          }
          const target = input.target ?? entry.database;
          const runTag = snapshot.tags?.find((t) => t.startsWith('run='));
          const [part] = (await snapshots(restic, { tags: [`source=${input.sourceName}`, ...(runTag ? [runTag] : [])] })).filter((s) => tagValue(s, PART_TAG_KEY) === entry.part);
          if (!part) throw failure(FailureType.SourceMissing, `the dump of database ${entry.database} (${entry.part}) of snapshot ${snapshot.short_id} is missing from repository ${input.repositoryName}`);
          const replace = await claimTarget(progress, target, () => databaseExists(url, target), logger);
          progress.stage = 'restoring';
          const restored = await restoreDatabaseFromRestic({
            restic: { bin: restic.bin, repository: restic.repository, env }, snapshotId: part.id, path: `/${entry.filename}`,
            sourceDatabase: entry.database, url, database: target, force: input.force || replace, signal: activity.cancellationSignal,
          });
          progress.stage = 'comparing';
          const actual = await fingerprintDatabase(url, target);
          const expected = manifest.fingerprint.kind === 'postgres' ? manifest.fingerprint.databases.filter((d) => d.database === entry.database) : [];
          const comparison = checked({ kind: 'postgres', databases: expected }, { kind: 'postgres', databases: [actual] }, `database ${entry.database} restored into ${target}`, { [entry.database]: target });
          logger.info({ source: input.sourceName, snapshot: snapshot.short_id, database: entry.database, target, warnings: restored.warnings.length }, 'database restored and equal to the backup');
          return { ...base, ...(restored.warnings.length > 0 ? { warnings: restored.warnings.slice(0, 20) } : {}), target, filesRestored: expected[0]?.tables.length ?? 0, bytesRestored: 0, durationSeconds: (Date.now() - started) / 1000, comparison };
        }

        // MongoDB and git: unpack the snapshot's folder into staging, load it, remove it.
        const staging = resolve(input.stagingDirectory ?? '/var/tmp/backup-staging', 'restores', `${input.deployment}-${input.sourceName}-${(activity.info.workflowExecution?.runId ?? activity.info.activityId).slice(0, 8)}`);
        const size = snapshot.summary?.total_bytes_processed ?? 0;
        const { free } = stagingSpace(staging, '0', size);
        if (free < size) throw failure(FailureType.InsufficientDiskSpace, `unpacking snapshot ${snapshot.short_id} needs ${size} bytes at ${staging}, only ${free} free: free space or point staging.directory at a larger disk`);
        if (source.type === 'git') {
          if (!input.target) throw failure(FailureType.RestoreTargetUnsafe, 'give the folder to restore the repository into: --target <folder>');
          const target = resolve(input.target);
          if (existsSync(target) && readdirSync(target).length > 0 && !input.force) {
            throw failure(FailureType.RestoreTargetUnsafe, `target ${target} is not empty: restore into an empty or new folder (nothing was written)`);
          }
        }
        await rm(staging, { recursive: true, force: true });
        await mkdir(staging, { recursive: true, mode: 0o700 });
        try {
          progress.stage = 'unpacking';
          await restore(restic, { snapshotId: snapshot.id, subfolder: folder, target: staging });
          progress.stage = 'restoring';
          if (source.type === 'mongodb') {
            const uri = requireSecret(env, source.uriEnv, 'MongoDB connection string');
            // Options and indexes the server would not take (FerretDB has gaps): reported, not hidden.
            const warnings: string[] = [];
            const dumped = manifest.fingerprint.kind === 'mongodb' ? [...new Set(manifest.fingerprint.collections.map((c) => c.database))] : [];
            const databases = input.database ? [input.database] : dumped;
            if (input.database && !dumped.includes(input.database)) throw failure(FailureType.RestoreTargetUnsafe, `snapshot ${snapshot.short_id} holds no database "${input.database}" (it holds: ${dumped.join(', ')})`);
            if (input.target && databases.length !== 1) throw failure(FailureType.RestoreTargetUnsafe, `snapshot ${snapshot.short_id} holds several databases (${dumped.join(', ')}): choose the one to restore into ${input.target} with --database`);
            const rename: Record<string, string> = input.target ? { [databases[0]!]: input.target } : {};
            const single = databases.length === 1 ? rename[databases[0]!] ?? databases[0]! : undefined;
            const replace = single !== undefined && await claimTarget(progress, single, () => mongoDatabaseExists({ uri }, single), logger);
            const actual = await restoreMongo({
              uri, directory: join(staging, manifest.dump ?? 'dump'), rename, databases, force: input.force || replace, signal: activity.cancellationSignal,
              onProgress: (p: unknown) => Object.assign(progress, p),
              onWarning: (message: string) => warnings.push(message),
            });
            const expected = manifest.fingerprint.kind === 'mongodb'
              ? { ...manifest.fingerprint, collections: manifest.fingerprint.collections.filter((c) => databases.includes(c.database)) }
              : manifest.fingerprint;
            const target = databases.map((d) => rename[d] ?? d).join(', ');
            const comparison = checked(expected, actual, `${databases.join(', ')} restored into ${target}`, rename);
            const collections = expected.kind === 'mongodb' ? expected.collections : [];
            logger.info({ source: input.sourceName, snapshot: snapshot.short_id, target, collections: collections.length, warnings }, 'MongoDB restored and equal to the backup');
            return {
              ...base, target, filesRestored: collections.reduce((n, c) => n + c.count, 0), bytesRestored: collections.reduce((n, c) => n + c.bytes, 0),
              durationSeconds: (Date.now() - started) / 1000, comparison, ...(warnings.length > 0 ? { warnings } : {}),
            };
          }
          if (source.type === 'git') {
            const target = resolve(input.target!);
            const actual = await restoreBundle({ bundleFile: join(staging, manifest.bundle ?? 'repository.bundle'), target, force: input.force });
            const comparison = checked(manifest.fingerprint, actual, `repository restored into ${target}`);
            return { ...base, target, filesRestored: actual.kind === 'git' ? actual.refs.length : 0, bytesRestored: 0, durationSeconds: (Date.now() - started) / 1000, comparison };
          }
          throw failure(FailureType.ConfigInvalid, `source ${input.sourceName}: ${source.type} sources are restored as files`);
        } finally {
          await rm(staging, { recursive: true, force: true });
        }
      }));
    },
  };
}

export function createSourceRestoreActivities(deps: SourceRestoreDependencies) {
  const { restoreSource } = createSourceRestore(deps);
  // The activity takes the input alone: what a retry may replace comes from its own heartbeat, never from a workflow.
  return { restoreSource: (input: RestoreSourceInput): Promise<RestoreResult> => restoreSource(input) };
}
