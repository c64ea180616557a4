/**
 * The PostgreSQL source module against the real PostgreSQL and the real restic: a database of
 * every common shape backed up through `restic backup --stdin-from-command -- pg_dump --snapshot`
 * and restored through `restic dump | pg_restore` with equal fingerprints; the exported snapshot
 * keeps later writes out of both fingerprint and dump; roles through pg_dumpall; and the faults:
 * a wrong password, an unreachable server, a missing database, a non-empty restore target and a
 * pg_dump killed midway (no snapshot).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Repository } from '../src/config/schema';
import { snapshots } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import { freePort } from '../src/servers/processes';
import { FailureType } from '../src/shared/failures';
import { compareFingerprints, type PostgresDatabaseFingerprint } from '../src/shared/fingerprints';
import { classifyToolStderr, pgClientConfig } from '../src/sources/postgres-connection';
import { backupDatabaseWithRestic, restoreDatabaseFromRestic, type ResticTarget } from '../src/sources/postgres-restic';
import {
  checkPgDumpVersion, comparePgDumpVersions, fingerprintDatabase, LARGE_OBJECTS_TABLE, listDatabases, openConsistentRead, parsePgDumpVersion,
  pgDumpallGlobalsArgs, pgDumpArgs, pgToolEnv, PostgresSourceError, restoreGlobals, restorePostgres, serverVersionFromNum, tableHashSql,
} from '../src/sources/postgres';
import { tempDir, testServers, uniqueName, waitFor } from './support/harness';
import { startPasswordPostgres } from './support/postgres';

const run = promisify(execFile);
const servers = testServers();
const root = tempDir('pg-source');
const passwordEnv = `T${randomBytes(3).toString('hex').toUpperCase()}_PG_SOURCE_RESTIC_PASSWORD`;
process.env[passwordEnv] = `pw-${randomBytes(8).toString('hex')}`;
const repository: Repository = { type: 'local', path: join(root, 'repo'), passwordEnv };
const restic: ResticTarget = { bin: servers.resticBin, repository };
const databases: string[] = [];
const roles: string[] = [];

/** The test server's URL with another database (and optionally another user and password). */
function urlFor(database: string, user?: { name: string; password: string }): string {
  const base = new URL(servers.postgresUrl);
  if (user) {
    base.username = encodeURIComponent(user.name);
    base.password = encodeURIComponent(user.password);
  }
  base.pathname = `/${encodeURIComponent(database)}`;
  return base.toString();
}

async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(database: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client(pgClientConfig(urlFor(database)));
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** A fresh database (quoted name: uniqueName's "-" needs it), dropped in after(). */
async function createDatabase(prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  databases.push(name);
  await sql('postgres', `create database "${name}"`);
  return name;
}

const snapshotsTagged = (tag: string) => snapshots({ bin: restic.bin, repository }, { tags: [tag] });

async function rejectsWith(promise: Promise<unknown>, type: FailureType, secrets: string[] = []): Promise<PostgresSourceError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof PostgresSourceError, `expected a PostgresSourceError ${type}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  assert.equal(caught.failureType, type, caught.message);
  for (const secret of secrets) assert.ok(!caught.message.includes(secret) && !(caught.stack ?? '').includes(secret), `the message holds a secret: ${caught.message}`);
  return caught;
}

const wrap = (fingerprint: PostgresDatabaseFingerprint) => ({ kind: 'postgres' as const, databases: [fingerprint] });

/** Backs up `database` the service's way: consistent read, fingerprint and restic --stdin-from-command of pg_dump --snapshot at once. */
async function backupTheServiceWay(database: string, tag: string, beforeDump?: () => Promise<void>) {
  const read = await openConsistentRead(urlFor(database), database);
  try {
    await beforeDump?.();
    const [fingerprint, saved] = await Promise.all([
      read.fingerprint(),
      backupDatabaseWithRestic({ restic, url: urlFor(database), database, snapshot: read.snapshotId, tags: [tag], host: 'pg-test' }),
    ]);
    return { fingerprint, saved };
  } finally {
    await read.close();
  }
}

before(async () => {
  await runRestic(['init'], { bin: restic.bin, repository });
});

after(async () => {
  for (const name of databases) await sql('postgres', `drop database if exists "${name}" with (force)`).catch(() => undefined);
  for (const role of roles) await sql('postgres', `drop role if exists "${role}"`).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe('commands and environment (pure)', () => {
  test('pgToolEnv puts every connection detail in PG* variables and pgDumpArgs carries no password', () => {
    const url = 'postgres://app%40corp:p%2Fa%3Ass%40w0rd@db.example.com:6543/my%20db?sslmode=require&application_name=nightly';
    const env = pgToolEnv(url, { PATH: '/usr/bin', PGPASSWORD: 'inherited', PGSERVICE: 'other', PGPASSFILE: '/keep' });
    assert.equal(env.PGHOST, 'db.example.com');
    assert.equal(env.PGPORT, '6543');
    assert.equal(env.PGUSER, 'app@corp');
    assert.equal(env.PGPASSWORD, 'p/a:ss@w0rd');
    assert.equal(env.PGDATABASE, 'my db');
    assert.equal(env.PGSSLMODE, 'require');
    assert.equal(env.PGAPPNAME, 'nightly');
    assert.equal(env.PGSERVICE, undefined);
    assert.equal(env.PGPASSFILE, '/keep');
    assert.equal(env.PATH, '/usr/bin');
    assert.equal(env.PGCONNECT_TIMEOUT, '10');
    // No password in the URL: the worker's own PGPASSWORD must not be used instead.
    assert.equal(pgToolEnv('postgres://backup@10.0.0.5/app', { PGPASSWORD: 'inherited' }).PGPASSWORD, undefined);
    assert.equal(pgToolEnv('postgres://u@[::1]:5433/d').PGHOST, '::1');
    assert.equal(pgToolEnv('postgres://u@/d?host=/var/run/postgresql').PGHOST, '/var/run/postgresql');

    assert.deepEqual(pgDumpArgs('jobs', { snapshot: '00000003-0000001B-1' }), ['pg_dump', '-Fc', '--no-password', '--dbname', 'jobs', '--snapshot', '00000003-0000001B-1']);
    assert.deepEqual(pgDumpArgs('a=b', { pgDumpBin: '/usr/lib/postgresql/16/bin/pg_dump' }).slice(0, 1), ['/usr/lib/postgresql/16/bin/pg_dump']);
    // A name libpq would read as a connection string goes in as dbname='…'.
    assert.equal(pgDumpArgs("we'ird=name").at(-1), "dbname='we\\'ird=name'");
    assert.deepEqual(pgDumpallGlobalsArgs(), ['pg_dumpall', '--globals-only', '--no-password']);
    assert.ok(!pgDumpArgs('jobs').join(' ').includes('w0rd'));
  });

  test('pg_dump and pg_restore messages (as restic relays them) become typed errors without the password', () => {
    const url = 'postgres://backup:s3cret-Value@db.internal:5432/jobs';
    const classify = (stderr: string) => classifyToolStderr(stderr, url, 'jobs');
    assert.equal(classify('subprocess pg_dump: pg_dump: error: connection to server at "db.internal" (10.0.0.5), port 5432 failed: FATAL:  password authentication failed for user "backup"')?.failureType, FailureType.DatabaseAuthFailed);
    assert.equal(classify('pg_dump: error: connection to server at "db.internal" (10.0.0.5), port 5432 failed: Connection refused')?.failureType, FailureType.DatabaseUnreachable);
    assert.equal(classify('pg_dump: error: connection to server at "db.internal" (10.0.0.5), port 5432 failed: FATAL:  database "jobs" does not exist')?.failureType, FailureType.SourceMissing);
    assert.equal(classify('pg_dump: detail: Error message from server: SSL SYSCALL error: EOF detected')?.failureType, FailureType.DatabaseUnreachable);
    assert.equal(classify('pg_dump: error: query failed: ERROR:  permission denied for table secrets')?.failureType, FailureType.DatabaseAuthFailed);
    assert.equal(classify('pg_dump: error: something else entirely'), undefined);
    const leaked = classify('could not connect to postgres://backup:s3cret-Value@db.internal:5432/jobs: Connection refused');
    assert.ok(leaked && !leaked.message.includes('s3cret-Value'), leaked?.message);
    assert.match(leaked.message, /^PostgreSQL at db\.internal:5432 is unreachable/);
  });

  test('table hash SQL quotes identifiers and orders text keys in "C" collation', () => {
    const text = tableHashSql('we"ird', 'Table Name', [{ name: 'select', collatable: false }, { name: 'Key"2', collatable: true }]);
    assert.match(text, /from only "we""ird"\."Table Name" r/);
    assert.match(text, /r\."select" as k0, r\."Key""2" as k1/);
    assert.match(text, /order by k0, k1 collate "C"/);
    assert.match(tableHashSql('public', 'events', null), /order by rh collate "C"/);
  });

  test('pg_dump version comparison: an older client is refused with how to get a matching one', () => {
    assert.equal(parsePgDumpVersion('pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n'), '15.20');
    assert.equal(parsePgDumpVersion('pg_dump (PostgreSQL) 9.6.24'), '9.6');
    assert.equal(serverVersionFromNum(150020), '15.20');
    assert.equal(serverVersionFromNum(90624), '9.6.24');
    const older = comparePgDumpVersions('14.11', '16.2');
    assert.equal(older.ok, false);
    assert.match(older.detail, /older than the server/);
    assert.match(older.fix ?? '', /postgresql-client-16/);
    assert.match(older.fix ?? '', /apt\.postgresql\.org/);
    assert.match(older.fix ?? '', /pgDumpBin/);
    assert.equal(comparePgDumpVersions('16.1', '15.4').ok, true);
    assert.equal(comparePgDumpVersions('15.2', '15.20').ok, true);
    assert.equal(comparePgDumpVersions('9.6', '10.1').ok, false);
    const missing = comparePgDumpVersions(undefined, '15.4');
    assert.equal(missing.ok, false);
    assert.equal(missing.client, 'missing');
  });
});

describe('PostgreSQL through restic', () => {
  test('round trip: every common shape backed up with the exported snapshot and restored with equal fingerprints', async () => {
    const source = await createDatabase('pgsrc');
    const target = uniqueName('pgsrc-restored');
    databases.push(target);
    await sql(source, `
      create schema app;
      create table app.customers (
        id serial primary key,
        email text not null unique,
        name text not null,
        created timestamptz not null,
        balance numeric(12, 2) not null default 0 check (balance >= 0),
        profile jsonb,
        avatar bytea);
      create table app.orders (
        id bigint generated always as identity primary key,
        customer_id int not null references app.customers (id),
        total numeric not null,
        placed_at timestamptz not null,
        tags text[],
        duration interval,
        ratio double precision);
      create table app.order_lines (
        order_id bigint not null references app.orders (id) on delete cascade,
        line int not null,
        sku text not null,
        qty int not null check (qty > 0),
        primary key (order_id, line));
      create table public.events (at timestamptz, kind text, payload jsonb, location point);
      create table public."Mixed Case" ("select" int primary key, t text, "we""ird" text);
      create sequence app.invoice_no start 1000;
      create sequence app.unused_seq;
      create view app.customer_totals as
        select c.id, c.name, coalesce(sum(o.total), 0) as total from app.customers c left join app.orders o on o.customer_id = c.id group by c.id, c.name;

      insert into app.customers (email, name, created, balance, profile, avatar)
        select 'user' || i || '@example.com', case when i % 3 = 0 then 'Zoë 😀 日本語 ' || i else 'Name ' || i end,
               timestamptz '2024-01-01 00:00:00+00' + i * interval '37 minutes', (i * 7.25)::numeric(12, 2),
               jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i % 5), 'nested', jsonb_build_object('ok', i % 2 = 0)),
               decode(md5(i::text), 'hex')
          from generate_series(1, 2000) i;
      insert into app.orders (customer_id, total, placed_at, tags, duration, ratio)
        select 1 + i % 2000, round((i * 3.14159)::numeric, 4), timestamptz '2024-03-01 12:00:00+02' + i * interval '1 hour',
               array['t' || i % 4, 'ü'], i * interval '1 minute 3 seconds', i / 7.0
          from generate_series(1, 5000) i;
      insert into app.order_lines select o, l, 'SKU-' || o || '-' || l, l from generate_series(1, 5000) o, generate_series(1, 3) l;
      insert into public.events select timestamptz '2024-05-01 00:00:00+00' + i * interval '1 second', 'kind' || i % 7, jsonb_build_object('n', i), point(i, -i)
          from generate_series(1, 3000) i;
      insert into public.events select timestamptz '2024-05-01 00:00:00+00', 'duplicate', null, null from generate_series(1, 3);
      insert into public."Mixed Case" select i, 'row ' || i, 'q"uote' from generate_series(1, 50) i;
      select nextval('app.customers_id_seq') from generate_series(1, 5);
      select nextval('app.invoice_no') from generate_series(1, 3);
    `);
    const [lo1] = await sql<{ oid: number }>(source, `select lo_from_bytea(0, decode(repeat(md5('large'), 100000), 'hex')) as oid`);
    const [lo2] = await sql<{ oid: number }>(source, `select lo_from_bytea(0, convert_to('a small large object ✓', 'UTF8')) as oid`);

    const tag = uniqueName('roundtrip');
    const { fingerprint, saved } = await backupTheServiceWay(source, tag);
    assert.equal(saved.filename, `${source}.dump`);
    const tables = new Map(fingerprint.tables.map((t) => [t.table, t]));
    assert.equal(tables.get('app.customers')?.rows, 2000);
    assert.equal(tables.get('app.orders')?.rows, 5000);
    assert.equal(tables.get('app.order_lines')?.rows, 15000);
    assert.equal(tables.get('public.events')?.rows, 3003);
    assert.equal(tables.get('public.Mixed Case')?.rows, 50);
    assert.equal(tables.get(LARGE_OBJECTS_TABLE)?.rows, 2);
    assert.ok(!tables.has('app.customer_totals'), 'a view is not a table');
    assert.equal(fingerprint.sequences?.['app.customers_id_seq'], '2005');
    assert.equal(fingerprint.sequences?.['app.invoice_no'], '1002');
    assert.equal(fingerprint.sequences?.['app.orders_id_seq'], '5000');
    assert.equal(fingerprint.sequences?.['app.unused_seq'], '1 (not yet used)');

    const stored = await snapshotsTagged(tag);
    assert.equal(stored.length, 1);
    assert.deepEqual(stored[0]!.paths, [`/${source}.dump`]);
    assert.equal(stored[0]!.id, saved.snapshotId);

    const restored = await restoreDatabaseFromRestic({ restic, snapshotId: saved.snapshotId, sourceDatabase: source, url: urlFor('postgres'), database: target });
    assert.equal(restored.database, target);
    const restoredFingerprint = await fingerprintDatabase(urlFor(target), target);
    const comparison = compareFingerprints(wrap(fingerprint), wrap(restoredFingerprint), { [source]: target });
    assert.deepEqual(comparison.differences, []);
    assert.equal(comparison.equal, true);

    // Sequences continue where they were.
    for (const sequence of ['app.customers_id_seq', 'app.orders_id_seq', 'app.invoice_no', 'app.unused_seq']) {
      const [a] = await sql<{ v: string }>(source, `select nextval($1)::text as v`, [sequence]);
      const [b] = await sql<{ v: string }>(target, `select nextval($1)::text as v`, [sequence]);
      assert.equal(b?.v, a?.v, sequence);
    }
    // The view and the constraints came back, and they still bite.
    const [view] = await sql<{ n: string }>(target, `select count(*)::text as n from app.customer_totals`);
    assert.equal(view?.n, '2000');
    const constraintsOf = (database: string) => sql<{ conname: string; contype: string; def: string }>(database, `select conname, contype, pg_get_constraintdef(oid) as def from pg_constraint where connamespace = 'app'::regnamespace order by conname`);
    const constraints = await constraintsOf(target);
    assert.equal(constraints.map((c) => c.contype).sort().join(''), 'ccffpppu', JSON.stringify(constraints));
    assert.deepEqual(constraints, await constraintsOf(source));
    // (After the sequences: a rejected insert still uses up a value of the id's sequence.)
    await assert.rejects(sql(target, `insert into app.order_lines values (1, 99, 'x', 0)`), /check constraint/);
    await assert.rejects(sql(target, `insert into app.orders (customer_id, total, placed_at) values (999999, 1, now())`), /foreign key/);
    await assert.rejects(sql(target, `insert into app.customers (email, name, created) values ('user1@example.com', 'dup', now())`), /unique/);

    // The large objects' content, under the same OIDs.
    for (const lo of [lo1!, lo2!]) {
      const [a] = await sql<{ h: string }>(source, `select md5(lo_get($1)) as h`, [lo.oid]);
      const [b] = await sql<{ h: string }>(target, `select md5(lo_get($1)) as h`, [lo.oid]);
      assert.ok(a?.h);
      assert.equal(b?.h, a.h);
    }
    // A changed row is seen.
    await sql(target, `update app.customers set name = name || '.' where id = 17`);
    const changed = compareFingerprints(wrap(fingerprint), wrap(await fingerprintDatabase(urlFor(target), target)), { [source]: target });
    assert.deepEqual(changed.differences.filter((d) => d.startsWith('table ')), [`table ${target}.app.customers: same row count (2000) but different content`]);

    // The non-empty target is refused without force (restic's dump stopped), restored over with it.
    await rejectsWith(restoreDatabaseFromRestic({ restic, snapshotId: saved.snapshotId, sourceDatabase: source, url: urlFor('postgres'), database: target }), FailureType.RestoreTargetUnsafe);
    await restoreDatabaseFromRestic({ restic, snapshotId: saved.snapshotId, sourceDatabase: source, url: urlFor('postgres'), database: target, force: true });
    assert.equal(compareFingerprints(wrap(fingerprint), wrap(await fingerprintDatabase(urlFor(target), target)), { [source]: target }).equal, true);
  });

  test('consistency: rows written after openConsistentRead are in neither the fingerprint nor the dump', async () => {
    const source = await createDatabase('pgsrc-consistent');
    const target = uniqueName('pgsrc-consistent-restored');
    databases.push(target);
    await sql(source, `
      create table ledger (id int primary key, amount numeric not null, note text);
      insert into ledger select i, i * 1.5, 'before' from generate_series(1, 1000) i;`);
    const tag = uniqueName('consistent');
    const { fingerprint, saved } = await backupTheServiceWay(source, tag, async () => {
      // Committed before pg_dump starts and before the fingerprint is read.
      await sql(source, `insert into ledger select i, 0, 'after' from generate_series(1001, 1050) i;
                         update ledger set note = 'changed' where id = 1;
                         delete from ledger where id = 2;
                         create table later (id int primary key);`);
    });
    assert.deepEqual(fingerprint.tables.map((t) => `${t.table}:${t.rows}`), ['public.ledger:1000']);
    const now = await fingerprintDatabase(urlFor(source), source);
    assert.deepEqual(now.tables.map((t) => `${t.table}:${t.rows}`), ['public.later:0', 'public.ledger:1049']);

    await restorePostgres({ url: urlFor('postgres'), database: target, dump: await dumpStream(saved.snapshotId, `/${source}.dump`) });
    const [counts] = await sql<{ n: string; after: string; changed: string }>(target, `select count(*)::text as n, count(*) filter (where note = 'after')::text as after, count(*) filter (where note = 'changed')::text as changed from ledger`);
    assert.deepEqual(counts, { n: '1000', after: '0', changed: '0' });
    const [later] = await sql<{ n: string }>(target, `select count(*)::text as n from pg_class where relname = 'later'`);
    assert.equal(later?.n, '0');
    assert.equal(compareFingerprints(wrap(fingerprint), wrap(await fingerprintDatabase(urlFor(target), target)), { [source]: target }).equal, true);
  });

  test('roles: pg_dumpall --globals-only holds a role the test created, and restoreGlobals brings it back', async () => {
    const role = uniqueName('pgsrc-role');
    roles.push(role);
    await sql('postgres', `create role "${role}" login password 'role-Secret-42' connection limit 3`);
    const [bin, ...args] = pgDumpallGlobalsArgs();
    const { stdout } = await run(bin!, args, { env: pgToolEnv(urlFor('postgres')), maxBuffer: 64 * 1024 * 1024 });
    assert.match(stdout, new RegExp(`CREATE ROLE "${role}";`));
    assert.match(stdout, new RegExp(`ALTER ROLE "${role}" WITH .*LOGIN.*CONNECTION LIMIT 3.*PASSWORD 'SCRAM-SHA-256`));
    // Only this role's lines: the whole file would re-create other tests' roles on this shared server.
    const ours = stdout.split('\n').filter((line) => line.includes(`"${role}"`)).join('\n');
    await sql('postgres', `drop role "${role}"`);
    const { warnings } = await restoreGlobals({ url: urlFor('postgres'), sql: ours });
    assert.deepEqual(warnings, []);
    const [back] = await sql<{ rolcanlogin: boolean; rolconnlimit: number }>('postgres', `select rolcanlogin, rolconnlimit from pg_roles where rolname = $1`, [role]);
    assert.deepEqual(back, { rolcanlogin: true, rolconnlimit: 3 });
  });

  test('checkPgDumpVersion: the machine\'s pg_dump can dump its server', async () => {
    const check = await checkPgDumpVersion(urlFor('postgres'));
    assert.equal(check.ok, true, check.detail);
    assert.equal(check.client.split('.')[0], check.server.split('.')[0]);
    assert.equal(check.fix, undefined);
    const missing = await checkPgDumpVersion(urlFor('postgres'), '/nonexistent/pg_dump');
    assert.equal(missing.ok, false);
    assert.match(missing.fix ?? '', /postgresql-client-\d+/);
  });
});

/** `restic dump` of a file as a stream (what the restore activity pipes into pg_restore). */
async function dumpStream(snapshotId: string, path: string): Promise<NodeJS.ReadableStream> {
  const { spawn } = await import('node:child_process');
  const { repositoryEnvironment } = await import('../src/restic/restic');
  const child = spawn(restic.bin, ['dump', '--no-lock', snapshotId, path], { env: repositoryEnvironment(repository), stdio: ['ignore', 'pipe', 'inherit'] });
  return child.stdout;
}

describe('faults', () => {
  test('a wrong password: DatabaseAuthFailed from the driver and from pg_dump under restic, no snapshot, no password in any message', async () => {
    // The machine's cluster trusts 127.0.0.1 (pg_hba "host all all 127.0.0.1/32 trust"): any password is accepted there.
    const role = uniqueName('pgsrc-pw');
    roles.push(role);
    await sql('postgres', `create role "${role}" login password 'right-Pass-123'`);
    const trusted = await listDatabases(urlFor('postgres', { name: role, password: 'wrong-Pass-456' })).then(() => true, () => false);
    if (trusted) {
      // So here a role that does not exist is what authentication rejects (SQLSTATE 28000).
      const url = urlFor('postgres', { name: 'no-such-role-x', password: 'wrong-Pass-456' });
      const error = await rejectsWith(listDatabases(url), FailureType.DatabaseAuthFailed, ['wrong-Pass-456']);
      assert.match(error.message, /authentication failed for user no-such-role-x at 127\.0\.0\.1:\d+/);
    }
    // And a private cluster with SCRAM authentication shows a real wrong password (SQLSTATE 28P01).
    // Built from the machine's own PostgreSQL binaries (initdb, pg_ctl): failing to start it fails the test.
    const cluster = await startPasswordPostgres('cluster-Right-789');
    try {
      const wrong = cluster.url('wrong-Pass/@456');
      assert.deepEqual(await listDatabases(cluster.url('cluster-Right-789')), ['postgres']);
      const error = await rejectsWith(listDatabases(wrong), FailureType.DatabaseAuthFailed, ['wrong-Pass/@456', encodeURIComponent('wrong-Pass/@456')]);
      assert.match(error.message, /authentication failed for user postgres at 127\.0\.0\.1:\d+/);
      await rejectsWith(openConsistentRead(wrong, 'postgres'), FailureType.DatabaseAuthFailed, ['wrong-Pass/@456']);
      const tag = uniqueName('wrong-password');
      await rejectsWith(backupDatabaseWithRestic({ restic, url: wrong, database: 'postgres', tags: [tag] }), FailureType.DatabaseAuthFailed, ['wrong-Pass/@456']);
      assert.deepEqual(await snapshotsTagged(tag), []);
      // The right password through restic works: the PG* variables reach pg_dump.
      const good = await backupDatabaseWithRestic({ restic, url: cluster.url('cluster-Right-789'), database: 'postgres', tags: [tag] });
      assert.equal((await snapshotsTagged(tag)).length, 1);
      assert.ok(good.bytes > 0);
    } finally {
      await cluster.stop();
    }
  });

  test('an unreachable server: refused port and a silent one are DatabaseUnreachable', async () => {
    const port = await freePort();
    const refused = `postgres://postgres:some-Secret-1@127.0.0.1:${port}/postgres`;
    const error = await rejectsWith(listDatabases(refused), FailureType.DatabaseUnreachable, ['some-Secret-1']);
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    await rejectsWith(fingerprintDatabase(refused, 'postgres'), FailureType.DatabaseUnreachable);
    const tag = uniqueName('unreachable');
    await rejectsWith(backupDatabaseWithRestic({ restic, url: refused, database: 'postgres', tags: [tag] }), FailureType.DatabaseUnreachable, ['some-Secret-1']);
    assert.deepEqual(await snapshotsTagged(tag), []);

    // A server that accepts and never answers: the connect timeout (here 1 s) ends the wait.
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const silentPort = (silent.address() as { port: number }).port;
      const started = Date.now();
      await rejectsWith(listDatabases(`postgres://postgres@127.0.0.1:${silentPort}/postgres?connect_timeout=1`), FailureType.DatabaseUnreachable);
      assert.ok(Date.now() - started < 5000);
    } finally {
      silent.close();
    }
  });

  test('a missing database: SourceMissing from the driver, listDatabases and pg_dump under restic', async () => {
    const missing = uniqueName('pgsrc-missing');
    await rejectsWith(listDatabases(urlFor(missing)), FailureType.SourceMissing);
    await rejectsWith(openConsistentRead(urlFor('postgres'), missing), FailureType.SourceMissing);
    const error = await rejectsWith(listDatabases(urlFor('postgres'), ['postgres', missing]), FailureType.SourceMissing);
    assert.match(error.message, new RegExp(`"${missing}" does not exist`));
    assert.deepEqual(await listDatabases(urlFor('postgres')), ['postgres']);
    const tag = uniqueName('missing');
    await rejectsWith(backupDatabaseWithRestic({ restic, url: urlFor('postgres'), database: missing, tags: [tag] }), FailureType.SourceMissing);
    assert.deepEqual(await snapshotsTagged(tag), []);
  });

  test('a non-empty restore target is refused without force, before any data is read', async () => {
    const target = await createDatabase('pgsrc-occupied');
    await sql(target, `create table precious (id int primary key); insert into precious values (1), (2);`);
    let read = false;
    const { Readable } = await import('node:stream');
    const dump = new Readable({ read() {
      read = true;
      this.push(null);
    } });
    const error = await rejectsWith(restorePostgres({ url: urlFor('postgres'), database: target, dump }), FailureType.RestoreTargetUnsafe);
    assert.match(error.message, new RegExp(`"${target}" at 127\\.0\\.0\\.1:5432 is not empty \\(1 tables`));
    assert.equal(read, false);
    const [kept] = await sql<{ n: string }>(target, 'select count(*)::text as n from precious');
    assert.equal(kept?.n, '2');
  });

  test('a broken dump (not an archive, or a stream that fails) rejects and leaves no half-restored database', async () => {
    const { Readable } = await import('node:stream');
    const exists = async (name: string) => (await sql('postgres', 'select 1 from pg_database where datname = $1', [name])).length === 1;
    const garbage = uniqueName('pgsrc-garbage');
    databases.push(garbage);
    await assert.rejects(restorePostgres({ url: urlFor('postgres'), database: garbage, dump: Readable.from([Buffer.from('not a pg_dump archive at all')]) }), /pg_restore into database ".*" failed \(exit 1\): .*(did not find magic string|does not appear to be a valid archive)/);
    assert.equal(await exists(garbage), false);
    const failing = uniqueName('pgsrc-failing');
    databases.push(failing);
    const stream = new Readable({ read() {
      this.destroy(new Error('restic dump went away'));
    } });
    await assert.rejects(restorePostgres({ url: urlFor('postgres'), database: failing, dump: stream }), /restic dump went away/);
    assert.equal(await exists(failing), false);
  });

  test('pg_dump terminated midway through a table: restic exits non-zero and saves no snapshot', async () => {
    const source = await createDatabase('pgsrc-killed');
    // ~40 MB of barely compressible text: more than the pipe and socket buffers between the server and restic.
    await sql(source, `create table big (id int primary key, a text, b text, c text);
      insert into big select i, md5(i::text), md5((i * 7)::text), md5((i * 13)::text) from generate_series(1, 400000) i;`);
    const tag = uniqueName('killed');
    // An exclusive lock holds pg_dump at its start, so restic can be paused with pg_dump running.
    const locker = new pg.Client(pgClientConfig(urlFor(source)));
    await locker.connect();
    await locker.query('begin; lock table big in access exclusive mode');
    let resticPid = 0;
    const read = await openConsistentRead(urlFor(source), source);
    try {
      const backup = backupDatabaseWithRestic({ restic, url: urlFor(source), database: source, snapshot: read.snapshotId, tags: [tag], onStart: (pid) => (resticPid = pid) });
      const outcome = backup.then(() => undefined, (error: unknown) => error);
      await waitFor('pg_dump waiting for its lock', async () => (await sql(source, `select 1 from pg_stat_activity where application_name = 'pg_dump' and datname = $1 and wait_event_type = 'Lock'`, [source])).length > 0);
      process.kill(resticPid, 'SIGSTOP');
      try {
        await locker.query('commit');
        // pg_dump copies the table until the paused restic's pipe is full: its backend waits to write, midway through the table.
        const [backend] = await waitFor('pg_dump blocked midway through COPY', async () => {
          const rows = await sql<{ pid: number }>(source, `select pid from pg_stat_activity where application_name = 'pg_dump' and datname = $1 and query like 'COPY public.big%' and wait_event = 'ClientWrite'`, [source]);
          return rows.length > 0 ? rows : undefined;
        });
        await sql('postgres', 'select pg_terminate_backend($1)', [backend!.pid]);
      } finally {
        process.kill(resticPid, 'SIGCONT');
      }
      const error = await outcome;
      // pg_dump's own words when restic relayed them in time (DatabaseUnreachable), else its exit status; never a snapshot.
      assert.ok(error instanceof Error, String(error));
      if (error instanceof PostgresSourceError) {
        assert.equal(error.failureType, FailureType.DatabaseUnreachable, error.message);
        assert.match(error.message, /terminating connection|server closed the connection|SSL SYSCALL error|Connection reset/);
      } else {
        assert.match(error.message, new RegExp(`pg_dump of database "${source}" failed \\(exit status 1\\), restic saved no snapshot`));
      }
    } finally {
      await read.close();
      await locker.end().catch(() => undefined);
    }
    assert.deepEqual(await snapshotsTagged(tag), []);
    // Nothing half-written is left that a later `restic check` would complain about.
    await runRestic(['check'], { bin: restic.bin, repository });
  });
});
