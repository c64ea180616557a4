/**
 * A second destination (policies.<p>.copyTo): one run's snapshots copied with `restic copy` from
 * the policy's first repository into a copy repository with its own credentials (the source is
 * read through rclone: src/restic/from-repository.ts). Each copy is found again by restic's
 * `original` field, so a retry, for which restic copies nothing twice, returns the same records.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Config, Repository } from '../config/schema';
import type { Logger } from '../logging/logger';
import { catConfig, copy, snapshots, snapshotsById, tagValue, type ResticContext, type Snapshot } from '../restic/commands';
import { checkRcloneRemote, fromRepository } from '../restic/from-repository';
import { ResticError, repositoryLocation } from '../restic/restic';
import { resolveBinary } from '../servers/binaries';
import { PARTIAL_TAG, type CopySnapshotsInput, type SnapshotRecord } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import { checkRepositoryBucket } from '../storage/s3';
import { failure, typed } from './failures';
import { withHeartbeat } from './heartbeat';

export interface CopyDependencies {
  logger: Logger;
  env: NodeJS.ProcessEnv;
  resticBin: () => Promise<string>;
  /** Default: RCLONE_BIN, then PATH, then the project cache (the worker never builds it). */
  rcloneBin?: () => Promise<string>;
  /** The worker's config: the repositories are taken from it by name, never from the input. */
  config?: Config;
}

interface CopyHeartbeat {
  stage: 'preflight' | 'copy' | 'match';
  from: string;
  to: string;
  snapshots: number;
  packsDone?: number;
  packsTotal?: number;
}

type Side = 'source' | 'copy';

/** The activity's context, or none when called directly (a test, a CLI command). */
function currentActivity(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

function failureType(error: unknown): FailureType | undefined {
  if (error instanceof ApplicationFailure) return error.type as FailureType | undefined;
  const type = (error as { failureType?: unknown } | undefined)?.failureType;
  return typeof type === 'string' ? type as FailureType : undefined;
}

/** A failure on one side of the copy, saying which repository and which of its variables to fix. */
function sideFailure(side: Side, name: string, repository: Repository, error: unknown): Error {
  const type = failureType(error);
  const role = side === 'source' ? 'source repository' : 'copy repository';
  const where = `${role} "${name}" (${repositoryLocation(repository)})`;
  const said = error instanceof Error ? error.message : String(error);
  switch (type) {
    case FailureType.CredentialsRejected:
      return failure(type, repository.type === 's3'
        ? `S3 credentials of the ${where} were rejected: check the values of ${repository.accessKeyIdEnv} and ${repository.secretAccessKeyEnv} (its accessKeyIdEnv and secretAccessKeyEnv)`
        : `the ${where} refused access: ${said}`);
    case FailureType.WrongRepositoryPassword:
      return failure(type, `wrong password for the ${where}: check the value of ${repository.passwordEnv} (its passwordEnv)`);
    case FailureType.RepositoryNotInitialised:
      return failure(type, side === 'copy'
        ? `the ${where} does not exist yet: create it with \`backupctl init --repository ${name}\` (it takes the chunker parameters of the policy's first repository, so copies deduplicate)`
        : `the ${where} does not exist: initialise it with \`backupctl init --repository ${name}\``);
    case undefined:
      return failure(FailureType.ResticFailed, `${where}: ${said}`);
    default:
      return failure(type, `${where}: ${said}`);
  }
}

/** The snapshot ids a record stands for: its own and those of its parts (one per PostgreSQL database). */
function recordIds(record: SnapshotRecord): string[] {
  return [record.snapshotId, ...(record.parts ?? []).map((p) => p.snapshotId)];
}

const sameSet = (a: readonly string[] | undefined, b: readonly string[] | undefined): boolean =>
  JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...(b ?? [])].sort());

/** restic's own test (cmd_copy.go, similarSnapshots): a copy keeps the tree, time, host, paths and tags. */
function isCopyOf(copyCandidate: Snapshot, source: Snapshot): boolean {
  const persistent = source.original ?? source.id;
  return (copyCandidate.original === persistent || copyCandidate.id === persistent)
    && copyCandidate.tree === source.tree && copyCandidate.time === source.time && copyCandidate.hostname === source.hostname
    && sameSet(copyCandidate.paths, source.paths) && sameSet(copyCandidate.tags, source.tags);
}

/**
 * The input's pair as this worker's config has it: only a policy's first repository into one of its
 * copyTo repositories, with the endpoints and keys of the config (a job signalled to a writer by
 * someone else cannot send the snapshots, or the worker's keys, anywhere else).
 */
function configuredPair(config: Config | undefined, input: CopySnapshotsInput): CopySnapshotsInput {
  if (!config) return input;
  const policy = config.policies[input.policy];
  const from = config.repositories[input.from.name];
  const to = config.repositories[input.to.name];
  if (!policy || !from || !to || policy.repositories[0] !== input.from.name || !policy.copyTo.includes(input.to.name)) {
    throw failure(FailureType.ConfigInvalid, `this worker's config does not copy policy ${input.policy}'s repository "${input.from.name}" into "${input.to.name}" (policies.${input.policy}.copyTo): nothing was copied`);
  }
  return { ...input, from: { name: input.from.name, repository: from }, to: { name: input.to.name, repository: to } };
}

export function createCopyActivities({ logger, env, resticBin, rcloneBin, config }: CopyDependencies) {
  let rclonePath: Promise<string> | undefined;
  const rclone = rcloneBin ?? (() => (rclonePath ??= resolveBinary('rclone', { build: false }).catch((error: unknown) => {
    rclonePath = undefined;
    throw new ResticError(`rclone is needed to read an S3 source repository for restic copy: ${error instanceof Error ? error.message : String(error)}`, FailureType.ResticMissing, null, '');
  })));

  return {
    /**
     * Copies the run's snapshots (and their parts) from `input.from` into `input.to` and returns
     * one record per input record, naming the copy and its original.
     */
    async copySnapshots(requested: CopySnapshotsInput): Promise<SnapshotRecord[]> {
      const input = configuredPair(config, requested);
      const activity = currentActivity();
      const signal = activity?.cancellationSignal;
      const beat: CopyHeartbeat = { stage: 'preflight', from: input.from.name, to: input.to.name, snapshots: input.snapshots.length };
      return typed(() => withHeartbeat(() => beat, async () => {
        const started = Date.now();
        const foreign = input.snapshots.filter((r) => r.repository !== input.from.name);
        if (input.from.name === input.to.name || foreign.length > 0) {
          throw failure(FailureType.ConfigInvalid, input.from.name === input.to.name
            ? `a repository cannot be copied into itself ("${input.from.name}"): copyTo names another repository`
            : `records of ${[...new Set(foreign.map((r) => r.repository))].join(', ')} cannot be copied from "${input.from.name}": only its own snapshots are`);
        }
        const ids = [...new Set(input.snapshots.flatMap(recordIds))];
        if (ids.length === 0) return [];
        const bin = await resticBin();
        const source: ResticContext = { bin, repository: input.from.repository, env, signal };
        const target: ResticContext = { bin, repository: input.to.repository, env, signal };
        const onSide = async <T>(side: Side, fn: () => Promise<T>): Promise<T> => {
          const { name, repository } = side === 'source' ? input.from : input.to;
          try {
            return await fn();
          } catch (error) {
            if (signal?.aborted) throw error;
            throw sideFailure(side, name, repository, error);
          }
        };

        // Each side's key, with the SDK: a rejected key fails here in a second, naming its repository
        // (through rclone, restic would retry an S3 error for 15 minutes).
        for (const side of ['source', 'copy'] as const) {
          const { repository } = side === 'source' ? input.from : input.to;
          if (repository.type !== 's3') continue;
          await onSide(side, () => checkRepositoryBucket(repository, env));
        }
        // The originals, with their own credentials: a snapshot re-tagged after its backup carries an
        // `original` of its own, which its copies keep (restic copy: srcOriginal).
        const originals = await onSide('source', () => snapshotsById(source, ids));
        const missing = ids.filter((id) => !originals.some((s) => s.id === id));
        // Catch-up: the sources' other complete snapshots go along (restic copy skips those already
        // copied), so the snapshots of a run whose copy failed reach the copy repository with the next one.
        const sources = new Set(input.snapshots.map((r) => r.source));
        const earlier = missing.length > 0 ? [] : (await onSide('source', () => snapshots(source, { tags: [`deployment=${input.deployment}`] })))
          .filter((s) => !ids.includes(s.id) && !s.tags?.includes(PARTIAL_TAG) && sources.has(tagValue(s, 'source') ?? ''))
          .map((s) => s.id);
        if (missing.length > 0) {
          throw failure(FailureType.VerificationFailed, `snapshots ${missing.map((id) => id.slice(0, 8)).join(', ')} are not in the source repository "${input.from.name}" (${repositoryLocation(input.from.repository)}) any more: nothing of this run can be copied into "${input.to.name}"; was it pruned by retention before its copy?`);
        }

        /**
         * restic's exit codes do not say which repository failed (12 is a wrong password of either):
         * each one is opened alone, and the first that fails names itself.
         */
        const diagnoseCopyFailure = async (error: unknown): Promise<Error> => {
          await onSide('source', () => catConfig(source));
          await onSide('copy', () => catConfig(target));
          const type = failureType(error) ?? FailureType.ResticFailed;
          const said = error instanceof Error ? error.message : String(error);
          if (type === FailureType.RepositoryLocked) {
            return failure(type, `restic copy from "${input.from.name}" to "${input.to.name}": one of them is locked by another process (a prune or check holds it); the retry waits for it. restic said: ${said}`);
          }
          return failure(type, `restic copy from "${input.from.name}" (${repositoryLocation(input.from.repository)}) to "${input.to.name}" (${repositoryLocation(input.to.repository)}) failed: ${said}`);
        };

        beat.stage = 'copy';
        const sourceRepository = input.from.repository;
        const from = await onSide('source', async () => {
          if (sourceRepository.type !== 's3') return fromRepository(sourceRepository, env);
          const bin = await rclone();
          await checkRcloneRemote(bin, sourceRepository, env, signal);
          return fromRepository(sourceRepository, env, bin);
        });
        const copyStarted = Date.now();
        try {
          await copy(target, from, [...ids, ...earlier], (progress) => Object.assign(beat, progress));
        } catch (error) {
          if (signal?.aborted) throw error;
          throw await diagnoseCopyFailure(error);
        }
        const copySeconds = (Date.now() - copyStarted) / 1000;

        beat.stage = 'match';
        const inCopy = await onSide('copy', () => snapshots(target));
        const copyIds = new Map<string, string>();
        for (const original of originals) {
          // Several can match (a snapshot copied again after being re-tagged): the same one each time.
          const match = inCopy.filter((c) => isCopyOf(c, original)).sort((a, b) => a.id.localeCompare(b.id))[0];
          if (!match) {
            throw failure(FailureType.ResticFailed, `restic copy ended without an error but "${input.to.name}" has no copy of snapshot ${original.id.slice(0, 8)} of "${input.from.name}": the retry copies it again`);
          }
          copyIds.set(original.id, match.id);
        }
        const copiedAt = new Date().toISOString();
        const records = input.snapshots.map((record): SnapshotRecord => ({
          ...record,
          repository: input.to.name,
          snapshotId: copyIds.get(record.snapshotId)!,
          ...(record.parts ? { parts: record.parts.map((p) => ({ part: p.part, snapshotId: copyIds.get(p.snapshotId)! })) } : {}),
          original: { repository: input.from.name, snapshotId: record.snapshotId },
          copiedAt,
          durationSeconds: copySeconds,
        }));
        logger.info({ from: input.from.name, to: input.to.name, snapshots: ids.length, earlier: earlier.length, packs: beat.packsTotal ?? 0, seconds: (Date.now() - started) / 1000 }, 'snapshots copied');
        return records;
      }));
    },
  };
}

export type CopyActivities = ReturnType<typeof createCopyActivities>;
