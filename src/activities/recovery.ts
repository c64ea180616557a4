/**
 * The steps of a recovery or a drill: restore a source at a restore point into its target (and
 * prove it with the fingerprint), run a hook (a shell command or an HTTP call), check the
 * application's health URL, and remove what a drill created.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Context } from '@temporalio/activity';
import { drillRunFolder, liesUnder } from '../config/plans';
import { isDatabaseSource, scratchServerNote, scratchSource } from '../config/scratch';
import { parseDuration } from '../config/units';
import type { Config } from '../config/schema';
import type { Logger } from '../logging/logger';
import { scrubSecrets } from '../logging/logger';
import { snapshots } from '../restic/commands';
import type { Repository } from '../config/schema';
import type { NamedRepository } from '../shared/plans';
import { checkRepositoryBucket } from '../storage/s3';
import { FailureType } from '../shared/failures';
import type { RecoveredSource, RecoverySource, RecoveryStep, RestorePoint } from '../shared/recovery-types';
import { verifyReplica } from '../sources/bucket';
import { failure, typed } from './failures';
import { withHeartbeat } from './heartbeat';
import { createRestoreActivities } from './restore';
import { chooseSnapshot, createSourceRestore, previousRestoreRecord, readManifest, type DatabaseRestoreRecord } from './source-restore';
import { runShortId, workflowRunOfActivity } from './plans';

/** Why a repository cannot be read now (its bucket does not answer, is gone, refuses the key; no local repository), or undefined. */
async function repositoryProblem(repository: Repository, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (repository.type === 'local') return existsSync(join(repository.path, 'config')) ? undefined : `no restic repository at ${repository.path}`;
  return checkRepositoryBucket(repository, env).then(() => undefined, (error: unknown) => (error instanceof Error ? error.message : String(error)));
}
import { databasesEndingWith, dropScratch } from './verify';

export interface RecoveryDependencies {
  logger: Logger;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  /** The worker's config: hooks, the health URL and the drill's scratch folders come from it, never from the input. */
  config?: Config;
}

/** What a hook process may see of the worker's environment: the basics and the variables its step lists. */
export function hookEnvironment(env: NodeJS.ProcessEnv, listed: string[]): NodeJS.ProcessEnv {
  const kept: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'LANG', ...listed]) if (env[name] !== undefined) kept[name] = env[name];
  return kept;
}

/** The file that says a drill run's folder was made by that run (cleanup removes nothing else). */
const RUN_MARKER = '.backupctl-drill-run';

/** Signals a whole process group (a hook and everything it started); gone already is fine. */
function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // the group has already exited
  }
}

export interface RecoverSourceInput {
  deployment: string;
  mode: 'drill' | 'recover';
  source: RecoverySource;
  restorePoint: RestorePoint;
  stagingDirectory: string;
  force?: boolean;
  /** When the run started: the RPO achieved is the restored data's age then. */
  startedAt: string;
}

function describePoint(point: RestorePoint): string {
  if (point.type === 'snapshot') return `snapshot ${point.id}`;
  if (point.type === 'as-of') return `snapshot taken at or before ${point.time}`;
  return point.type === 'latest-verified' ? 'verified-good snapshot (backupctl verify tags them)' : 'complete snapshot';
}

export function createRecoveryActivities({ logger, resticBin, env, config }: RecoveryDependencies) {
  const needConfig = (what: string): Config => {
    if (!config) throw failure(FailureType.ConfigInvalid, `${what}: this worker was started without a config (BACKUP_CONFIG)`);
    return config;
  };
  /** This run's drill folder on this host: named from Temporal's run id, not from any input. */
  const runFolder = () => drillRunFolder(needConfig('drill'), runShortId());

  /**
   * The worker's own check of where a recovery writes, before anything is written: a drill only
   * inside this run's folder (made here, with the run's marker, 0700) and into databases with this
   * run's suffix; a recover only into the source's configured folder, repository or bucket.
   */
  const checkRecoveryTarget = async (input: RecoverSourceInput): Promise<void> => {
    const configured = needConfig('recovery').sources[input.source.name];
    const { source: planned } = input;
    if (!configured) throw failure(FailureType.ConfigInvalid, `source ${planned.name} is not in this worker's config: nothing restored`);
    const unsafe = (message: string) => failure(FailureType.RestoreTargetUnsafe, `${message}: refused, nothing written`);
    const folderKind = configured.type === 'files' || configured.type === 'secrets' || configured.type === 'git';
    const databaseKind = configured.type === 'mongodb' || configured.type === 'postgres';
    if (input.mode === 'drill') {
      if (databaseKind && planned.databaseSuffix !== `_drill_${runShortId()}`) throw unsafe(`a drill of ${planned.name} must restore into databases suffixed _drill_${runShortId()} (this run's), not "${planned.databaseSuffix ?? ''}"`);
      if (!folderKind) return;
      const folder = runFolder();
      if (!planned.target || !liesUnder(planned.target, folder) || resolve(planned.target) === resolve(folder)) throw unsafe(`drill target ${planned.target ?? '(none)'} of ${planned.name} is not inside this run's folder ${folder}`);
      await mkdir(folder, { recursive: true, mode: 0o700 });
      const { workflowId, runId } = workflowRunOfActivity();
      const marker = join(folder, RUN_MARKER);
      try {
        await writeFile(marker, `${workflowId}/${runId}\n`, { mode: 0o600, flag: 'wx' });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const owner = (await readFile(marker, 'utf8')).trim();
        if (owner !== `${workflowId}/${runId}`) throw unsafe(`${folder} belongs to another run (${owner})`);
      }
      return;
    }
    if (databaseKind && planned.databaseSuffix) throw unsafe(`recover restores ${planned.name} into its own databases, not "*${planned.databaseSuffix}"`);
    const own = configured.type === 'files' || configured.type === 'secrets' ? configured.root : configured.type === 'git' ? configured.path : configured.type === 's3-bucket' ? configured.bucket : undefined;
    if (own !== undefined && planned.target !== undefined && (configured.type === 's3-bucket' ? planned.target !== own : resolve(planned.target) !== resolve(own))) {
      throw unsafe(`recover writes ${planned.name} only into its configured place ${own}, not ${planned.target}`);
    }
  };
  const files = createRestoreActivities({ logger, resticBin, env });
  const others = createSourceRestore({ logger, resticBin, env });
  return {
    async recoverSource(input: RecoverSourceInput): Promise<RecoveredSource> {
      const activity = Context.current();
      const { source: planned } = input;
      // The source and repository as this worker's config has them (the input only names them).
      const source = needConfig('recovery').sources[planned.name] ?? planned.source;
      const ownRepository = (named: NamedRepository): NamedRepository => ({ name: named.name, repository: needConfig('recovery').repositories[named.name] ?? named.repository });
      let repository = planned.repository ? ownRepository(planned.repository) : undefined;
      const started = Date.now();
      // One details object for this activity's beats and those of the restores it runs (what a retry resumes from).
      const beat: Record<string, unknown> & DatabaseRestoreRecord = { stage: 'restore', source: planned.name };
      const previous = previousRestoreRecord();
      return typed(() => withHeartbeat(() => beat, async () => {
        const base = { source: planned.name, tier: planned.tier, rpoTargetSeconds: planned.rpoSeconds };
        await checkRecoveryTarget(input);
        if (source.type === 's3-bucket') {
          if (input.mode === 'drill') {
            // A drill does not copy a bucket of uploads again: it proves the replica matches the source.
            const found = await verifyReplica({ source, replica: source.replica, env, signal: activity.cancellationSignal });
            if (!found.ok) throw failure(FailureType.RestoreMismatch, `the replica ${source.replica.bucket} of ${planned.name} differs from the source: ${found.differences.slice(0, 5).join('; ')}`);
            return { ...base, target: `replica:${source.replica.bucket}`, finishedAfterSeconds: 0, comparison: { equal: true, differences: [], what: `replica ${source.replica.bucket}: ${found.replica.objects} objects equal to the source` } };
          }
          const result = await others.restoreSource({
            deployment: input.deployment, sourceName: planned.name, source,
            target: planned.target ?? source.bucket, force: input.force, stagingDirectory: input.stagingDirectory,
          });
          return { ...base, target: result.target, comparison: result.comparison, finishedAfterSeconds: (Date.now() - started) / 1000 };
        }
        if (!repository) throw failure(FailureType.ConfigInvalid, `source ${planned.name} is in no policy: no repository holds it`);
        // The policy's first repository does not answer (its storage down, its bucket gone, its key
        // revoked): the restore reads the first copy repository (copyTo) that does.
        let fallback: string | undefined;
        const copies = (planned.copies ?? []).map(ownRepository);
        const unreachable = copies.length > 0 ? await repositoryProblem(repository.repository, env) : undefined;
        if (unreachable) {
          const tried: string[] = [];
          for (const copy of copies) {
            const problem = await repositoryProblem(copy.repository, env);
            if (!problem) {
              fallback = `repository ${repository.name} did not answer (${unreachable}); restored from its copy ${copy.name}`;
              logger.warn({ source: planned.name, primary: repository.name, copy: copy.name, problem: unreachable }, 'restoring from a copy repository: the first repository does not answer');
              repository = copy;
              break;
            }
            tried.push(`${copy.name}: ${problem}`);
          }
          if (!fallback) throw failure(FailureType.StorageUnreachable, `neither repository ${repository.name} (${unreachable}) nor its copies (${tried.join('; ')}) answer: bring one of them back (backupctl doctor names what fails)`);
        }
        beat.repository = repository.name;
        const withFallback = <T extends RecoveredSource>(recovered: T): T => ({ ...recovered, repository: repository!.name, ...(fallback ? { fallback } : {}) });
        const restic = { bin: await resticBin(), repository: repository.repository, env, signal: activity.cancellationSignal };
        const found = await snapshots(restic, { tags: [`deployment=${input.deployment}`, `source=${planned.name}`] });
        // A retry goes on with the snapshot its killed attempt was restoring (a newer one may exist by now).
        const chosen = found.find((s) => previous.snapshot !== undefined && s.id === previous.snapshot) ?? chooseSnapshot(found, input.restorePoint);
        if (!chosen) throw failure(FailureType.SourceMissing, `repository ${repository.name} holds no ${describePoint(input.restorePoint)} of source ${planned.name}: choose another restore point (backupctl snapshots --source ${planned.name} lists them)`);
        const rpo = Math.max(0, Math.round((Date.parse(input.startedAt) - Date.parse(chosen.time)) / 1000));
        const snapshotInfo = { snapshotId: chosen.id, snapshotTime: new Date(chosen.time).toISOString(), rpoSeconds: rpo };
        const common = { deployment: input.deployment, sourceName: planned.name, repositoryName: repository.name, repository: repository.repository, snapshot: chosen.id };
        if (source.type === 'files' || source.type === 'secrets') {
          if (!planned.target) throw failure(FailureType.RestoreTargetUnsafe, `source ${planned.name} has no target folder`);
          let result;
          if (input.mode === 'recover' && resolve(planned.target) === resolve(source.root)) {
            // Back into the source's own folder (which other sources may share): refused where one
            // of its paths still holds data, unless forced.
            const occupied = source.paths.map((p) => resolve(source.root, p)).filter((p) => existsSync(p) && (!statSync(p).isDirectory() || readdirSync(p).length > 0));
            if (occupied.length > 0 && !input.force) throw failure(FailureType.RestoreTargetUnsafe, `recover of ${planned.name}: ${occupied.join(', ')} still hold data: move them away, or recover with --force to write over them`);
            result = await files.restoreFiles({ ...common, source, inPlace: true, confirmInPlace: true });
          } else {
            result = await files.restoreFiles({ ...common, source, target: planned.target });
          }
          return withFallback({ ...base, ...snapshotInfo, target: result.target, finishedAfterSeconds: (Date.now() - started) / 1000, comparison: { equal: true, differences: [], what: `${result.filesRestored} files restored` } });
        }
        if (source.type === 'git') {
          if (!planned.target) throw failure(FailureType.RestoreTargetUnsafe, `source ${planned.name} has no target folder`);
          const result = await others.restoreSource({ ...common, source, target: planned.target, force: input.force, stagingDirectory: input.stagingDirectory });
          return withFallback({ ...base, ...snapshotInfo, target: result.target, comparison: result.comparison, finishedAfterSeconds: (Date.now() - started) / 1000 });
        }
        // Databases: each database of the snapshot into its target name.
        const manifest = await readManifest(restic, chosen);
        const databases = manifest.fingerprint.kind === 'mongodb' ? [...new Set(manifest.fingerprint.collections.map((c) => c.database))]
          : manifest.fingerprint.kind === 'postgres' ? manifest.fingerprint.databases.map((d) => d.database) : [];
        const comparisons: string[] = [];
        const targets: string[] = [];
        // A drill restores into the scratch server (the source's own one when none is configured); a recover into the source's own databases.
        const drillServer = input.mode === 'drill' && isDatabaseSource(source);
        const restoreInto = drillServer ? scratchSource(config, planned.name, source) : source;
        const onServer = drillServer ? scratchServerNote(config, planned.name, source, env) : '';
        // The heartbeat records each database once proven equal (done) and the target being filled
        // (created, see restoreSource): a retry skips the first and replaces the second.
        const done = previous.snapshot === chosen.id ? previous.done ?? [] : [];
        Object.assign(beat, { snapshot: chosen.id, done }, previous.created ? { created: previous.created } : {});
        for (const database of databases) {
          const target = `${database}${planned.databaseSuffix ?? ''}`;
          let record = done.find((d) => d.database === database && d.target === target);
          if (record) {
            logger.info({ source: planned.name, database, target, attempt: activity.info.attempt }, 'database restored and proven equal by an earlier attempt: not restored again');
          } else {
            // A drill's targets carry this run's suffix (checkRecoveryTarget): whatever holds that name
            // is this run's, so one a killed attempt half filled is replaced, not refused.
            const ownDrillTarget = input.mode === 'drill' && planned.databaseSuffix !== undefined && target.endsWith(planned.databaseSuffix);
            const result = await others.restoreSource({ ...common, source: restoreInto, target, database, force: input.force || ownDrillTarget, stagingDirectory: input.stagingDirectory }, beat);
            record = { database, target, what: `${result.comparison?.what ?? target}${onServer}` };
            done.push(record);
            delete beat.created;
          }
          comparisons.push(record.what);
          targets.push(target);
        }
        return withFallback({ ...base, ...snapshotInfo, target: targets.join(', '), finishedAfterSeconds: (Date.now() - started) / 1000, comparison: { equal: true, differences: [], what: `${comparisons.join('; ')}: equal to the fingerprint` } });
      }));
    },

    /**
     * Removes what this drill run made for one source, and nothing else: the names come from the
     * worker's config and the run's own id (from Temporal), never from the input. A folder is
     * `<scratch>/<deployment>-<run>/<source>` (removed only when the run's marker is there), the
     * run folder once nothing else is left in it; databases are those named `*_drill_<run>` (also
     * those of a restore that failed halfway). One that cannot be removed fails, and is retried,
     * never forgotten. Returns what was removed.
     */
    async cleanupDrillTarget(input: { source: RecoverySource }): Promise<string[]> {
      return typed(async () => {
        const cfg = needConfig('drill cleanup');
        const configured = cfg.sources[input.source.name];
        if (!configured || configured.type === 's3-bucket') return [];
        const run = runShortId();
        if (configured.type === 'mongodb' || configured.type === 'postgres') {
          const suffix = `_drill_${run}`;
          // Where this drill restored them: the scratch server, or the source's own when none is configured.
          const scratch = scratchSource(cfg, input.source.name, configured);
          const names = await databasesEndingWith(scratch, suffix, env);
          for (const name of names) await dropScratch(scratch, name, env);
          return names;
        }
        const folder = runFolder();
        const marker = join(folder, RUN_MARKER);
        const { workflowId, runId } = workflowRunOfActivity();
        if (!existsSync(marker)) return []; // this run made no folder on this host
        // Another source's cleanup of this run may remove the marker and the folder meanwhile (ENOENT): nothing left here.
        const gone = (error: unknown) => ((error as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : Promise.reject(error));
        const owner = (await readFile(marker, 'utf8').catch(gone))?.trim();
        if (owner === undefined) return [];
        if (owner !== `${workflowId}/${runId}`) throw failure(FailureType.RestoreTargetUnsafe, `${folder} belongs to another run (${owner}): left as it is`);
        const target = join(folder, input.source.name);
        const removed: string[] = [];
        if (existsSync(target)) {
          await rm(target, { recursive: true, force: true });
          removed.push(target);
        }
        // The run's folder goes with its last source (each source's cleanup checks after its own removal).
        const left = await readdir(folder).catch(gone);
        if (left?.every((entry) => entry === RUN_MARKER)) {
          await rm(marker, { force: true });
          // Two sources' cleanups may both get here: the one whose rmdir succeeds reports the folder.
          if (await rmdir(folder).then(() => true, () => false)) removed.push(folder);
        }
        return removed;
      });
    },

    /**
     * Runs a configured recovery step: the input names it, the worker's config says what it is
     * (command or HTTP call, timeout, the variables it may see). A command runs in its own process
     * group with PATH, HOME, LANG and its step's `env` only; on timeout or cancellation the whole
     * group is stopped (SIGTERM, then SIGKILL after 5 s).
     */
    async runHook(input: { step: Pick<RecoveryStep, 'name'> }): Promise<{ output: string; seconds: number }> {
      const steps = needConfig('recovery step').recovery.steps;
      const step = steps.find((s) => s.name === input.step.name);
      if (!step || step.manual !== undefined) {
        const runnable = steps.filter((s) => s.manual === undefined).map((s) => s.name);
        throw failure(FailureType.StepNotConfigured, `recovery step "${input.step.name}" is not a command or HTTP step of this worker's config (recovery.steps: ${runnable.join(', ') || 'none'}): nothing was run`);
      }
      const timeoutMs = parseDuration(step.timeout) ?? 600_000;
      const started = Date.now();
      const activity = Context.current();
      return withHeartbeat(() => ({ step: step.name }), async () => {
        if (step.http) {
          const { url, method } = step.http;
          const response = await fetch(url, { method, signal: AbortSignal.any([activity.cancellationSignal, AbortSignal.timeout(timeoutMs)]) });
          const body = (await response.text()).slice(0, 2000);
          if (!response.ok) throw failure(FailureType.StorageUnreachable, `step ${step.name}: ${method} ${url} answered ${response.status}: ${body.slice(0, 300)}`);
          return { output: scrubSecrets(`${response.status} ${body}`), seconds: (Date.now() - started) / 1000 };
        }
        const command = step.run!;
        const output = await new Promise<string>((resolve, reject) => {
          const child = spawn('bash', ['-c', command], { env: hookEnvironment(env, step.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
          let text = '';
          let stoppedBy: string | undefined;
          let killer: NodeJS.Timeout | undefined;
          const stop = (why: string) => {
            if (stoppedBy) return;
            stoppedBy = why;
            killGroup(child.pid, 'SIGTERM');
            killer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), 5_000);
          };
          const timer = setTimeout(() => stop(`its timeout of ${Math.round(timeoutMs / 1000)} s (recovery.steps[${step.name}].timeout)`), timeoutMs);
          const onCancel = () => stop('cancellation');
          activity.cancellationSignal.addEventListener('abort', onCancel);
          const keep = (chunk: Buffer) => {
            text = (text + chunk.toString('utf8')).slice(-8000);
          };
          child.stdout.on('data', keep);
          child.stderr.on('data', keep);
          child.on('error', (error) => reject(error));
          child.on('close', (code, signal) => {
            clearTimeout(timer);
            activity.cancellationSignal.removeEventListener('abort', onCancel);
            // Whatever the command left running in its group goes with it once it was stopped.
            if (stoppedBy) {
              killGroup(child.pid, 'SIGKILL');
              if (killer) clearTimeout(killer);
            }
            const kept = scrubSecrets(text);
            if (stoppedBy === 'cancellation') reject(activity.cancellationSignal.reason ?? new Error('cancelled'));
            else if (code === 0 && !stoppedBy) resolve(kept);
            else reject(failure(FailureType.ConfigInvalid, `step ${step.name}: \`${command}\` ${stoppedBy ? `was stopped (${signal ?? 'signal'}) after ${stoppedBy}` : `exited ${code}${signal ? ` (${signal})` : ''}`}: ${kept.trim().split('\n').slice(-5).join(' | ')}`));
          });
        });
        return { output, seconds: (Date.now() - started) / 1000 };
      }, { detectStalls: false });
    },

    /** The application's health URL from the worker's config (recovery.healthUrl); the input's is ignored. */
    async checkHealth(_input: { url?: string }): Promise<{ status: number }> {
      const url = needConfig('health check').recovery.healthUrl;
      if (!url) throw failure(FailureType.ConfigInvalid, 'this worker\'s config has no recovery.healthUrl: nothing to check');
      const response = await fetch(url, { signal: AbortSignal.timeout(10_000) }).catch((error: unknown) => {
        throw failure(FailureType.StorageUnreachable, `the application's health URL ${url} did not answer: ${(error as Error).message}`);
      });
      if (!response.ok) throw failure(FailureType.StorageUnreachable, `the application's health URL ${url} answered ${response.status}`);
      return { status: response.status };
    },
  };
}
