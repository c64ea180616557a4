/**
 * `npm run bench` (second part) or `npx tsx bench/databases.ts [--quick] [--mongo-mb N] [--pg-mb N]`
 *
 * The database sources against their practical limits, each pair timed alternately in one run on
 * the same data (bench/mongodb.ts, bench/postgres.ts):
 *   - MongoDB: the service's dump (raw BSON in _id order, mongodump layout, fingerprint) against a
 *     bare `raw: true` read of the same collections in the same order; goal: at least 80% of it.
 *   - PostgreSQL: the service's backup (exported snapshot, fingerprint beside it, pg_dump -Fc
 *     streamed into restic) against bare `pg_dump -Fc > /dev/null`; goal: at most 15% slower.
 *
 * It starts its own FerretDB (the only MongoDB peer here) and uses the machine's PostgreSQL.
 * Output: a Markdown table on stdout and in bench/databases.md (databases-quick.md with --quick),
 * raw numbers in the matching .json. Options of bench/run.ts (--runs, --files, ...) are ignored.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot, resolveBinary } from '../src/servers/binaries';
import { ensurePostgres, startFerretDb } from '../src/servers/processes';
import { benchMongo, type MongoBenchResult } from './mongodb';
import { benchPostgres, type PostgresBenchResult } from './postgres';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

function report(quick: boolean, mongo: MongoBenchResult, postgres: PostgresBenchResult, seconds: number): string {
  const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
  const dump = median(mongo.dumpSeconds);
  const raw = median(mongo.rawReadSeconds);
  const pgDump = median(postgres.pgDumpSeconds);
  const service = median(postgres.serviceSeconds);
  const lines = [
    `# Database sources against their practical limits${quick ? ' (quick)' : ''}`,
    '',
    `Medians of ${mongo.dumpSeconds.length} alternating rounds each; one run, ${(seconds / 60).toFixed(1)} min. Command: \`npx tsx bench/databases.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\`.`,
    '',
    '| source | data | the service | the practical limit | ratio | goal |',
    '|---|---|---|---|---|---|',
    `| MongoDB (FerretDB 1.24, SQLite) | ${mongo.documents.toLocaleString('en-US')} documents, ${mb(mongo.bytes)} MB of BSON | dump: ${dump.toFixed(2)} s, ${(mongo.bytes / 1e6 / dump).toFixed(1)} MB/s, ${Math.round(mongo.documents / dump).toLocaleString('en-US')} docs/s | bare \`raw: true\` read in _id order: ${raw.toFixed(2)} s, ${(mongo.bytes / 1e6 / raw).toFixed(1)} MB/s | ${(raw / dump * 100).toFixed(0)}% of the limit's throughput | ≥ 80%: ${raw / dump >= 0.8 ? 'met' : 'not met'} |`,
    `| PostgreSQL 15 | ${mb(postgres.bytes)} MB on disk | exported snapshot + fingerprint + pg_dump -Fc into restic: ${service.toFixed(2)} s (fingerprint ${median(postgres.fingerprintSeconds).toFixed(2)} s beside it) | \`pg_dump -Fc > /dev/null\`: ${pgDump.toFixed(2)} s | ${((service / pgDump - 1) * 100).toFixed(0)}% slower | ≤ 15%: ${service / pgDump <= 1.15 ? 'met' : 'not met'} |`,
    '',
    'Rounds (seconds):',
    '',
    `- MongoDB dump ${mongo.dumpSeconds.map((s) => s.toFixed(2)).join(', ')}; raw read ${mongo.rawReadSeconds.map((s) => s.toFixed(2)).join(', ')}`,
    `- PostgreSQL service ${postgres.serviceSeconds.map((s) => s.toFixed(2)).join(', ')}; pg_dump ${postgres.pgDumpSeconds.map((s) => s.toFixed(2)).join(', ')}`,
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const mongoMb = Number(option('mongo-mb') ?? (quick ? 20 : 200));
  const pgMb = Number(option('pg-mb') ?? (quick ? 50 : 1000));
  const log = (s: string) => process.stderr.write(`[bench:databases] ${s}\n`);
  const started = performance.now();
  const work = mkdtempSync(join(tmpdir(), 'bench-databases-'));
  // FerretDB keeps its data between runs (loading is the slow part), under the ignored .cache.
  const mongoData = join(repoRoot(), '.cache', 'bench', 'ferretdb');
  mkdirSync(mongoData, { recursive: true });
  const [ferretdbBin, resticBin, pg] = await Promise.all([resolveBinary('ferretdb'), resolveBinary('restic'), ensurePostgres()]);
  const ferretdb = await startFerretDb({ bin: ferretdbBin, sqliteDir: mongoData });
  try {
    log(`MongoDB: ${mongoMb} MB`);
    const mongo = await benchMongo({ uri: ferretdb.uri, directory: join(work, 'dump'), sizeBytes: mongoMb * 1e6, log });
    log(`PostgreSQL: ${pgMb} MB`);
    const postgres = await benchPostgres({
      url: `postgres://${pg.user}@${pg.host}:${pg.port}/postgres`, database: 'backupctl_bench', sizeBytes: pgMb * 1e6,
      resticBin, repository: join(work, 'pg-repository'), password: 'bench-only-password', log,
    });
    const text = report(quick, mongo, postgres, (performance.now() - started) / 1000);
    const out = join(repoRoot(), 'bench', quick ? 'databases-quick' : 'databases');
    writeFileSync(`${out}.md`, text);
    writeFileSync(`${out}.json`, `${JSON.stringify({ mongo, postgres }, null, 2)}\n`);
    process.stdout.write(text);
  } finally {
    await ferretdb.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
