/**
 * Scratch restores off production: with a scratch server configured, verification's test restore
 * and a drill create, compare and drop their databases there, and the source's (production)
 * server never gains a database, watched before, during and after each run (PostgreSQL: a second
 * cluster; MongoDB: a second FerretDB); a recover still writes into the source's own server. Then the precedence (per source, global, the source's own
 * server) and what status says, from the config alone.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import type { Config, PostgresSource } from '../src/config/schema';
import { describeScratchServer, scratchServer, scratchSource, scratchStatusLines } from '../src/config/scratch';
import { configuredSecretVariables } from '../src/config/secrets';
import type { RecoveryRequest } from '../src/shared/requests';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { fingerprintDatabase } from '../src/sources/postgres';
import { startFerretDb, type FerretDbServer } from '../src/servers/processes';
import { compareFingerprints } from '../src/shared/fingerprints';
import { backupWorkflow, disasterRecoveryWorkflow, verifyWorkflow } from '../src/workflows';
import { runCli } from './support/cli-process';
import { startDeployment, tempDir, testServers, uniqueName, type TestDeployment } from './support/harness';
import { startPasswordPostgres, type PasswordPostgres } from './support/postgres';

/** The databases of a server whose names start with `prefix`, sorted. */
async function databasesOf(url: string, prefix: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>('select datname from pg_database where starts_with(datname, $1) order by datname', [prefix]);
    return rows.map((r) => r.datname);
  } finally {
    await client.end();
  }
}

/** Lists both servers' databases every few milliseconds while `body` runs: every name either ever had. */
async function watched<T>(servers: { source: string; scratch: string }, prefix: string, body: () => Promise<T>): Promise<{ result: T; source: Set<string>; scratch: Set<string> }> {
  const seen = { source: new Set<string>(), scratch: new Set<string>() };
  let running = true;
  const watch = (async () => {
    while (running) {
      const [source, scratch] = await Promise.all([databasesOf(servers.source, prefix), databasesOf(servers.scratch, prefix)]);
      source.forEach((name) => seen.source.add(name));
      scratch.forEach((name) => seen.scratch.add(name));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  try {
    return { result: await body(), ...seen };
  } finally {
    running = false;
    await watch;
  }
}

describe('scratch restores on a scratch server, not on the source\'s server', () => {
  const servers = testServers();
  const work = tempDir('scratch-server');
  const database = `scr_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const sourceDatabaseUrl = servers.postgresUrl.replace(/\/[^/]*$/, `/${database}`);
  const variables = { password: 'SCRATCH_TEST_PASSWORD', source: 'SCRATCH_TEST_SOURCE_URL', scratch: 'SCRATCH_TEST_SCRATCH_URL' };
  const scratchPassword = `scratch-${uniqueName('pw')}`;
  let scratchServerProcess: PasswordPostgres;
  let scratchUrl: string;
  let deployment: TestDeployment;
  let yaml: string;

  before(async () => {
    scratchServerProcess = await startPasswordPostgres(scratchPassword);
    scratchUrl = scratchServerProcess.url(scratchPassword);
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`create database ${database}`).finally(() => admin.end());
    const db = new pg.Client({ connectionString: sourceDatabaseUrl });
    await db.connect();
    await db.query('create table shifts (id serial primary key, note text)');
    await db.query(`insert into shifts (note) select 'shift ' || i from generate_series(1, 2000) i`);
    await db.end();
    yaml = `deployment: ${uniqueName('scratch')}
staging: { directory: ${work}/staging, minFreeSpace: 1MiB }
sources:
  database: { type: postgres, urlEnv: ${variables.source}, databases: [${database}], globals: false, scratch: { urlEnv: ${variables.scratch} } }
repositories:
  local: { type: local, path: ${work}/repository, passwordEnv: ${variables.password} }
policies:
  database: { sources: [database], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 5 }, rpo: 7h, tier: critical }
verification:
  schedule: { cron: "0 5 * * *" }
drills:
  schedule: { cron: "0 6 1 * *" }
  scratchDirectory: ${work}/drills
`;
    deployment = await startDeployment(yaml, { [variables.password]: `pw-${uniqueName('p')}`, [variables.source]: servers.postgresUrl, [variables.scratch]: scratchUrl }, { cleanup: [work] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('backup'), args: [{ deployment: deployment.config.deployment, policy: 'database' }],
    });
  });

  after(async () => {
    await deployment?.close();
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    const { rows } = await admin.query<{ datname: string }>('select datname from pg_database where starts_with(datname, $1)', [database]);
    for (const row of rows) await admin.query(`drop database if exists "${row.datname}" with (force)`);
    await admin.end();
    await scratchServerProcess?.stop();
  });

  const both = () => ({ source: servers.postgresUrl, scratch: scratchUrl });
  const scratchAddress = () => new URL(scratchUrl).host;

  test('verification test-restores into the scratch server: the fingerprint compared there, the source server gains no database', async () => {
    assert.deepEqual(await databasesOf(servers.postgresUrl, database), [database], 'before: only the source database');
    const { result: report, source, scratch } = await watched(both(), database, () => deployment.client.workflow.execute(verifyWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('verify'), args: [{ deployment: deployment.config.deployment }],
    }));
    const verified = report.sources.find((s) => s.source === 'database')!;
    assert.equal(verified.ok, true, verified.problems.join('; '));
    assert.match(verified.checked ?? '', new RegExp(`database ${database} restored into ${database}_verify_\\w+ on the scratch server ${scratchAddress().replace(/\./g, '\\.')}: equal to the fingerprint taken at backup time`));
    assert.deepEqual([...source], [database], 'the source server never held another database during the run');
    assert.ok([...scratch].some((name) => name.startsWith(`${database}_verify_`)), `the scratch server held the test restore (seen: ${[...scratch].join(', ')})`);
    assert.deepEqual(await databasesOf(servers.postgresUrl, database), [database], 'after: only the source database');
    assert.deepEqual(await databasesOf(scratchUrl, database), [], 'the scratch database was dropped');
  });

  test('backupctl status says where each database source\'s scratch restores go, with host:port and no password', async () => {
    const file = join(work, 'backup.yaml');
    writeFileSync(file, yaml);
    const status = await runCli(file, ['status'], { TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname() });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^Scratch restores \\(verification, drills\\):\\n  database: scratch server from ${variables.scratch}, ${scratchAddress().replace(/\./g, '\\.')} \\(sources\\.database\\.scratch\\.urlEnv\\)`, 'm'));
    assert.ok(!status.stdout.includes(scratchPassword), 'no password in the output');
    const json = await runCli(file, ['status', '--json'], { TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname() });
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { scratchRestores: Record<string, { variable: string; field: string; production: boolean; address?: string }> };
    assert.deepEqual(
      { ...parsed.scratchRestores.database, description: undefined },
      { variable: variables.scratch, field: 'sources.database.scratch.urlEnv', production: false, address: scratchAddress(), description: undefined },
    );
    assert.ok(!json.stdout.includes(scratchPassword), 'no password in the JSON');
  });

  test('a drill (scratch server from the global scratch.postgres) restores and cleans up there; a recover writes into the source\'s own server', async () => {
    // The worker builds plans from this very config object: the per-source server gives way to the global one.
    const configured = deployment.config.sources.database as PostgresSource;
    const ownScratch = configured.scratch;
    delete configured.scratch;
    deployment.config.scratch = { postgres: { urlEnv: variables.scratch } };
    const start = (request: RecoveryRequest) => deployment.client.workflow.execute(disasterRecoveryWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`dr-${request.mode}`), args: [request],
    });
    try {
      const { result: report, source, scratch } = await watched(both(), database, () => start({ deployment: deployment.config.deployment, mode: 'drill' }));
      assert.equal(report.ok, true, report.error);
      const drilled = report.sources.find((s) => s.source === 'database')!;
      assert.match(drilled.target, new RegExp(`^${database}_drill_[0-9a-f]{8}$`));
      assert.match(drilled.comparison?.what ?? '', new RegExp(`restored into ${drilled.target} on the scratch server ${scratchAddress().replace(/\./g, '\\.')}`));
      assert.deepEqual([...source], [database], 'the source server never held a drill database');
      assert.ok(scratch.has(drilled.target), `the scratch server held the drill's database (seen: ${[...scratch].join(', ')})`);
      assert.deepEqual(report.cleanup.filter((c) => !c.ok), []);
      assert.deepEqual(await databasesOf(scratchUrl, database), [], 'the drill\'s cleanup dropped it on the scratch server');

      // Recover is production work: the source's own database, on the source's own server.
      const expected = await fingerprintDatabase(sourceDatabaseUrl, database);
      const admin = new pg.Client({ connectionString: servers.postgresUrl });
      await admin.connect();
      await admin.query(`drop database ${database} with (force)`).finally(() => admin.end());
      const recovered = await start({ deployment: deployment.config.deployment, mode: 'recover', confirmed: true });
      assert.equal(recovered.ok, true, recovered.error);
      assert.doesNotMatch(recovered.sources[0]!.comparison?.what ?? '', /scratch server/);
      assert.equal(compareFingerprints({ kind: 'postgres', databases: [expected] }, { kind: 'postgres', databases: [await fingerprintDatabase(sourceDatabaseUrl, database)] }).equal, true);
      assert.deepEqual(await databasesOf(scratchUrl, database), [], 'nothing on the scratch server');
    } finally {
      configured.scratch = ownScratch;
      delete deployment.config.scratch;
    }
  });
});

/** The databases of a MongoDB server whose names start with `prefix`. */
async function mongoDatabasesOf(uri: string, prefix: string): Promise<string[]> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  try {
    return (await client.db('admin').admin().listDatabases({ nameOnly: true })).databases.map((d) => d.name).filter((n) => n.startsWith(prefix)).sort();
  } finally {
    await client.close();
  }
}

describe('a MongoDB source with the global scratch.mongodb: a second FerretDB takes the test restore', () => {
  const servers = testServers();
  const work = tempDir('scratch-mongo');
  const database = `scrm_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const variables = { password: 'SCRATCH_MONGO_TEST_PASSWORD', source: 'SCRATCH_MONGO_TEST_SOURCE_URI', scratch: 'SCRATCH_MONGO_TEST_SCRATCH_URI' };
  let scratchFerret: FerretDbServer;
  let deployment: TestDeployment;

  before(async () => {
    scratchFerret = await startFerretDb();
    const client = new MongoClient(servers.mongodbUri);
    try {
      await client.db(database).collection('runs').insertMany(Array.from({ length: 500 }, (_, i) => ({ _id: i, note: `run ${i}` })) as never);
    } finally {
      await client.close();
    }
    deployment = await startDeployment(`deployment: ${uniqueName('scratch-mongo')}
staging: { directory: ${work}/staging, minFreeSpace: 1MiB }
scratch:
  mongodb: { uriEnv: ${variables.scratch} }
sources:
  jobs: { type: mongodb, uriEnv: ${variables.source}, databases: [${database}] }
repositories:
  local: { type: local, path: ${work}/repository, passwordEnv: ${variables.password} }
policies:
  jobs: { sources: [jobs], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 5 } }
`, { [variables.password]: `pw-${uniqueName('p')}`, [variables.source]: servers.mongodbUri, [variables.scratch]: scratchFerret.uri }, { cleanup: [work] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('backup'), args: [{ deployment: deployment.config.deployment, policy: 'jobs' }],
    });
  });

  after(async () => {
    await deployment?.close();
    const client = new MongoClient(servers.mongodbUri);
    try {
      for (const name of await mongoDatabasesOf(servers.mongodbUri, database)) await client.db(name).dropDatabase();
    } finally {
      await client.close();
    }
    await scratchFerret?.stop();
  });

  test('verification restores the MongoDB snapshot on the scratch server and compares it there; the source server gains no database', async () => {
    const seen = { source: new Set<string>(), scratch: new Set<string>() };
    let running = true;
    const watch = (async () => {
      while (running) {
        (await mongoDatabasesOf(servers.mongodbUri, database)).forEach((n) => seen.source.add(n));
        (await mongoDatabasesOf(scratchFerret.uri, database)).forEach((n) => seen.scratch.add(n));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const report = await deployment.client.workflow.execute(verifyWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('verify'), args: [{ deployment: deployment.config.deployment }],
    }).finally(async () => {
      running = false;
      await watch;
    });
    const verified = report.sources.find((s) => s.source === 'jobs')!;
    assert.equal(verified.ok, true, verified.problems.join('; '));
    const address = new URL(scratchFerret.uri).host.replace(/\./g, '\\.');
    assert.match(verified.checked ?? '', new RegExp(`${database} restored into ${database}_verify_\\w+ on the scratch server ${address}: equal to the fingerprint`));
    assert.deepEqual([...seen.source], [database], 'the source server never held another database');
    assert.ok([...seen.scratch].some((n) => n.startsWith(`${database}_verify_`)), `the scratch server held the test restore (seen: ${[...seen.scratch].join(', ')})`);
    assert.deepEqual(await mongoDatabasesOf(servers.mongodbUri, database), [database]);
    assert.deepEqual(await mongoDatabasesOf(scratchFerret.uri, database), [], 'dropped on the scratch server');
  });
});

describe('where scratch restores go, from the config', () => {
  const yaml = (extra: string, scratch = '') => `deployment: shop
sources:
  orders: { type: postgres, urlEnv: ORDERS_URL, databases: [orders]${scratch} }
  jobs: { type: mongodb, uriEnv: JOBS_URI, databases: [jobs] }
  files: { type: files, root: /srv/shop, paths: [uploads] }
repositories:
  local: { type: local, path: /var/backups/shop, passwordEnv: RESTIC_PASSWORD }
policies:
  daily: { sources: [orders, jobs, files], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
${extra}`;
  const parse = (text: string): Config => parseConfig(text, 'shop.yaml', { checkEnv: false });
  const postgresOf = (config: Config) => config.sources.orders as PostgresSource;

  test('precedence: the source\'s own scratch server, then the global one of its kind, then the source\'s own (production) server', () => {
    const none = parse(yaml(''));
    assert.deepEqual(scratchServer(none, 'orders', postgresOf(none)), { variable: 'ORDERS_URL', field: 'sources.orders.urlEnv', production: true });
    assert.equal(scratchSource(none, 'orders', postgresOf(none)), postgresOf(none), 'no scratch server: the source as it is');
    const global = parse(yaml('scratch: { postgres: { urlEnv: SCRATCH_PG_URL }, mongodb: { uriEnv: SCRATCH_MONGO_URI } }'));
    assert.deepEqual(scratchServer(global, 'orders', postgresOf(global)), { variable: 'SCRATCH_PG_URL', field: 'scratch.postgres.urlEnv', production: false });
    const jobs = global.sources.jobs as Extract<Config['sources'][string], { type: 'mongodb' }>;
    assert.deepEqual(scratchServer(global, 'jobs', jobs), { variable: 'SCRATCH_MONGO_URI', field: 'scratch.mongodb.uriEnv', production: false });
    assert.equal(scratchSource(global, 'jobs', jobs).uriEnv, 'SCRATCH_MONGO_URI');
    const both = parse(yaml('scratch: { postgres: { urlEnv: SCRATCH_PG_URL } }', ', scratch: { urlEnv: ORDERS_SCRATCH_URL }'));
    assert.deepEqual(scratchServer(both, 'orders', postgresOf(both)), { variable: 'ORDERS_SCRATCH_URL', field: 'sources.orders.scratch.urlEnv', production: false });
    const moved = scratchSource(both, 'orders', postgresOf(both));
    assert.deepEqual([moved.urlEnv, moved.databases], ['ORDERS_SCRATCH_URL', ['orders']], 'the connection moves, what is dumped stays');
    // Only PostgreSQL has a global server here: MongoDB stays on its own server.
    const pgOnly = parse(yaml('scratch: { postgres: { urlEnv: SCRATCH_PG_URL } }'));
    assert.equal(scratchServer(pgOnly, 'jobs', pgOnly.sources.jobs as never).production, true);
  });

  test('the scratch variables are secrets: named in the config, checked as set, registered for scrubbing', () => {
    const config = parse(yaml('scratch: { mongodb: { uriEnv: SCRATCH_MONGO_URI } }', ', scratch: { urlEnv: ORDERS_SCRATCH_URL }'));
    const variables = configuredSecretVariables(config);
    assert.ok(variables.includes('ORDERS_SCRATCH_URL') && variables.includes('SCRATCH_MONGO_URI'), variables.join(', '));
    assert.throws(() => parseConfig(yaml('', ', scratch: { urlEnv: ORDERS_SCRATCH_URL }'), 'shop.yaml', { env: { ORDERS_URL: 'x', JOBS_URI: 'x', RESTIC_PASSWORD: 'x' } }),
      /sources\.orders\.scratch\.urlEnv.*ORDERS_SCRATCH_URL is not set/s);
    assert.throws(() => parse(yaml('', ', scratch: { uriEnv: ORDERS_SCRATCH_URL }')), /scratch/);
    assert.throws(() => parse(yaml('scratch: { postgres: { urlEnv: "postgres://u:p@db/x" } }')), /the NAME of an environment variable/);
  });

  test('status and doctor describe it with the variable and host:port at most, never a password', () => {
    const env = { ORDERS_URL: 'postgres://backup:prod-secret@db.internal:5432/orders', ORDERS_SCRATCH_URL: 'postgres://scratch:scratch-secret@scratch.internal:6432/postgres', JOBS_URI: 'mongodb://u:mongo-secret@mongo.internal:27017/' };
    const none = parse(yaml(''));
    const own = describeScratchServer(none, 'orders', postgresOf(none), env);
    assert.equal(own, 'the source\'s own server (production, ORDERS_URL, db.internal:5432): scratch databases orders_verify_<run> and orders_drill_<run> are created and dropped there');
    const set = parse(yaml('', ', scratch: { urlEnv: ORDERS_SCRATCH_URL }'));
    assert.equal(describeScratchServer(set, 'orders', postgresOf(set), env),
      'scratch server from ORDERS_SCRATCH_URL, scratch.internal:6432 (sources.orders.scratch.urlEnv): scratch databases orders_verify_<run> and orders_drill_<run> are created and dropped there');
    const lines = scratchStatusLines(set, env);
    assert.deepEqual(lines.split('\n').map((l) => l.split(':')[0]!.trim()), ['Scratch restores (verification, drills)', 'orders', 'jobs'], 'one line per database source');
    assert.match(lines, /jobs: the source's own server \(production, JOBS_URI, mongo\.internal:27017\)/);
    assert.doesNotMatch(lines, /secret/);
    // The CLI without the variable: the name alone.
    assert.match(describeScratchServer(set, 'orders', postgresOf(set), {}), /^scratch server from ORDERS_SCRATCH_URL \(sources/);
  });
});
