/**
 * Verification restores: a checksum is not a restore. Each repository's packs are read a group at
 * a time (`restic check --read-data-subset n/t`), and each source's newest snapshot is restored
 * into a scratch target, compared (files: restic's --verify and the manifest's totals; databases
 * and git: the fingerprint taken at backup time; a bucket: its replica against the source), then
 * removed. A snapshot that passes is tagged `verified` and `last-verified` (moved off the
 * source's older snapshots), which retention keeps.
 */
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { MongoClient } from '../sources/mongodb-driver';
import type { Config, Repository, Source } from '../config/schema';
import { isDatabaseSource, scratchServerNote, scratchSource } from '../config/scratch';
import type { Logger } from '../logging/logger';
import { readSnapshotFile, restore, snapshots, tag, tagValue, type ResticContext, type Snapshot } from '../restic/commands';
import { runRestic } from '../restic/restic';
import { FailureType } from '../shared/failures';
import { LAST_VERIFIED_TAG, PART_TAG_KEY, VERIFIED_TAG, type RepositoryCheck, type SourceVerification } from '../shared/backup-types';
import { LEDGER, ledgerWorkflowId, type LastSuccessfulBackup, type LastVerified } from '../shared/ledger';
import { verifyReplica } from '../sources/bucket';
import { withClient } from '../sources/postgres-connection';
import { quoteIdent } from '../sources/postgres';
import { withHeartbeat, yieldToEventLoop } from './heartbeat';
import { optionalSecret } from './secrets';
import { MANIFEST_FILE, type BackupManifest } from './manifest';
import { chooseSnapshot, createSourceRestoreActivities, readManifest } from './source-restore';

export interface VerifyDependencies {
  logger: Logger;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  temporalClient: () => Promise<Client>;
  /** The worker's config: its `scratch` servers say where test restores of databases go. */
  config?: Config;
}

export interface VerifySourceInput {
  deployment: string;
  sourceName: string;
  source: Source;
  repositoryName?: string;
  repository?: Repository;
  stagingDirectory: string;
  testRestore: boolean;
  rpoSeconds?: number;
  /** The snapshot the ledger holds as the source's last success in this repository: it must exist. */
  expectedSnapshot?: string;
  /** Short, unique to the run: names the scratch targets. */
  runId: string;
}

const MAX_PROBLEMS = 20;

/** Files and bytes under a folder (a restored tree), without following links. */
async function totals(folder: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  let seen = 0;
  const walk = async (path: string): Promise<void> => {
    const info = await lstat(path);
    if (info.isDirectory()) {
      for (const entry of await readdir(path)) await walk(join(path, entry));
    } else if (info.isFile()) {
      files += 1;
      bytes += info.size;
    }
    if (++seen % 500 === 0) await yieldToEventLoop();
  };
  await walk(folder);
  return { files, bytes };
}

/**
 * What a restored files snapshot must hold under the source's paths. restic's own summary in the
 * snapshot counts every file it stored, the manifest beside the tree included, so the manifest's
 * one file and its bytes come off; snapshots from before restic 0.17 or from the tree walk's days
 * fall back to the manifest's totals.
 */
export function expectedTotals(snapshot: Pick<Snapshot, 'summary'>, manifest: Pick<BackupManifest, 'totals'>, manifestFile: { files: number; bytes: number }): { files: number; bytes: number; from: string } | undefined {
  const summary = snapshot.summary;
  if (summary?.total_files_processed !== undefined && summary.total_bytes_processed !== undefined) {
    return { files: summary.total_files_processed - manifestFile.files, bytes: summary.total_bytes_processed - manifestFile.bytes, from: 'restic\'s summary' };
  }
  return manifest.totals ? { files: manifest.totals.files, bytes: manifest.totals.bytes, from: 'the manifest' } : undefined;
}

/** A snapshot is the one the ledger names if it has its id, or was rewritten from it by `restic tag`. */
function isSnapshot(snapshot: Snapshot & { original?: string }, id: string): boolean {
  return snapshot.id === id || snapshot.id.startsWith(id) || snapshot.original === id;
}

export function createVerifyActivities({ logger, resticBin, env, temporalClient, config }: VerifyDependencies) {
  const restores = createSourceRestoreActivities({ logger, resticBin, env });
  return {
    /** What the ledger remembers of earlier verifications (the last group read per repository). */
    async verificationState(input: { deployment: string }): Promise<LastVerified> {
      const client = await temporalClient();
      try {
        return await client.workflow.getHandle(ledgerWorkflowId(input.deployment)).query<LastVerified>(LEDGER.lastVerifiedQuery);
      } catch {
        return { sources: {}, repositories: {} }; // no ledger yet, or one from before verification
      }
    },

    /** The ledger's last success per "source/repository": verification checks that each still exists. */
    async lastSuccesses(input: { deployment: string }): Promise<Record<string, string>> {
      const client = await temporalClient();
      try {
        const ledger = await client.workflow.getHandle(ledgerWorkflowId(input.deployment)).query<LastSuccessfulBackup>(LEDGER.lastSuccessfulBackupQuery);
        return Object.fromEntries(Object.entries(ledger.repositories).map(([key, record]) => [key, record.snapshotId]));
      } catch {
        return {};
      }
    },

    async checkRepositoryData(input: { name: string; repository: Repository; group: number; groups: number }): Promise<RepositoryCheck> {
      const activity = Context.current();
      return withHeartbeat(() => ({ stage: 'check', group: input.group, groups: input.groups }), async () => {
        const started = Date.now();
        const run = await runRestic(['check', '--read-data-subset', `${input.group}/${input.groups}`], {
          bin: await resticBin(), repository: input.repository, env, signal: activity.cancellationSignal, acceptExitCodes: [1],
        });
        const text = `${run.stdout}\n${run.stderr}`;
        const problems = run.exitCode === 0 ? [] : text.split('\n').map((l) => l.trim())
          .filter((l) => l && /error|does not match|not found|missing|damaged|invalid|fatal|unreferenced/i.test(l) && !/^no errors were found$/i.test(l))
          .slice(0, MAX_PROBLEMS);
        if (run.exitCode !== 0 && problems.length === 0) problems.push(`restic check exited ${run.exitCode}: ${text.trim().split('\n').slice(-3).join(' | ')}`);
        if (problems.length > 0) logger.error({ repository: input.name, group: input.group, groups: input.groups, problems }, 'repository check found damage');
        return { repository: input.name, group: input.group, groups: input.groups, ok: run.exitCode === 0, problems, durationSeconds: (Date.now() - started) / 1000 };
      });
    },

    async verifySource(input: VerifySourceInput): Promise<SourceVerification> {
      const activity = Context.current();
      const progress: Record<string, unknown> = { stage: 'listing', source: input.sourceName };
      return withHeartbeat(() => progress, async () => {
        const { source } = input;
        const result: SourceVerification = { source: input.sourceName, repository: input.repositoryName ?? '', ok: false, problems: [] };
        const fail = (problem: string): SourceVerification => {
          result.problems.push(problem);
          result.ok = false;
          return result;
        };
        if (source.type === 's3-bucket') {
          result.repository = `replica:${source.replica.bucket}`;
          progress.stage = 'comparing the replica';
          const found = await verifyReplica({ source, replica: source.replica, env, signal: activity.cancellationSignal });
          result.ok = found.ok;
          result.problems.push(...found.differences.slice(0, MAX_PROBLEMS));
          result.checked = `${found.replica.objects} objects, ${found.replica.bytes} bytes in the replica against ${found.source.objects} in the source`;
          return result;
        }
        if (!input.repository || !input.repositoryName) return fail('no repository holds this source (it is in no policy)');
        const restic: ResticContext = { bin: await resticBin(), repository: input.repository, env, signal: activity.cancellationSignal };
        const all = (await snapshots(restic, { tags: [`deployment=${input.deployment}`, `source=${input.sourceName}`] })) as (Snapshot & { original?: string })[];
        if (input.expectedSnapshot && !all.some((s) => isSnapshot(s, input.expectedSnapshot!))) {
          result.problems.push(`snapshot ${input.expectedSnapshot.slice(0, 8)}, the last success the ledger recorded, is missing from repository ${input.repositoryName} (deleted or lost: its data is no longer restorable)`);
        }
        // The newest complete snapshot (for PostgreSQL: the manifest's, which names the database snapshots).
        const chosen = chooseSnapshot(all, { type: 'latest' });
        if (!chosen) return fail(`repository ${input.repositoryName} holds no complete snapshot of ${input.sourceName}`);
        result.snapshotId = chosen.id;
        result.snapshotTime = new Date(chosen.time).toISOString();
        result.ageSeconds = Math.max(0, Math.round((Date.now() - Date.parse(chosen.time)) / 1000));
        if (input.rpoSeconds !== undefined) {
          result.rpoSeconds = input.rpoSeconds;
          result.fresh = result.ageSeconds <= input.rpoSeconds;
          if (!result.fresh) result.problems.push(`the newest snapshot is ${Math.round(result.ageSeconds / 3600)} h old, beyond the RPO of ${Math.round(input.rpoSeconds / 3600)} h`);
        } else {
          result.fresh = true;
        }
        if (!input.testRestore) {
          result.ok = result.problems.length === 0;
          return result;
        }

        progress.stage = 'test restore';
        const scratch = resolve(input.stagingDirectory, 'verify', `${input.deployment}-${input.sourceName}-${input.runId}`);
        try {
          if (source.type === 'files' || source.type === 'secrets') {
            await rm(scratch, { recursive: true, force: true });
            await mkdir(scratch, { recursive: true, mode: 0o700 });
            // --verify reads every restored file back against the snapshot's hashes.
            await whileLocked(() => restore(restic, { snapshotId: chosen.id, target: scratch, verify: true }), progress);
            const manifestPath = chosen.paths.find((p) => p.endsWith(`/${MANIFEST_FILE}`));
            const manifest = manifestPath ? JSON.parse(await readSnapshotFile(restic, chosen.id, manifestPath)) as BackupManifest : undefined;
            if (!manifest) return fail(`snapshot ${chosen.short_id} has no ${MANIFEST_FILE}`);
            const restored = { files: 0, bytes: 0 };
            for (const path of source.paths) {
              const found = await totals(join(scratch, resolve(source.root, path))).catch(() => ({ files: 0, bytes: 0 }));
              restored.files += found.files;
              restored.bytes += found.bytes;
            }
            const expected = expectedTotals(chosen, manifest, await totals(join(scratch, manifestPath!)).catch(() => ({ files: 0, bytes: 0 })));
            if (!expected) return fail(`snapshot ${chosen.short_id} carries no file count: neither restic's summary (restic 0.17 or later writes it) nor the manifest's totals`);
            if (restored.files !== expected.files || restored.bytes !== expected.bytes) {
              result.problems.push(`restored ${restored.files} files, ${restored.bytes} bytes; ${expected.from} of snapshot ${chosen.short_id} says ${expected.files} files, ${expected.bytes} bytes`);
            }
            result.checked = `${restored.files} files, ${restored.bytes} bytes restored, read back by restic --verify and counted against ${expected.from}`;
          } else {
            const manifest = await readManifest(restic, chosen);
            const databases = manifest.fingerprint.kind === 'mongodb' ? [...new Set(manifest.fingerprint.collections.map((c) => c.database))]
              : manifest.fingerprint.kind === 'postgres' ? manifest.fingerprint.databases.map((d) => d.database) : [undefined];
            const checked: string[] = [];
            // Databases go to the scratch server (the source's own one when none is configured); never to production when one is.
            const scratchAt = isDatabaseSource(source) ? scratchSource(config, input.sourceName, source) : source;
            const onServer = isDatabaseSource(source) ? scratchServerNote(config, input.sourceName, source, env) : '';
            for (const database of databases) {
              const target = database === undefined ? scratch : `${database}_verify_${input.runId}`.slice(0, 63);
              try {
                const restored = await whileLocked(() => restores.restoreSource({
                  deployment: input.deployment, sourceName: input.sourceName, source: scratchAt, repositoryName: input.repositoryName, repository: input.repository,
                  snapshot: chosen.id, target, ...(database !== undefined ? { database } : {}), stagingDirectory: input.stagingDirectory,
                }), progress);
                checked.push(`${restored.comparison?.what ?? target}${onServer}`);
              } catch (error) {
                result.problems.push(`test restore of snapshot ${chosen.short_id}${database ? ` (${database})` : ''}: ${(error as Error).message}`);
              } finally {
                await dropScratch(scratchAt, target, env).catch((error: unknown) => {
                  result.problems.push(`the scratch target ${target} could not be removed: ${(error as Error).message}`);
                });
              }
            }
            result.checked = `${checked.join('; ')}: equal to the fingerprint taken at backup time`;
          }
        } catch (error) {
          result.problems.push(`test restore of snapshot ${chosen.short_id} failed: ${(error as Error).message}`);
        } finally {
          await rm(scratch, { recursive: true, force: true });
        }
        result.ok = result.problems.length === 0;
        if (result.ok) {
          // The run's snapshots (a PostgreSQL run's database snapshots were restored with its
          // manifest) become `verified` and `last-verified`; the source's older ones on the same
          // host lose `last-verified`: retention keeps what carries it with no listing of its own.
          // restic tag rewrites a snapshot under a new id (its `original` keeps the old one).
          // Tagging takes restic's exclusive lock, which the other sources' test restores and the
          // data check hold shared meanwhile: wait for them rather than fail the verification.
          const runTag = chosen.tags?.find((t) => t.startsWith('run='));
          const run = tagValue(chosen, PART_TAG_KEY) === 'manifest' && runTag ? all.filter((s) => s.tags?.includes(runTag)) : [chosen];
          const untagged = run.filter((s) => !s.tags?.includes(VERIFIED_TAG) || !s.tags?.includes(LAST_VERIFIED_TAG)).map((s) => s.id);
          const stale = all.filter((s) => !run.includes(s) && s.hostname === chosen.hostname && s.tags?.includes(LAST_VERIFIED_TAG)).map((s) => s.id);
          // Added before removed: an interruption between leaves two carriers (retention keeps both once), never none.
          if (untagged.length > 0) await whileLocked(() => tag(restic, untagged, { add: [VERIFIED_TAG, LAST_VERIFIED_TAG] }), progress);
          if (stale.length > 0) await whileLocked(() => tag(restic, stale, { remove: [LAST_VERIFIED_TAG] }), progress);
        }
        logger.info({ source: input.sourceName, repository: input.repositoryName, snapshot: chosen.short_id, ok: result.ok, problems: result.problems }, 'source verified');
        return result;
      });
    },
  };
}

/**
 * Runs a restic step again while another restic holds a lock it conflicts with: this run's own
 * data check, the other sources' test restores (against a tag's exclusive lock) or a backup's
 * retention. Up to about 10 minutes, then the lock is the finding.
 */
async function whileLocked<T>(step: () => Promise<T>, progress: Record<string, unknown>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await step();
    } catch (error) {
      // A restic error carries its type; a database restore reports restic's message inside its own.
      const locked = (error as { failureType?: string } | undefined)?.failureType === FailureType.RepositoryLocked
        || /is already locked exclusively/.test(error instanceof Error ? error.message : '');
      if (!locked || attempt >= 40) throw error;
      progress.stage = 'waiting for the repository lock (a data check, a test restore or retention holds it)';
      await new Promise((r) => setTimeout(r, Math.min(15_000, 500 * attempt)));
    }
  }
}

/** The databases of a source's server whose name ends with `suffix` (a drill's scratch databases). */
export async function databasesEndingWith(source: Source, suffix: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  if (source.type === 'mongodb') {
    const uri = optionalSecret(env, source.uriEnv);
    if (!uri) return [];
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
    try {
      return (await client.db('admin').admin().listDatabases({ nameOnly: true })).databases.map((d) => d.name).filter((n) => n.endsWith(suffix));
    } finally {
      await client.close();
    }
  }
  if (source.type === 'postgres') {
    const url = optionalSecret(env, source.urlEnv);
    if (!url) return [];
    return withClient(url, 'postgres', async (client) => (await client.query<{ datname: string }>('select datname from pg_database')).rows.map((r) => r.datname).filter((n) => n.endsWith(suffix)));
  }
  return [];
}

/** Removes a scratch database (or folder) a test restore made. */
export async function dropScratch(source: Source, target: string, env: NodeJS.ProcessEnv): Promise<void> {
  if (source.type === 'mongodb') {
    const uri = optionalSecret(env, source.uriEnv);
    if (!uri) return;
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
    try {
      await client.db(target).dropDatabase();
    } finally {
      await client.close();
    }
  } else if (source.type === 'postgres') {
    const url = optionalSecret(env, source.urlEnv);
    if (!url) return;
    await withClient(url, 'postgres', async (client) => {
      await client.query(`drop database if exists ${quoteIdent(target)} with (force)`);
    });
  } else {
    await rm(target, { recursive: true, force: true });
  }
}
