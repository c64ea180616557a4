/**
 * The two restic commands a PostgreSQL source needs, with the database's connection added to
 * restic's environment (pg_dump under `--stdin-from-command` finds PGPASSWORD there, never on a
 * command line):
 *
 *   restic backup --stdin-from-command --stdin-filename <db>.dump -- pg_dump -Fc … --snapshot <id>
 *   restic dump <snapshot> /<db>.dump | pg_restore
 *
 * A pg_dump that exits non-zero makes restic fail and save no snapshot; its "subprocess
 * pg_dump: …" lines on restic's stderr say why, and become the same typed errors as the driver's.
 */
import { spawn } from 'node:child_process';
import { Transform } from 'node:stream';
import type { Repository } from '../config/schema';
import { scrubSecrets } from '../logging/logger';
import { backup, type BackupStatus, type BackupSummary, type ResticContext } from '../restic/commands';
import { classifyResticFailure, repositoryEnvironment, repositoryOptions, ResticError } from '../restic/restic';
import { watchChild } from '../activities/heartbeat';
import { FailureType } from '../shared/failures';
import { classifyToolStderr, pgToolEnv, PostgresSourceError, redact, withClient } from './postgres-connection';
import { dumpFileName, pgDumpArgs, restorePostgres } from './postgres';

export interface ResticTarget {
  bin: string;
  repository: Repository;
  /** Where the repository's secrets (passwordEnv…) are read from. Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface PgDumpBackupResult {
  snapshotId: string;
  /** Bytes of the dump restic read from pg_dump. */
  bytes: number;
  filename: string;
  summary: BackupSummary;
}

/**
 * One database dumped by pg_dump -Fc straight into a restic snapshot holding `/<db>.dump`. With
 * `snapshot` (openConsistentRead's), pg_dump reads exactly that transaction's data. A pg_dump
 * that fails (cannot connect, killed, terminated) makes restic exit non-zero and save nothing:
 * the promise rejects with a PostgresSourceError when pg_dump's message says why, else restic's.
 */
export async function backupDatabaseWithRestic(opts: {
  restic: ResticTarget;
  url: string;
  database: string;
  snapshot?: string;
  pgDumpBin?: string;
  host?: string;
  tags?: string[];
  /** restic's --time ("YYYY-MM-DD HH:MM:SS", UTC): every snapshot of one run gets the same. */
  time?: string;
  signal?: AbortSignal;
  onStart?: (pid: number) => void;
  onStatus?: (status: BackupStatus) => void;
}): Promise<PgDumpBackupResult> {
  const filename = dumpFileName(opts.database);
  const context: ResticContext = { bin: opts.restic.bin, repository: opts.restic.repository, env: opts.restic.env, signal: opts.signal };
  try {
    const { summary } = await backup(context, {
      paths: [], cwd: '/', host: opts.host ?? 'localhost', tags: opts.tags ?? [], time: opts.time, onStart: opts.onStart, onStatus: opts.onStatus,
      // The connection reaches pg_dump through restic's environment, never its command line.
      stdinCommand: { command: pgDumpArgs(opts.database, { snapshot: opts.snapshot, pgDumpBin: opts.pgDumpBin }), filename, env: pgToolEnv(opts.url, {}) },
    });
    return { snapshotId: summary.snapshot_id, bytes: summary.total_bytes_processed, filename, summary };
  } catch (error) {
    throw await explainPgDumpFailure(error, opts.url, opts.database);
  }
}

/**
 * Why restic failed while running pg_dump. Its "subprocess pg_dump: …" lines become the same
 * typed errors as the driver's; restic relays them asynchronously and sometimes exits before the
 * last lines are out: when they say nothing, a connection of our own tells why pg_dump could not.
 * (restic's own classification would take pg_dump's "SSL SYSCALL error: EOF" for an unreachable
 * storage.)
 */
export async function explainPgDumpFailure(error: unknown, url: string, database: string): Promise<Error> {
  if (!(error instanceof ResticError)) return error instanceof Error ? error : new Error(String(error));
  const text = scrubSecrets(redact(error.stderr, url));
  const pgDumpLines = text.split('\n').filter((l) => /subprocess .*pg_dump/.test(l)).join('\n');
  const classified = pgDumpLines ? classifyToolStderr(pgDumpLines, url, database) : undefined;
  if (classified) return classified;
  const commandFailed = /command failed: (exit status \d+|signal: \w+)/.exec(text);
  if (!commandFailed) return error;
  try {
    await withClient(url, database, async () => undefined);
  } catch (connection) {
    return connection as Error;
  }
  const words = pgDumpLines.split('\n').map((l) => l.replace(/^subprocess \S+: /, '').trim()).filter(Boolean).join(' | ');
  return new ResticError(`pg_dump of database "${database}" failed (${commandFailed[1]}), restic saved no snapshot: ${words || 'pg_dump\'s message did not reach restic\'s output'}`, FailureType.ResticFailed, error.exitCode, error.stderr);
}

/**
 * `restic dump <snapshot> /<file>` streamed into restorePostgres (the same target rules: created
 * if missing, refused if not empty unless `force`). A restic failure wins over pg_restore's
 * (which then only saw a truncated archive).
 */
export async function restoreDatabaseFromRestic(opts: {
  restic: ResticTarget;
  snapshotId: string;
  /** The file inside the snapshot; default `/<sourceDatabase>.dump`. */
  path?: string;
  sourceDatabase: string;
  url: string;
  database: string;
  force?: boolean;
  signal?: AbortSignal;
  pgRestoreBin?: string;
}): Promise<{ database: string; warnings: string[] }> {
  const path = opts.path ?? `/${dumpFileName(opts.sourceDatabase)}`;
  const env = repositoryEnvironment(opts.restic.repository, opts.restic.env);
  const child = spawn(opts.restic.bin, [...repositoryOptions(opts.restic.repository), 'dump', '--no-lock', opts.snapshotId, path], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  // The dump flowing into pg_restore is the step's progress; a stall stops pg_restore, then restic below.
  const watch = watchChild('restic dump | pg_restore', opts.signal);
  const dump = child.stdout.pipe(new Transform({
    transform(chunk: Buffer, _encoding, done) {
      watch.progress();
      done(null, chunk);
    },
  }));
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-64 * 1024);
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code));
  }).finally(() => watch.done());
  try {
    const restored = await restorePostgres({ url: opts.url, database: opts.database, dump, force: opts.force, signal: watch.signal, pgRestoreBin: opts.pgRestoreBin });
    // What pg_restore did not read (the archive's tail) is drained, so restic can finish and say how it ended.
    dump.resume();
    const code = await exited;
    if (code !== 0) throw classifyResticFailure('dump', code, scrubSecrets(stderr), opts.restic.repository);
    return restored;
  } catch (error) {
    // pg_restore failed: if restic failed first (wrong password, missing snapshot), pg_restore only
    // saw a short archive and restic's reason is the real one. A target refused before any
    // reading (PostgresSourceError) is the reason itself; restic is then stopped by us.
    if (!(error instanceof PostgresSourceError)) {
      const code = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2000).unref())]);
      if (code !== undefined && code !== 0) throw classifyResticFailure('dump', code, scrubSecrets(stderr), opts.restic.repository);
    }
    child.kill('SIGINT');
    child.kill('SIGCONT'); // a stopped restic (SIGSTOP) takes the SIGINT only once woken
    // Nobody reads restic's output any more: blocked writing into a full pipe, restic ignores the
    // SIGINT for ever. Closing our end ends that write (EPIPE); SIGKILL if it still does not exit.
    child.stdout.destroy();
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited.finally(() => clearTimeout(killer));
    throw error;
  }
}
