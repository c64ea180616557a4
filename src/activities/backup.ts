/**
 * The activities that move data: preflight, one restic backup per source (progress as
 * heartbeats), retention, prune. A retry after a killed worker stops the orphaned restic of
 * the earlier attempt and adopts its snapshot if it finished, so a run makes one snapshot.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Context } from '@temporalio/activity';
import type { Config, Repository } from '../config/schema';
import { runRetention } from './retention';
import { formatBytes } from '../config/units';
import { stagingSpace } from './disk';
import { backup, prune, readSnapshotFile, snapshots, tag, tagValue, unlockStale, type ResticContext, type Snapshot, type UnreadableItem } from '../restic/commands';
import { checkRepositoryBucket, createS3Client } from '../storage/s3';
import { extendRetention } from '../storage/object-lock';
import { FailureType } from '../shared/failures';
import {
  PARTIAL_LIST_LIMIT, PARTIAL_TAG, PART_TAG_KEY,
  type BackupHeartbeat, type PartialDetail, type RetentionInput, type RetentionResult, type SnapshotRecord, type SourceBackupInput,
} from '../shared/backup-types';
import type { Logger } from '../logging/logger';
import { auditHeadTag, buildManifest, MANIFEST_FILE, readLedgerAuditHead, type ManifestAuditHead } from './manifest';
import type { Client } from '@temporalio/client';
import { failure, typed } from './failures';
import { markProgress, withHeartbeat } from './heartbeat';
import { backupOtherSource, pushMirror, type SourceManifest } from './source-backup';

export interface BackupDependencies {
  logger: Logger;
  /** The worker's config: retention keeps its state under `staging.directory` and reads each source's type. */
  config?: Config;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  /** The ledger is asked once per backup for the audit trail's head (into the manifest and a tag); without a client, no head. */
  temporalClient?: () => Promise<Client>;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops the restic an earlier attempt on this host left running, if it is still ours. */
async function stopOrphan(previous: BackupHeartbeat | undefined, logger: Logger): Promise<void> {
  if (!previous?.pid || previous.host !== hostname() || !isAlive(previous.pid)) return;
  let commandLine = '';
  try {
    commandLine = readFileSync(`/proc/${previous.pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  // The pid may have been reused: only a restic carrying this run's tag is ours.
  if (!commandLine.includes('restic') || !commandLine.includes(previous.runTag)) return;
  logger.warn({ pid: previous.pid, runTag: previous.runTag }, 'stopping the restic left by an earlier attempt');
  process.kill(previous.pid, 'SIGINT');
  process.kill(previous.pid, 'SIGCONT'); // a stopped restic (SIGSTOP) takes the SIGINT only once woken
  const deadline = Date.now() + 30_000;
  while (isAlive(previous.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  if (isAlive(previous.pid)) process.kill(previous.pid, 'SIGKILL');
  while (isAlive(previous.pid)) await new Promise((r) => setTimeout(r, 100));
}

function record(input: SourceBackupInput, snapshot: { id: string; time: string; files: number; bytes: number; dataAdded: number; durationSeconds: number }, resumed: boolean, partial?: PartialDetail): SnapshotRecord {
  return {
    deployment: input.deployment, policy: input.policy, source: input.sourceName, repository: input.repositoryName,
    snapshotId: snapshot.id, time: snapshot.time, scheduledTime: input.scheduledTime,
    files: snapshot.files, bytes: snapshot.bytes, dataAdded: snapshot.dataAdded, durationSeconds: snapshot.durationSeconds, resumed,
    ...(partial ? { partial } : {}),
  };
}

/** "YYYY-MM-DD HH:MM:SS" in UTC, the form restic's --time takes. */
export function resticTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace('T', ' ');
}

export function isoFromResticTime(time: string): string {
  return new Date(`${time.replace(' ', 'T')}Z`).toISOString();
}

function partialDetail(unreadable: number, items: UnreadableItem[]): PartialDetail {
  return { unreadable, items: items.slice(0, PARTIAL_LIST_LIMIT) };
}

export function snapshotTags(input: Pick<SourceBackupInput, 'deployment' | 'sourceName' | 'policy' | 'scheduledTime' | 'host' | 'runTag'>, auditHead?: ManifestAuditHead | null): string[] {
  return [`deployment=${input.deployment}`, `source=${input.sourceName}`, `policy=${input.policy}`, `scheduled=${input.scheduledTime}`, `host=${input.host}`, input.runTag, ...(auditHead ? [auditHeadTag(auditHead)] : [])];
}

export function createBackupActivities({ logger, resticBin, env, temporalClient, config }: BackupDependencies) {
  const context = async (repository: Repository, signal?: AbortSignal): Promise<ResticContext> => ({ bin: await resticBin(), repository, env, signal });

  return {
    /** Bucket reachable with accepted credentials, or the local repository present: fail before any work. */
    async preflightRepository(input: { name: string; repository: Repository }): Promise<void> {
      await typed(async () => {
        if (input.repository.type === 's3') await checkRepositoryBucket(input.repository, env);
        // No `restic cat config` here: it costs a key derivation (~0.7 s), and the backup's own exit
        // codes already give the same typed failures (no repository, wrong password).
        if (input.repository.type === 'local' && !existsSync(join(input.repository.path, 'config'))) {
          throw failure(FailureType.RepositoryNotInitialised, `restic repository ${input.repository.path} does not exist yet: initialise it with \`backupctl init\``);
        }
      });
    },

    async checkFreeSpace(input: { directory: string; minFreeSpace: string; neededBytes: number }): Promise<void> {
      mkdirSync(input.directory, { recursive: true, mode: 0o700 });
      const { free, needed } = stagingSpace(input.directory, input.minFreeSpace, input.neededBytes);
      if (free < needed) {
        throw failure(FailureType.InsufficientDiskSpace, `only ${formatBytes(free)} free at ${input.directory}, ${formatBytes(needed)} needed: free space or move staging.directory`);
      }
    },

    async backupSource(input: SourceBackupInput): Promise<SnapshotRecord> {
      const activity = Context.current();
      const previous = activity.info.heartbeatDetails as BackupHeartbeat | undefined;
      const log = activity.log;
      const beat: BackupHeartbeat = { host: hostname(), runTag: input.runTag, unreadable: previous?.unreadable, unreadableItems: previous?.unreadableItems };
      return typed(() => withHeartbeat(() => beat, async () => {
        await stopOrphan(previous, logger);
        const restic = await context(input.repository, activity.cancellationSignal);
        // A snapshot saved with unreadable files is tagged `partial` (its id changes): find it again by the run's tag.
        const markPartial = async (snapshotId: string): Promise<Snapshot | undefined> => {
          await tag(restic, [snapshotId], { add: [PARTIAL_TAG] });
          return (await snapshots(restic, { tags: [input.runTag] }))[0];
        };
        // An earlier attempt may have finished its snapshot just before its worker died. A PostgreSQL
        // backup is complete only once its manifest snapshot (the last one) exists.
        const isFiles = input.source.type === 'files' || input.source.type === 'secrets';
        const [existing] = activity.info.attempt > 1
          ? (await snapshots(restic, { tags: [input.runTag] })).filter((s) => input.source.type !== 'postgres' || tagValue(s, PART_TAG_KEY) === 'manifest')
          : [];
        if (existing && !isFiles) {
          log.info(`adopting snapshot ${existing.short_id} made by an earlier attempt`);
          const manifest = JSON.parse(await readSnapshotFile(restic, existing.id, `${existing.paths[0]}/${MANIFEST_FILE}`)) as SourceManifest;
          if (input.source.type === 'git') await pushMirror({ env, beat: beat as BackupHeartbeat & Record<string, unknown>, activity }, input.source);
          const parts = input.source.type === 'postgres'
            ? (await snapshots(restic, { tags: [input.runTag] })).filter((s) => tagValue(s, PART_TAG_KEY)?.startsWith('database:')).map((s) => ({ part: tagValue(s, PART_TAG_KEY)!, snapshotId: s.id }))
            : undefined;
          return {
            ...record(input, { id: existing.id, time: new Date(existing.time).toISOString(), files: existing.summary?.total_files_processed ?? 0, bytes: existing.summary?.total_bytes_processed ?? 0, dataAdded: existing.summary?.data_added ?? 0, durationSeconds: 0 }, true),
            fingerprint: manifest.fingerprint, ...(parts ? { parts } : {}),
          };
        }
        if (existing) {
          log.info(`adopting snapshot ${existing.short_id} made by an earlier attempt`);
          // Partial if it was tagged so, or if the earlier attempt's heartbeats had reported unreadable files.
          let adopted = existing;
          const wasPartial = existing.tags?.includes(PARTIAL_TAG) || (previous?.unreadable ?? 0) > 0;
          if (wasPartial && !existing.tags?.includes(PARTIAL_TAG)) adopted = (await markPartial(existing.id)) ?? existing;
          const partial = wasPartial ? partialDetail(previous?.unreadable ?? 1, previous?.unreadableItems ?? [{ path: '', error: 'an earlier attempt reported unreadable files' }]) : undefined;
          return record(input, { id: adopted.id, time: new Date(adopted.time).toISOString(), files: adopted.summary?.total_files_processed ?? 0, bytes: adopted.summary?.total_bytes_processed ?? 0, dataAdded: adopted.summary?.data_added ?? 0, durationSeconds: 0 }, true, partial);
        }
        const started = Date.now();
        // The snapshot's time is set here (restic runs with TZ=UTC), so the ledger's record and the
        // snapshot agree to the second: a ledger rebuilt from the repository reads the same time back.
        const snapshotTime = input.time ?? resticTime(new Date(started));
        // The audit trail's head, kept in the snapshot where a lost or rebuilt ledger cannot forge it
        // (one query, asked while the manifest is written).
        const asked = readLedgerAuditHead(temporalClient, input.deployment);
        if (input.source.type !== 'files' && input.source.type !== 'secrets') {
          const auditHead = await asked;
          const saved = await backupOtherSource({ input, restic, beat: beat as BackupHeartbeat & Record<string, unknown>, activity, env, logger, snapshotTime, auditHead });
          logger.info({ source: input.sourceName, repository: input.repositoryName, snapshot: saved.snapshotId.slice(0, 8), bytes: saved.bytes, added: saved.dataAdded }, 'snapshot saved');
          return {
            ...record(input, { id: saved.snapshotId, time: isoFromResticTime(snapshotTime), files: saved.files, bytes: saved.bytes, dataAdded: saved.dataAdded, durationSeconds: (Date.now() - started) / 1000 }, false),
            fingerprint: saved.fingerprint, ...(saved.parts ? { parts: saved.parts } : {}),
          };
        }
        const source = input.source;
        const root = source.root;
        for (const path of source.paths) {
          if (!existsSync(resolve(root, path))) {
            throw failure(FailureType.SourceMissing, `source ${input.sourceName}: ${resolve(root, path)} does not exist on host ${input.host}${input.host === hostname() ? '' : ` (${hostname()})`}: restore it (backupctl restore --source ${input.sourceName} --in-place --yes) or fix the source's paths`);
          }
        }
        const [auditHead, manifest] = await Promise.all([asked, buildManifest({ deployment: input.deployment, policy: input.policy, sourceName: input.sourceName, source, host: input.host, scheduledTime: input.scheduledTime })]);
        if (auditHead) manifest.auditHead = auditHead;
        const manifestPath = join(input.stagingDirectory, 'manifests', input.deployment, input.sourceName, MANIFEST_FILE);
        mkdirSync(dirname(manifestPath), { recursive: true, mode: 0o700 });
        writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });

        const unreadableItems: UnreadableItem[] = [];
        const { summary, unreadable } = await backup(restic, {
          // Absolute paths: the snapshot's tree then mirrors the host, and restore can take <snapshot>:<root>.
          paths: [...source.paths.map((p) => resolve(root, p)), manifestPath],
          cwd: root,
          host: input.host,
          tags: snapshotTags(input, auditHead),
          exclude: source.exclude,
          time: snapshotTime,
          tuning: { compression: source.compression, readConcurrency: source.readConcurrency, packSizeMiB: input.repository.packSizeMiB },
          onStart: (pid) => {
            beat.pid = pid;
            activity.heartbeat(beat);
          },
          onStatus: (status) => {
            Object.assign(beat, { percentDone: status.percent_done, filesDone: status.files_done, totalFiles: status.total_files, bytesDone: status.bytes_done, totalBytes: status.total_bytes });
            activity.heartbeat(beat);
          },
          onUnreadable: (item, count) => {
            if (unreadableItems.length < PARTIAL_LIST_LIMIT) unreadableItems.push(item);
            beat.unreadable = count;
            beat.unreadableItems = unreadableItems;
            activity.heartbeat(beat);
          },
        });
        let snapshotId = summary.snapshot_id;
        let partial: PartialDetail | undefined;
        if (unreadable.length > 0) {
          partial = partialDetail(unreadable.length, unreadable);
          snapshotId = (await markPartial(snapshotId))?.id ?? snapshotId;
          logger.warn({ source: input.sourceName, repository: input.repositoryName, snapshot: snapshotId.slice(0, 8), unreadable: unreadable.length, first: unreadable[0] }, 'partial snapshot: some files could not be read');
        } else {
          logger.info({ source: input.sourceName, repository: input.repositoryName, snapshot: snapshotId.slice(0, 8), files: summary.total_files_processed, added: summary.data_added }, 'snapshot saved');
        }
        return record(input, {
          id: snapshotId, time: isoFromResticTime(snapshotTime), files: summary.total_files_processed, bytes: summary.total_bytes_processed,
          dataAdded: summary.data_added, durationSeconds: (Date.now() - started) / 1000,
        }, false, partial);
      }));
    },

    /**
     * The policy's keep rules for one source (src/activities/retention.ts): the snapshot carrying
     * LAST_VERIFIED_TAG is kept whatever the rules say; one restic process for a source without parts.
     */
    async applyRetention(input: RetentionInput): Promise<RetentionResult> {
      return typed(() => withHeartbeat(() => ({ stage: 'retention', source: input.sourceName }), async () => {
        const restic = await context(input.repository, Context.current().cancellationSignal);
        const result = await runRetention({
          restic, input, logger, stagingDirectory: config?.staging.directory, sourceType: config?.sources[input.sourceName]?.type,
        });
        if (!result.skipped) logger.info({ source: input.sourceName, repository: input.repositoryName, kept: result.kept.length, removed: result.removed.length }, 'retention applied');
        if (input.repository.type === 's3' && input.repository.immutable) {
          // Packs are shared across snapshots: the ones still current keep their lock past `days`.
          const client = createS3Client(input.repository, env);
          try {
            const extension = await extendRetention(client, input.repository, { onProgress: markProgress, signal: Context.current().cancellationSignal });
            logger.info({ repository: input.repositoryName, examined: extension.examined, extended: extension.extended, until: extension.until }, 'object lock retention extended');
          } finally {
            client.destroy();
          }
        }
        return result;
      }));
    },

    async pruneRepository(input: { name: string; repository: Repository }): Promise<void> {
      await typed(() => withHeartbeat(() => ({ stage: 'prune' }), async () => {
        const restic = await context(input.repository, Context.current().cancellationSignal);
        await unlockStale(restic);
        await prune(restic);
      }));
    },

    async listSnapshots(input: { repository: Repository; tags?: string[] }): Promise<Snapshot[]> {
      return typed(() => withHeartbeat(() => ({ stage: 'list' }), async () => snapshots(await context(input.repository, Context.current().cancellationSignal), { tags: input.tags })));
    },
  };
}

export type BackupActivities = ReturnType<typeof createBackupActivities>;
