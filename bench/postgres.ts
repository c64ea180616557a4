/**
 * What the PostgreSQL source costs over a bare pg_dump:
 *
 *   (a) `pg_dump -Fc <db> > /dev/null`
 *   (b) the service's path: openConsistentRead, then at once the fingerprint (server-side hashes
 *       of every table, in the exported snapshot) and `restic backup --stdin-from-command --
 *       pg_dump -Fc --snapshot <id>` into a local repository
 *
 * alternately, over 3 rounds, on ~sizeBytes of rows loaded with generate_series (kept between
 * runs: loaded only when the table is smaller than asked).
 *
 *   npx tsx bench/postgres.ts [sizeMB=200]     (PG_URL, default postgres://postgres@127.0.0.1:5432/postgres;
 *                                               RESTIC_BIN, default .cache/servers/restic-0.18.1/restic)
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Repository } from '../src/config/schema';
import { runRestic } from '../src/restic/restic';
import { pgClientConfig } from '../src/sources/postgres-connection';
import { backupDatabaseWithRestic } from '../src/sources/postgres-restic';
import { openConsistentRead, pgDumpArgs, pgToolEnv, quoteIdent } from '../src/sources/postgres';

const ROUNDS = 3;
const ROWS_PER_BATCH = 250_000;

export interface PostgresBenchResult {
  /** The database's size (pg_database_size) when timed. */
  bytes: number;
  pgDumpSeconds: number[];
  serviceSeconds: number[];
  /** Within serviceSeconds: how long the fingerprint took (it runs beside the dump). */
  fingerprintSeconds: number[];
  /** Within serviceSeconds: how long restic backup (with pg_dump inside it) took. */
  resticSeconds: number[];
}

const elapsed = (since: number) => (performance.now() - since) / 1000;

async function withPg<T>(url: string, database: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(pgClientConfig(url, database));
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** Loads bench_rows (id, three md5 texts, a numeric, a timestamptz) until the table is ~sizeBytes. */
async function load(url: string, database: string, sizeBytes: number, log: (s: string) => void): Promise<void> {
  const exists = await withPg(url, 'postgres', async (c) => (await c.query('select 1 from pg_database where datname = $1', [database])).rowCount === 1);
  if (!exists) await withPg(url, 'postgres', (c) => c.query(`create database ${quoteIdent(database)}`));
  await withPg(url, database, async (client) => {
    await client.query(`create table if not exists bench_rows (id bigint primary key, a text not null, b text not null, c text not null, amount numeric(14, 2) not null, at timestamptz not null)`);
    const size = async () => Number((await client.query<{ n: string }>(`select pg_total_relation_size('bench_rows')::text as n`)).rows[0]!.n);
    let current = await size();
    if (current >= sizeBytes * 0.95) {
      log(`bench_rows already holds ${(current / 1e6).toFixed(0)} MB: not loading`);
      return;
    }
    const started = performance.now();
    let next = Number((await client.query<{ n: string }>('select coalesce(max(id), 0)::text as n from bench_rows')).rows[0]!.n) + 1;
    while (current < sizeBytes) {
      await client.query(`insert into bench_rows
        select i, md5(i::text), md5((i * 31)::text) || md5((i * 17)::text), md5((i * 7)::text), (i % 100000) / 100.0, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second'
          from generate_series($1::int8, $2::int8) i`, [next, next + ROWS_PER_BATCH - 1]);
      next += ROWS_PER_BATCH;
      current = await size();
    }
    await client.query('vacuum analyze bench_rows');
    log(`loaded bench_rows to ${(current / 1e6).toFixed(0)} MB (${next - 1} rows) in ${elapsed(started).toFixed(1)} s`);
  });
}

function runToDevNull(command: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const devNull = openSync('/dev/null', 'w');
    const child = spawn(command[0]!, command.slice(1), { env, stdio: ['ignore', devNull, 'inherit'] });
    child.on('error', (error) => {
      closeSync(devNull);
      reject(error);
    });
    child.on('close', (code) => {
      closeSync(devNull);
      if (code === 0) resolve();
      else reject(new Error(`${command[0]} exited ${String(code)}`));
    });
  });
}

export async function benchPostgres(opts: { url: string; database: string; sizeBytes: number; resticBin: string; repository: string; password: string; log: (s: string) => void }): Promise<PostgresBenchResult> {
  const { url, database, log } = opts;
  await load(url, database, opts.sizeBytes, log);
  const passwordEnv = 'BENCH_PG_RESTIC_PASSWORD';
  const env = { ...process.env, [passwordEnv]: opts.password };
  const repository: Repository = { type: 'local', path: opts.repository, passwordEnv };
  if (!existsSync(join(opts.repository, 'config'))) {
    mkdirSync(opts.repository, { recursive: true });
    await runRestic(['init'], { bin: opts.resticBin, repository, env });
    log(`initialised restic repository ${opts.repository}`);
  }
  const bytes = await withPg(url, database, async (c) => Number((await c.query<{ n: string }>('select pg_database_size(current_database())::text as n')).rows[0]!.n));
  log(`database ${database}: ${(bytes / 1e6).toFixed(0)} MB`);

  const result: PostgresBenchResult = { bytes, pgDumpSeconds: [], serviceSeconds: [], fingerprintSeconds: [], resticSeconds: [] };
  const toolEnv = pgToolEnv(url);
  for (let round = 1; round <= ROUNDS; round++) {
    let started = performance.now();
    await runToDevNull(pgDumpArgs(database), toolEnv);
    result.pgDumpSeconds.push(elapsed(started));

    started = performance.now();
    const read = await openConsistentRead(url, database);
    let fingerprintSeconds = 0;
    let resticSeconds = 0;
    let dumped = 0;
    try {
      await Promise.all([
        read.fingerprint().then(() => {
          fingerprintSeconds = elapsed(started);
        }),
        backupDatabaseWithRestic({ restic: { bin: opts.resticBin, repository, env }, url, database, snapshot: read.snapshotId, host: 'bench', tags: ['bench=postgres'] }).then((saved) => {
          resticSeconds = elapsed(started);
          dumped = saved.bytes;
        }),
      ]);
    } finally {
      await read.close();
    }
    result.serviceSeconds.push(elapsed(started));
    result.fingerprintSeconds.push(fingerprintSeconds);
    result.resticSeconds.push(resticSeconds);
    log(`round ${round}: pg_dump -Fc > /dev/null ${result.pgDumpSeconds.at(-1)!.toFixed(2)} s; service ${result.serviceSeconds.at(-1)!.toFixed(2)} s (fingerprint done at ${fingerprintSeconds.toFixed(2)} s, restic+pg_dump at ${resticSeconds.toFixed(2)} s, dump ${(dumped / 1e6).toFixed(0)} MB)`);
  }
  return result;
}

if (require.main === module) {
  const sizeMb = Number(process.argv[2] ?? 200);
  const log = (s: string) => process.stderr.write(`[bench:postgres] ${s}\n`);
  benchPostgres({
    url: process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    database: process.env.PG_BENCH_DATABASE ?? 'backupctl_bench',
    sizeBytes: sizeMb * 1e6,
    resticBin: process.env.RESTIC_BIN ?? join(__dirname, '..', '.cache', 'servers', 'restic-0.18.1', 'restic'),
    repository: process.env.PG_BENCH_REPOSITORY ?? join(tmpdir(), 'backupctl-bench-postgres-repo'),
    password: process.env.PG_BENCH_PASSWORD ?? 'bench-password',
    log,
  }).then(
    (result) => process.stdout.write(`${JSON.stringify(result, null, 2)}\n`),
    (error: unknown) => {
      log(error instanceof Error ? (error.stack ?? error.message) : String(error));
      process.exit(1);
    },
  );
}
