/**
 * The two restic commands a PostgreSQL source needs, with the database's connection in restic's
 * environment (src/restic/restic.ts's runRestic gives restic only the repository's variables,
 * so pg_dump under `--stdin-from-command` would not find PGPASSWORD there; these spawn restic
 * themselves with both):
 *
 *   restic backup --stdin-from-command --stdin-filename <db>.dump -- pg_dump -Fc … --snapshot <id>
 *   restic dump <snapshot> /<db>.dump | pg_restore
 *
 * A pg_dump that exits non-zero makes restic fail and save no snapshot; its "subprocess
 * pg_dump: …" lines on restic's stderr say why, and become the same typed errors as the driver's.
 */
import { spawn } from 'node:child_process';
import type { Repository } from '../config/schema';
import { scrubSecrets } from '../logging/logger';
import { classifyResticFailure, repositoryEnvironment, repositoryOptions } from '../restic/restic';
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
  signal?: AbortSignal;
  onStart?: (pid: number) => void;
}): Promise<PgDumpBackupResult> {
  const filename = dumpFileName(opts.database);
  const argv = [
    ...repositoryOptions(opts.restic.repository),
    'backup', '--json', ...(opts.host ? ['--host', opts.host] : []), ...(opts.tags ?? []).flatMap((t) => ['--tag', t]),
    '--stdin-filename', filename, '--stdin-from-command', '--', ...pgDumpArgs(opts.database, { snapshot: opts.snapshot, pgDumpBin: opts.pgDumpBin }),
  ];
  const env = { ...repositoryEnvironment(opts.restic.repository, opts.restic.env), ...pgToolEnv(opts.url, {}) };
  const { stdout, stderr, code } = await runChild(opts.restic.bin, argv, env, opts.signal, opts.onStart);
  const summary = stdout.split('\n').map(parseJsonLine).find((m) => m?.message_type === 'summary');
  if (code === 0 && summary && typeof summary.snapshot_id === 'string') {
    return { snapshotId: summary.snapshot_id, bytes: Number(summary.total_bytes_processed ?? 0), filename };
  }
  const text = scrubSecrets(redact(stderr, opts.url));
  const pgDumpLines = text.split('\n').filter((l) => /subprocess .*pg_dump/.test(l)).join('\n');
  const classified = pgDumpLines ? classifyToolStderr(pgDumpLines, opts.url, opts.database) : undefined;
  if (classified) throw classified;
  const commandFailed = /command failed: (exit status \d+|signal: \w+)/.exec(text);
  if (commandFailed) {
    // restic relays pg_dump's stderr asynchronously and sometimes exits before the last lines
    // are out: when they say nothing, a connection of our own tells why pg_dump could not.
    await withClient(opts.url, opts.database, async () => undefined);
    const words = pgDumpLines.split('\n').map((l) => l.replace(/^subprocess \S+: /, '').trim()).filter(Boolean).join(' | ');
    throw new Error(`pg_dump of database "${opts.database}" failed (${commandFailed[1]}), restic saved no snapshot: ${words || 'pg_dump\'s message did not reach restic\'s output'}`);
  }
  throw classifyResticFailure('backup', code, text, opts.restic.repository);
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
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-64 * 1024);
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code));
  });
  try {
    const restored = await restorePostgres({ url: opts.url, database: opts.database, dump: child.stdout, force: opts.force, signal: opts.signal, pgRestoreBin: opts.pgRestoreBin });
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
    await exited;
    throw error;
  }
}

function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function runChild(bin: string, args: string[], env: NodeJS.ProcessEnv, signal?: AbortSignal, onStart?: (pid: number) => void): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid !== undefined) onStart?.(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      // Keep the tail only: status lines stream for a long dump, the summary is last.
      stdout = (stdout + chunk).slice(-256 * 1024);
    });
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-64 * 1024);
    });
    // SIGINT lets restic remove its lock (and stop pg_dump).
    const onAbort = () => {
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => {
      signal?.removeEventListener('abort', onAbort);
      reject(error);
    });
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      resolve({ stdout, stderr, code });
    });
  });
}
