/**
 * The steps of a recovery or a drill: restore a source at a restore point into its target (and
 * prove it with the fingerprint), run a hook (a shell command or an HTTP call), check the
 * application's health URL, and remove what a drill created.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Context } from '@temporalio/activity';
import type { Logger } from '../logging/logger';
import { scrubSecrets } from '../logging/logger';
import { snapshots } from '../restic/commands';
import { FailureType } from '../shared/failures';
import type { RecoveredSource, RecoverySource, RecoveryStep, RestorePoint } from '../shared/recovery-types';
import { verifyReplica } from '../sources/bucket';
import { failure, typed } from './failures';
import { withHeartbeat } from './heartbeat';
import { createRestoreActivities } from './restore';
import { chooseSnapshot, createSourceRestoreActivities, readManifest } from './source-restore';
import { databasesEndingWith, dropScratch } from './verify';

export interface RecoveryDependencies {
  logger: Logger;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
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

export function createRecoveryActivities({ logger, resticBin, env }: RecoveryDependencies) {
  const files = createRestoreActivities({ logger, resticBin, env });
  const others = createSourceRestoreActivities({ logger, resticBin, env });
  return {
    async recoverSource(input: RecoverSourceInput): Promise<RecoveredSource> {
      const activity = Context.current();
      const { source: planned } = input;
      const { source } = planned;
      const started = Date.now();
      return typed(() => withHeartbeat(() => ({ stage: 'restore', source: planned.name }), async () => {
        const base = { source: planned.name, tier: planned.tier, rpoTargetSeconds: planned.rpoSeconds };
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
        if (!planned.repository) throw failure(FailureType.ConfigInvalid, `source ${planned.name} is in no policy: no repository holds it`);
        const restic = { bin: await resticBin(), repository: planned.repository.repository, env, signal: activity.cancellationSignal };
        const chosen = chooseSnapshot(await snapshots(restic, { tags: [`deployment=${input.deployment}`, `source=${planned.name}`] }), input.restorePoint);
        if (!chosen) throw failure(FailureType.SourceMissing, `repository ${planned.repository.name} holds no ${describePoint(input.restorePoint)} of source ${planned.name}: choose another restore point (backupctl snapshots --source ${planned.name} lists them)`);
        const rpo = Math.max(0, Math.round((Date.parse(input.startedAt) - Date.parse(chosen.time)) / 1000));
        const snapshotInfo = { snapshotId: chosen.id, snapshotTime: new Date(chosen.time).toISOString(), rpoSeconds: rpo };
        const common = { deployment: input.deployment, sourceName: planned.name, repositoryName: planned.repository.name, repository: planned.repository.repository, snapshot: chosen.id };
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
          return { ...base, ...snapshotInfo, target: result.target, finishedAfterSeconds: (Date.now() - started) / 1000, comparison: { equal: true, differences: [], what: `${result.filesRestored} files restored` } };
        }
        if (source.type === 'git') {
          if (!planned.target) throw failure(FailureType.RestoreTargetUnsafe, `source ${planned.name} has no target folder`);
          const result = await others.restoreSource({ ...common, source, target: planned.target, force: input.force, stagingDirectory: input.stagingDirectory });
          return { ...base, ...snapshotInfo, target: result.target, comparison: result.comparison, finishedAfterSeconds: (Date.now() - started) / 1000 };
        }
        // Databases: each database of the snapshot into its target name.
        const manifest = await readManifest(restic, chosen);
        const databases = manifest.fingerprint.kind === 'mongodb' ? [...new Set(manifest.fingerprint.collections.map((c) => c.database))]
          : manifest.fingerprint.kind === 'postgres' ? manifest.fingerprint.databases.map((d) => d.database) : [];
        const comparisons: string[] = [];
        const targets: string[] = [];
        for (const database of databases) {
          const target = `${database}${planned.databaseSuffix ?? ''}`;
          const result = await others.restoreSource({ ...common, source, target, database, force: input.force, stagingDirectory: input.stagingDirectory });
          comparisons.push(result.comparison?.what ?? target);
          targets.push(target);
        }
        return { ...base, ...snapshotInfo, target: targets.join(', '), finishedAfterSeconds: (Date.now() - started) / 1000, comparison: { equal: true, differences: [], what: `${comparisons.join('; ')}: equal to the fingerprint` } };
      }));
    },

    /**
     * Removes what a drill made for one source: its scratch folder, or every database named with
     * the drill's suffix (also those of a restore that failed halfway). One that cannot be removed
     * fails, and is retried, never forgotten. Returns what was removed.
     */
    async cleanupDrillTarget(input: { source: RecoverySource }): Promise<string[]> {
      return typed(async () => {
        const { source: planned } = input;
        if (planned.source.type === 's3-bucket') return [];
        if (planned.source.type === 'mongodb' || planned.source.type === 'postgres') {
          const suffix = planned.databaseSuffix;
          if (!suffix || !suffix.includes('_drill_')) return []; // never a production name
          const names = await databasesEndingWith(planned.source, suffix, env);
          for (const name of names) await dropScratch(planned.source, name, env);
          return names;
        }
        if (!planned.target) return [];
        await rm(planned.target, { recursive: true, force: true });
        return [planned.target];
      });
    },

    async runHook(input: { step: RecoveryStep }): Promise<{ output: string; seconds: number }> {
      const { step } = input;
      const started = Date.now();
      const activity = Context.current();
      return withHeartbeat(() => ({ step: step.name }), async () => {
        if (step.kind === 'http') {
          const response = await fetch(step.url!, { method: step.method ?? 'POST', signal: AbortSignal.any([activity.cancellationSignal, AbortSignal.timeout(step.timeoutSeconds * 1000)]) });
          const body = (await response.text()).slice(0, 2000);
          if (!response.ok) throw failure(FailureType.StorageUnreachable, `step ${step.name}: ${step.method ?? 'POST'} ${step.url} answered ${response.status}: ${body.slice(0, 300)}`);
          return { output: `${response.status} ${body}`, seconds: (Date.now() - started) / 1000 };
        }
        const output = await new Promise<string>((resolve, reject) => {
          const child = spawn('bash', ['-c', step.command!], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: step.timeoutSeconds * 1000, killSignal: 'SIGTERM', signal: activity.cancellationSignal });
          let text = '';
          const keep = (chunk: Buffer) => {
            text = (text + chunk.toString('utf8')).slice(-8000);
          };
          child.stdout.on('data', keep);
          child.stderr.on('data', keep);
          child.on('error', (error) => reject(error));
          child.on('close', (code, signal) => {
            const kept = scrubSecrets(text);
            if (code === 0) resolve(kept);
            else reject(failure(FailureType.ConfigInvalid, `step ${step.name}: \`${step.command}\` ${signal ? `was stopped by ${signal} (timeout ${step.timeoutSeconds} s?)` : `exited ${code}`}: ${kept.trim().split('\n').slice(-5).join(' | ')}`));
          });
        });
        return { output, seconds: (Date.now() - started) / 1000 };
      });
    },

    async checkHealth(input: { url: string }): Promise<{ status: number }> {
      const response = await fetch(input.url, { signal: AbortSignal.timeout(10_000) }).catch((error: unknown) => {
        throw failure(FailureType.StorageUnreachable, `the application's health URL ${input.url} did not answer: ${(error as Error).message}`);
      });
      if (!response.ok) throw failure(FailureType.StorageUnreachable, `the application's health URL ${input.url} answered ${response.status}`);
      return { status: response.status };
    },
  };
}
