/**
 * PostgreSQL backup and restore: which databases to dump, the pg_dump and pg_dumpall commands
 * (which restic runs itself with --stdin-from-command, so a failing pg_dump saves no snapshot),
 * a consistent read whose exported snapshot pg_dump shares (the fingerprint and the dump see the
 * same rows), fingerprints, pg_restore from a stream, and whether the worker's pg_dump can dump
 * the server at all.
 *
 * Connection details come from one postgres:// URL; the libpq tools get them as PG* variables
 * (pgToolEnv), so no command line holds a password, and no message does either.
 */
import { spawn } from 'node:child_process';
import { pg } from './postgres-driver';
import { scrubSecrets } from '../logging/logger';
import { FailureType } from '../shared/failures';
import type { PostgresDatabaseFingerprint } from '../shared/fingerprints';
import {
  classifyToolStderr, dbnameArgument, parsePgUrl, pgClientConfig, pgToolEnv, PostgresSourceError, quoteIdent, quoteLiteral, redact, toSourceError, withClient,
} from './postgres-connection';
import { beginSnapshotTransaction, fingerprintInTransaction } from './postgres-fingerprint';

export { PostgresSourceError, pgToolEnv, parsePgUrl, redact, type PgConnection } from './postgres-connection';
export { LARGE_OBJECTS_TABLE, ROWS_PER_CHUNK, tableHashSql } from './postgres-fingerprint';

/**
 * The databases to back up. Default: the URL's database. `only` names them instead; "*" stands
 * for every database that accepts connections and is not a template. A named database that
 * does not exist fails with SourceMissing (all missing ones named).
 */
export async function listDatabases(url: string, only?: string[]): Promise<string[]> {
  const parts = parsePgUrl(url);
  return withClient(url, undefined, async (client) => {
    const { rows } = await client.query<{ datname: string; datallowconn: boolean; datistemplate: boolean }>('select datname, datallowconn, datistemplate from pg_database');
    if (!only || only.length === 0) return [parts.database];
    const existing = new Set(rows.map((r) => r.datname));
    const chosen: string[] = [];
    const add = (name: string) => {
      if (!chosen.includes(name)) chosen.push(name);
    };
    const missing: string[] = [];
    for (const name of only) {
      if (name === '*') {
        rows.filter((r) => r.datallowconn && !r.datistemplate).map((r) => r.datname).sort().forEach(add);
      } else if (existing.has(name)) add(name);
      else missing.push(name);
    }
    if (missing.length > 0) {
      const list = missing.map((m) => `"${m}"`).join(', ');
      throw new PostgresSourceError(`${missing.length === 1 ? 'database' : 'databases'} ${list} ${missing.length === 1 ? 'does' : 'do'} not exist at ${parts.where} (it has: ${rows.filter((r) => !r.datistemplate).map((r) => r.datname).sort().join(', ')})`, FailureType.SourceMissing);
    }
    return chosen;
  });
}

/**
 * The full pg_dump command (binary first) for one database in the custom format on stdout.
 * With `snapshot` (from openConsistentRead), pg_dump reads exactly what that transaction sees.
 * --no-password: a missing or wrong password fails at once instead of waiting for a prompt.
 */
export function pgDumpArgs(database: string, opts: { snapshot?: string; pgDumpBin?: string } = {}): string[] {
  const args = [opts.pgDumpBin ?? 'pg_dump', '-Fc', '--no-password', '--dbname', dbnameArgument(database)];
  if (opts.snapshot) args.push('--snapshot', opts.snapshot);
  return args;
}

/**
 * The full pg_dumpall command for roles and tablespaces as SQL on stdout. Reading role
 * passwords needs a superuser: `noRolePasswords` dumps the roles without them.
 */
export function pgDumpallGlobalsArgs(opts: { pgDumpallBin?: string; noRolePasswords?: boolean } = {}): string[] {
  const args = [opts.pgDumpallBin ?? 'pg_dumpall', '--globals-only', '--no-password'];
  if (opts.noRolePasswords) args.push('--no-role-passwords');
  return args;
}

/** The file name of a database's dump inside its snapshot ("/" and "%" escaped: a name may hold them). */
export function dumpFileName(database: string): string {
  return `${database.replace(/%/g, '%25').replace(/\//g, '%2F')}.dump`;
}

export interface ConsistentRead {
  /** For pg_dump --snapshot: valid while this read is open. */
  snapshotId: string;
  /** The database's fingerprint, read in the exported snapshot. */
  fingerprint(): Promise<PostgresDatabaseFingerprint>;
  /** Ends the transaction and the connection (idempotent). */
  close(): Promise<void>;
}

/**
 * Opens a REPEATABLE READ transaction, exports its snapshot (pg_export_snapshot) so pg_dump
 * --snapshot sees exactly the same data, computes the fingerprint inside that transaction. Keep
 * it open until close(): pg_dump can import the snapshot only while it is.
 */
export async function openConsistentRead(url: string, database: string): Promise<ConsistentRead> {
  const client = new pg.Client(pgClientConfig(url, database));
  client.on('error', () => undefined);
  let snapshotId: string;
  try {
    await client.connect();
    await beginSnapshotTransaction(client);
    snapshotId = (await client.query<{ id: string }>('select pg_export_snapshot() as id')).rows[0]!.id;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw toSourceError(error, url, database);
  }
  let closed = false;
  return {
    snapshotId,
    async fingerprint() {
      if (closed) throw new Error(`the consistent read of database "${database}" is closed`);
      try {
        return await fingerprintInTransaction(client, database);
      } catch (error) {
        throw toSourceError(error, url, database);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await client.query('rollback').catch(() => undefined);
      await client.end().catch(() => undefined);
    },
  };
}

/** The fingerprint of a database now (one snapshot for all its tables): after a restore, to compare. */
export async function fingerprintDatabase(url: string, database: string): Promise<PostgresDatabaseFingerprint> {
  return withClient(url, database, async (client) => {
    await beginSnapshotTransaction(client);
    try {
      return await fingerprintInTransaction(client, database);
    } finally {
      await client.query('rollback').catch(() => undefined);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Restore

export interface RestoreOptions {
  url: string;
  /** The database to restore into; created (from template0) when missing. */
  database: string;
  /** A custom-format (-Fc) dump, e.g. `restic dump <snapshot> /<db>.dump`'s stdout. */
  dump: NodeJS.ReadableStream;
  /** Drop and recreate a target that already holds tables, views, sequences or large objects. */
  force?: boolean;
  signal?: AbortSignal;
  pgRestoreBin?: string;
  /** pg_restore --no-owner: objects owned by the connecting user (restoring on a server without the original roles). */
  noOwner?: boolean;
  /** pg_restore --no-privileges: skip GRANT/REVOKE. */
  noPrivileges?: boolean;
  /** Stop at the first error, in one transaction (nothing restored on failure) instead of restoring what can be. */
  exitOnError?: boolean;
}

/** What a target database holds that a restore would mix with. */
async function targetContents(url: string, database: string): Promise<{ relations: number; largeObjects: number }> {
  return withClient(url, database, async (client) => {
    const { rows } = await client.query<{ relations: string; large_objects: string }>(`
      select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
                 and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
                 and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'))::text as relations,
             (select count(*) from pg_largeobject_metadata)::text as large_objects`);
    return { relations: Number(rows[0]!.relations), largeObjects: Number(rows[0]!.large_objects) };
  });
}

/** A database to connect to while creating or dropping `target`: the URL's, unless it is the target. */
function maintenanceDatabase(url: string, target: string): string {
  const own = parsePgUrl(url).database;
  return own !== target ? own : target === 'postgres' ? 'template1' : 'postgres';
}

/** Whether `database` exists on the server (a restore records the targets it creates). */
export async function databaseExists(url: string, database: string): Promise<boolean> {
  return withClient(url, maintenanceDatabase(url, database), async (client) => (await client.query('select 1 from pg_database where datname = $1', [database])).rowCount === 1);
}

async function dropDatabase(url: string, database: string): Promise<void> {
  await withClient(url, maintenanceDatabase(url, database), async (client) => {
    const version = Number((await client.query<{ v: string }>("select current_setting('server_version_num') as v")).rows[0]!.v);
    if (version >= 130000) {
      await client.query(`drop database if exists ${quoteIdent(database)} with (force)`);
    } else {
      await client.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [database]);
      await client.query(`drop database if exists ${quoteIdent(database)}`);
    }
  });
}

/**
 * pg_restore from a stream of a -Fc dump into `database` (created if missing; refused with
 * RestoreTargetUnsafe if it exists and has tables, unless `force`: then dropped and recreated).
 *
 * pg_restore goes on past errors (a role that does not exist on this server, an extension's
 * comment): each error comes back in `warnings`, and the fingerprint compared afterwards says
 * whether the data made it. A fatal failure (cannot connect, unreadable archive, cancelled)
 * rejects, and a database this call created is dropped again, so a retry starts clean.
 */
export async function restorePostgres(opts: RestoreOptions): Promise<{ database: string; warnings: string[] }> {
  const { url, database } = opts;
  const parts = parsePgUrl(url);
  const exists = await databaseExists(url, database);
  let create = !exists;
  if (exists) {
    const contents = await targetContents(url, database);
    if (contents.relations > 0 || contents.largeObjects > 0) {
      if (!opts.force) {
        const what = [contents.relations > 0 ? `${contents.relations} tables, views or sequences` : '', contents.largeObjects > 0 ? `${contents.largeObjects} large objects` : ''].filter(Boolean).join(' and ');
        throw new PostgresSourceError(`restore target database "${database}" at ${parts.where} is not empty (${what}): restore into a new database, or force to drop and recreate it`, FailureType.RestoreTargetUnsafe);
      }
      await dropDatabase(url, database);
      create = true;
    }
  }
  if (create) {
    await withClient(url, maintenanceDatabase(url, database), async (client) => {
      try {
        await client.query(`create database ${quoteIdent(database)} template template0`);
      } catch (error) {
        if ((error as { code?: string }).code !== '42501') throw error;
        throw new PostgresSourceError(`user ${parts.user} at ${parts.where} may not create the restore target database "${database}": grant it CREATEDB, or create the database (empty) beforehand`, FailureType.DatabaseAuthFailed);
      }
    });
  }
  try {
    const warnings = await runPgRestore(opts);
    return { database, warnings };
  } catch (error) {
    if (create) await dropDatabase(url, database).catch(() => undefined);
    throw error;
  }
}

function runPgRestore(opts: RestoreOptions): Promise<string[]> {
  const { url, database } = opts;
  const args = ['-Fc', '--no-password', '--dbname', dbnameArgument(database)];
  if (opts.noOwner) args.push('--no-owner');
  if (opts.noPrivileges) args.push('--no-privileges');
  if (opts.exitOnError) args.push('--exit-on-error', '--single-transaction');
  const bin = opts.pgRestoreBin ?? 'pg_restore';
  return new Promise<string[]>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new Error(`restore of database "${database}" cancelled`));
      return;
    }
    const child = spawn(bin, args, { env: pgToolEnv(url), stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let streamError: unknown;
    let aborted = false;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-1024 * 1024);
    });
    // pg_restore may stop reading (fatal error): its exit code says why, not the broken pipe.
    child.stdin.on('error', () => undefined);
    const onStreamError = (error: unknown) => {
      streamError ??= error;
      child.kill('SIGTERM');
    };
    opts.dump.on('error', onStreamError);
    opts.dump.pipe(child.stdin);
    const onAbort = () => {
      aborted = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error: NodeJS.ErrnoException) => {
      opts.signal?.removeEventListener('abort', onAbort);
      opts.dump.unpipe(child.stdin);
      reject(new PostgresSourceError(`could not run pg_restore (${bin}): ${error.message}${error.code === 'ENOENT' ? ': install the PostgreSQL client tools (postgresql-client)' : ''}`, FailureType.ConfigInvalid));
    });
    child.on('close', (code) => {
      opts.signal?.removeEventListener('abort', onAbort);
      opts.dump.removeListener('error', onStreamError);
      opts.dump.unpipe(child.stdin);
      const text = scrubSecrets(redact(stderr, url));
      const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
      if (aborted) {
        reject(new Error(`restore of database "${database}" cancelled`));
        return;
      }
      if (streamError !== undefined) {
        reject(streamError);
        return;
      }
      if (code === 0) {
        resolve(lines);
        return;
      }
      // Errors pg_restore went on past: "pg_restore: warning: errors ignored on restore: 3".
      if (code === 1 && !opts.exitOnError && /errors ignored on restore/.test(text)) {
        resolve(lines);
        return;
      }
      const classified = classifyToolStderr(text, url, database);
      if (classified) {
        reject(classified);
        return;
      }
      reject(new Error(`pg_restore into database "${database}" failed (exit ${String(code)}): ${lines.slice(-3).join(' | ') || 'no message'}`));
    });
  });
}

/**
 * Roles and tablespaces from pg_dumpall --globals-only SQL, through psql. A role that already
 * exists is an error psql goes on past: each error comes back in `warnings`.
 */
export async function restoreGlobals(opts: { url: string; sql: string | NodeJS.ReadableStream; psqlBin?: string; signal?: AbortSignal }): Promise<{ warnings: string[] }> {
  const bin = opts.psqlBin ?? 'psql';
  const database = parsePgUrl(opts.url).database;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=0', '--dbname', dbnameArgument(database), '-f', '-'], { env: pgToolEnv(opts.url), stdio: ['pipe', 'ignore', 'pipe'], signal: opts.signal });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-1024 * 1024);
    });
    child.stdin.on('error', () => undefined);
    if (typeof opts.sql === 'string') child.stdin.end(opts.sql);
    else opts.sql.pipe(child.stdin);
    child.on('error', (error) => reject(error));
    child.on('close', (code) => {
      const text = scrubSecrets(redact(stderr, opts.url));
      const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
      if (code === 0) resolve({ warnings: lines });
      else reject(classifyToolStderr(text, opts.url, database) ?? new Error(`psql failed (exit ${String(code)}): ${lines.slice(-3).join(' | ')}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// pg_dump version

export interface PgDumpVersionCheck {
  ok: boolean;
  /** pg_dump's version ("15.20"), or "missing". */
  client: string;
  /** The server's version ("15.20"). */
  server: string;
  detail: string;
  fix?: string;
}

/** "15.20" from "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"; undefined if not a pg_dump version line. */
export function parsePgDumpVersion(output: string): string | undefined {
  return /\(PostgreSQL\)\s+(\d+(?:\.\d+)?)/.exec(output)?.[1];
}

/** "15.20" from server_version_num 150020 (and "9.6.24" from 90624). */
export function serverVersionFromNum(num: number): string {
  if (num >= 100000) return `${Math.floor(num / 10000)}.${num % 10000}`;
  return `${Math.floor(num / 10000)}.${Math.floor(num / 100) % 100}.${num % 100}`;
}

function major(version: string): number {
  const [first, second] = version.split('.').map(Number);
  // Before 10 the major version was two numbers (9.6).
  return (first ?? 0) >= 10 ? first! : (first ?? 0) + (second ?? 0) / 10;
}

/**
 * Whether a pg_dump of version `client` can dump a server of version `server`: pg_dump refuses
 * servers of a newer major version ("aborting because of server version mismatch"). Pure.
 */
export function comparePgDumpVersions(client: string | undefined, server: string, pgDumpBin = 'pg_dump'): PgDumpVersionCheck {
  const serverMajor = major(server);
  const install = `install postgresql-client-${serverMajor} from the PostgreSQL apt repository (https://apt.postgresql.org: \`apt-get install -y postgresql-common && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh && apt-get install -y postgresql-client-${serverMajor}\`), then set the source's pgDumpBin to /usr/lib/postgresql/${serverMajor}/bin/pg_dump (or put it first on PATH)`;
  if (client === undefined) {
    return { ok: false, client: 'missing', server, detail: `${pgDumpBin} not found or not a pg_dump`, fix: install };
  }
  const clientMajor = major(client);
  if (clientMajor >= serverMajor) {
    return { ok: true, client, server, detail: `pg_dump ${client} can dump PostgreSQL ${server}` };
  }
  return { ok: false, client, server, detail: `pg_dump ${client} (${pgDumpBin}) is older than the server, PostgreSQL ${server}: pg_dump refuses to dump a newer major version`, fix: install };
}

/**
 * Whether the worker's pg_dump can dump this server (pg_dump major >= server major); if not, `fix`
 * says how to get one. pg_dump runs with the same environment as a backup, so Debian's
 * pg_wrapper picks the same binary it would then.
 */
export async function checkPgDumpVersion(url: string, pgDumpBin = 'pg_dump'): Promise<PgDumpVersionCheck> {
  const serverNum = await withClient(url, undefined, async (client) => Number((await client.query<{ v: string }>("select current_setting('server_version_num') as v")).rows[0]!.v));
  const server = serverVersionFromNum(serverNum);
  const output = await new Promise<string | undefined>((resolve) => {
    const child = spawn(pgDumpBin, ['--version'], { env: pgToolEnv(url), stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      text += chunk;
    });
    child.on('error', () => resolve(undefined));
    child.on('close', (code) => resolve(code === 0 ? text : undefined));
  });
  return comparePgDumpVersions(output === undefined ? undefined : parsePgDumpVersion(output), server, pgDumpBin);
}

/** Re-exported for callers that quote names in their own SQL. */
export { quoteIdent, quoteLiteral };
