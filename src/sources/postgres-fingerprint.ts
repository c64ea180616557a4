/**
 * What a PostgreSQL database holds, computed by the server so that rows never travel: per user
 * table its row count and an MD5 over its rows in primary-key order; each sequence's last value;
 * the large objects as a pseudo table `pg_catalog.large_objects`.
 *
 * Sizes stay bounded however large a table is. `md5(string_agg(md5(row::text), '' order by pk))`
 * would build a string of 32 bytes per row: past ~33 million rows it breaks PostgreSQL's 1 GB
 * limit for one value, and long before that it holds hundreds of MB in one backend. Instead the
 * rows, numbered in key order, are cut into chunks of ROWS_PER_CHUNK rows (3.2 MB of row hashes
 * each); each chunk gets the MD5 of its rows' MD5s and the table the MD5 of its chunks' MD5s
 * (32 bytes per 100,000 rows: 320 KB for a billion rows). Sorting spills to disk under work_mem
 * as any large sort does. The result is a Merkle-style hash of two levels: equal rows in equal
 * order give equal hashes, and any changed, missing or extra row changes it.
 *
 * What makes the text of a row depend on the session, not the data, is pinned inside the
 * transaction (time zone, date style, interval style, float digits, bytea output, lc_monetary),
 * and text keys are ordered with COLLATE "C": a restore into a database of another default
 * collation or a worker in another time zone still gives the same hash.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { PostgresDatabaseFingerprint, TableFingerprint } from '../shared/fingerprints';
import { quoteIdent } from './postgres-connection';

/** Rows per first-level chunk of a table's hash. Part of the hash's definition: never change it. */
export const ROWS_PER_CHUNK = 100_000;
/** Large objects are hashed in pieces of this many bytes. Part of the hash's definition. */
export const LARGE_OBJECT_PIECE = 1_048_576;
/** The pseudo table that stands for a database's large objects in its fingerprint. */
export const LARGE_OBJECTS_TABLE = 'pg_catalog.large_objects';

/** Settings that change how values print; SET LOCAL inside the fingerprint's transaction. */
const PINNED_SETTINGS: [string, string][] = [
  ['timezone', 'UTC'],
  ['datestyle', 'ISO, YMD'],
  ['intervalstyle', 'postgres'],
  ['extra_float_digits', '3'],
  ['bytea_output', 'hex'],
  ['lc_monetary', 'C'],
  ['xmloption', 'content'],
];

/**
 * Starts the read-only REPEATABLE READ transaction every fingerprint query runs in (one
 * snapshot for all tables) and pins the settings that change how values print.
 */
export async function beginSnapshotTransaction(client: pg.Client): Promise<void> {
  // A long pg_dump keeps this transaction idle: a server-wide idle timeout must not end it.
  await client.query('set idle_in_transaction_session_timeout = 0');
  await client.query('set statement_timeout = 0');
  await client.query('begin isolation level repeatable read read only');
  for (const [name, value] of PINNED_SETTINGS) await client.query(`select set_config($1, $2, true)`, [name, value]);
}

interface TableRow {
  schema: string;
  name: string;
  pk: { name: string; collatable: boolean }[] | null;
}

/** Excludes system schemas and objects that belong to an extension (pg_dump does not dump those either). */
const USER_RELATION = `
  n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  and c.relpersistence <> 't'
  and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')`;

const TABLES_SQL = `
select n.nspname as schema, c.relname as name,
  (select json_agg(json_build_object('name', a.attname, 'collatable', a.attcollation <> 0) order by k.ord)
     from pg_index i
     cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
     join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
    where i.indrelid = c.oid and i.indisprimary) as pk
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and ${USER_RELATION}`;

const SEQUENCES_SQL = `
select n.nspname as schema, c.relname as name
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'S' and ${USER_RELATION}`;

/** Code-point order, the same on every machine (not the worker's locale). */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * One table's `rows` and `hash` in one statement. Rows are numbered in primary-key order (text
 * keys in "C" order); without a primary key, in the order of their own MD5, which sorts by
 * every column at once and works for column types that have no ordering (json, point, xml).
 * `FROM ONLY`: an inheritance parent's hash is its own rows, each child is hashed by itself.
 */
export function tableHashSql(schema: string, name: string, pk: { name: string; collatable: boolean }[] | null): string {
  const relation = `only ${quoteIdent(schema)}.${quoteIdent(name)}`;
  const keys = pk ?? [];
  const inner = `select md5((r.*)::text) as rh${keys.map((k, i) => `, r.${quoteIdent(k.name)} as k${i}`).join('')} from ${relation} r`;
  const order = keys.length > 0 ? keys.map((k, i) => `k${i}${k.collatable ? ' collate "C"' : ''}`).join(', ') : 'rh collate "C"';
  return `select coalesce(sum(n), 0)::int8::text as rows, md5(coalesce(string_agg(h, '' order by g), '')) as hash
from (
  select (rn - 1) / ${ROWS_PER_CHUNK} as g, count(*) as n, md5(string_agg(rh, '' order by rn)) as h
  from (select rh, row_number() over (order by ${order}) as rn from (${inner}) s) w
  group by 1
) c`;
}

async function tableFingerprints(client: pg.Client): Promise<TableFingerprint[]> {
  const { rows } = await client.query<TableRow>(TABLES_SQL);
  rows.sort((a, b) => byName(a.schema, b.schema) || byName(a.name, b.name));
  const tables: TableFingerprint[] = [];
  for (const table of rows) {
    const result = await client.query<{ rows: string; hash: string }>(tableHashSql(table.schema, table.name, table.pk));
    const row = result.rows[0]!;
    tables.push({ table: `${table.schema}.${table.name}`, rows: Number(row.rows), hash: row.hash });
  }
  return tables;
}

/**
 * Each sequence's last value, as pg_dump saves it (`setval(seq, last_value, is_called)`): "42", or
 * "1 (not yet used)" for a sequence whose nextval was never called. Sequences are not
 * transactional: this reads the value when it runs, not in the transaction's snapshot, and so
 * does pg_dump; a sequence advanced between the two reads differs by that advance.
 */
async function sequenceValues(client: pg.Client): Promise<Record<string, string>> {
  const { rows } = await client.query<{ schema: string; name: string }>(SEQUENCES_SQL);
  rows.sort((a, b) => byName(a.schema, b.schema) || byName(a.name, b.name));
  const values: Record<string, string> = {};
  for (let start = 0; start < rows.length; start += 200) {
    const batch = rows.slice(start, start + 200);
    const sql = batch.map((s, i) => `select ${i} as i, last_value::text as value, is_called from ${quoteIdent(s.schema)}.${quoteIdent(s.name)}`).join(' union all ');
    const result = await client.query<{ i: number; value: string; is_called: boolean }>(sql);
    for (const row of result.rows) {
      const sequence = batch[row.i]!;
      values[`${sequence.schema}.${sequence.name}`] = row.is_called ? row.value : `${row.value} (not yet used)`;
    }
  }
  return values;
}

/**
 * The large objects as one pseudo table: `rows` = their count, `hash` = MD5 over one line per
 * object in OID order, "oid:size:md5", where md5 is the MD5 of the concatenated MD5s of its
 * 1 MiB pieces (computed by the server; only 32 bytes per MiB travel). Content is read through
 * lo_get, so how it is stored (sparse pages, short pages) does not matter, only what it reads as.
 * Undefined when the database has none.
 */
async function largeObjectsFingerprint(client: pg.Client): Promise<TableFingerprint | undefined> {
  const count = Number((await client.query<{ n: string }>('select count(*)::int8::text as n from pg_largeobject_metadata')).rows[0]!.n);
  if (count === 0) return undefined;
  const hash = createHash('md5');
  let last = '-1';
  for (;;) {
    const { rows: batch } = await client.query<{ oid: string }>('select oid::int8::text as oid from pg_largeobject_metadata where oid::int8 > $1::int8 order by oid limit 500', [last]);
    if (batch.length === 0) break;
    const oids = batch.map((r) => r.oid);
    const opened = await client.query<{ oid: string; size: string; fd: number }>(
      'select o::text as oid, lo_lseek64(fd, 0, 2)::text as size, fd from (select o, lo_open(o::oid, 262144) as fd from unnest($1::int8[]) with ordinality as u(o, i) order by i offset 0) x',
      [oids],
    );
    await client.query('select lo_close(fd) from unnest($1::int4[]) as fd', [opened.rows.map((r) => r.fd)]);
    const sizes = new Map(opened.rows.map((r) => [r.oid, r.size]));
    const hashed = await client.query<{ oid: string; hash: string }>(
      `select o::text as oid, md5(coalesce((select string_agg(md5(lo_get(o::oid, p, ${LARGE_OBJECT_PIECE})), '' order by p)
                                            from generate_series(0::int8, s - 1, ${LARGE_OBJECT_PIECE}) as p), '')) as hash
         from unnest($1::int8[], $2::int8[]) as u(o, s)`,
      [oids, oids.map((o) => sizes.get(o) ?? '0')],
    );
    const hashes = new Map(hashed.rows.map((r) => [r.oid, r.hash]));
    for (const oid of oids) hash.update(`${oid}:${sizes.get(oid)}:${hashes.get(oid)}\n`);
    last = oids[oids.length - 1]!;
  }
  return { table: LARGE_OBJECTS_TABLE, rows: count, hash: hash.digest('hex') };
}

/** The fingerprint of the database `client` is connected to, inside a transaction begun by beginSnapshotTransaction. */
export async function fingerprintInTransaction(client: pg.Client, database: string): Promise<PostgresDatabaseFingerprint> {
  const tables = await tableFingerprints(client);
  const largeObjects = await largeObjectsFingerprint(client);
  if (largeObjects) tables.push(largeObjects);
  return { database, tables, sequences: await sequenceValues(client) };
}
