/**
 * Both example configs, as shipped, back up and restore every source they declare. Only what
 * points outside this machine is rewritten (endpoints to MinIO, paths to temp folders, hosts to
 * this one, the database URLs to the test servers); sources, policies, schedules and retention
 * are the examples' own. Every restore is checked: files byte for byte, databases, git and the
 * bucket by their fingerprints taken at backup time and again after the restore.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { initRepositories } from '../src/cli/init';
import { writeSampleDeployment } from '../src/cli/dev';
import { seedSampleDatabase } from '../src/cli/dev';
import type { RestoreRequest } from '../src/config/plans';
import { restoreRequestOf } from '../src/cli/operations';
import { formatReport } from '../src/cli/recovery';
import type { RecoveryReport } from '../src/shared/recovery-types';
import { startMinio, type MinioServer } from '../src/servers/processes';
import type { BackupOutcome } from '../src/shared/backup-types';
import type { RestoreResult } from '../src/shared/restore-types';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, disasterRecoveryWorkflow, doctorWorkflow, restoreWorkflow } from '../src/workflows';
import { historyQuery, lastSuccessfulBackupQuery } from '../src/workflows/definitions';
import { createBucket, startDeployment, tempDir, testServers, uniqueName, rootCause, waitFor, type TestDeployment } from './support/harness';
import { describeTree } from './support/trees';
import { startPingReceiver, type PingReceiver } from './support/ping-receiver';

const root = resolve(__dirname, '..');

const servers = testServers();

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } }).trim();
}

/** A repository with history: main, a feature branch, a tag. */
function makeRepository(path: string): void {
  git(path, 'init', '-q', '-b', 'main');
  git(path, 'add', '-A');
  git(path, 'commit', '-q', '-m', 'first');
  git(path, 'checkout', '-q', '-b', 'feature/rewrite');
  execFileSync('sh', ['-c', 'echo "# rewritten" >> master-cv.md'], { cwd: path });
  git(path, 'commit', '-q', '-am', 'rewrite');
  git(path, 'checkout', '-q', 'main');
  git(path, 'tag', '-a', 'v1', '-m', 'first release');
}

function refs(path: string): string {
  return git(path, 'for-each-ref', '--format=%(refname) %(objectname)', 'refs/heads', 'refs/tags');
}

async function runBackup(deployment: TestDeployment, policy: string): Promise<BackupOutcome> {
  return deployment.client.workflow.execute(backupWorkflow, {
    taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`backup-${policy}`),
    args: [{ deployment: deployment.config.deployment, policy: policy }],
  });
}

async function runRestore(deployment: TestDeployment, request: Omit<RestoreRequest, 'config' | 'defaultHost'>): Promise<RestoreResult> {
  return deployment.client.workflow.execute(restoreWorkflow, {
    taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`restore-${request.source}`),
    args: [restoreRequestOf({ ...request, config: deployment.config, defaultHost: hostname() })],
  });
}

/** Points a repository of an example at MinIO, keeping its name, prefix and variable names. */
function toMinio(repository: Record<string, unknown>, bucket: string): void {
  Object.assign(repository, { endpoint: servers.s3Endpoint, bucket, region: 'us-east-1', pathStyle: true });
}


/** A full drill of the deployment: every source into scratch targets, validated, reported, cleaned up. */
async function fullDrill(deployment: TestDeployment, work: string): Promise<RecoveryReport> {
  const report = await deployment.client.workflow.execute(disasterRecoveryWorkflow, {
    taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('drill'), args: [{ deployment: deployment.config.deployment, mode: 'drill' }],
  });
  writeFileSync(join(work, 'drill-report.md'), formatReport(report));
  if (process.env.DRILL_REPORT_OUT) writeFileSync(process.env.DRILL_REPORT_OUT.replace('NAME', deployment.config.deployment.split('-').slice(0, -1).join('-')), `${formatReport(report)}\n`);
  assert.equal(report.ok, true, report.error);
  assert.deepEqual(report.sources.map((s) => s.source).sort(), Object.keys(deployment.config.sources).sort());
  for (const source of report.sources) assert.equal(source.comparison?.equal, true, `${source.source}: ${JSON.stringify(source.comparison)}`);
  assert.ok(report.cleanup.every((c) => c.ok), JSON.stringify(report.cleanup));
  assert.deepEqual(existsSync(join(work, 'drills')) ? readdirSync(join(work, 'drills')) : [], [], 'the drill left no scratch folder, not even its run folder');
  const history = await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).query(historyQuery, 100);
  assert.equal(history.find((h) => h.workflowId === report.workflowId)?.kind, 'drill', 'the drill is in the ledger');
  return report;
}

describe('examples/vps.yaml: artifacts, secrets, MongoDB and the master CV\'s git repository', () => {
  const work = tempDir('example-vps');
  const app = join(work, 'srv', 'job-pipeline');
  const bucket = uniqueName('vps');
  const database = `jobs_${uniqueName('x').slice(2)}`;
  let deployment: TestDeployment;
  let monitor: PingReceiver;
  const outcomes: Record<string, BackupOutcome> = {};

  before(async () => {
    monitor = await startPingReceiver('worker');
    writeSampleDeployment(app);
    makeRepository(app);
    await createBucket(bucket);
    // The example as parsed YAML, edited in place: untyped on purpose (the loader checks it afterwards).
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const config = parse(readFileSync(join(root, 'examples/vps.yaml'), 'utf8')) as Record<string, any>;
    config.deployment = uniqueName('job-pipeline');
    config.staging = { directory: join(work, 'staging'), minFreeSpace: '50MiB' };
    config.drills.scratchDirectory = join(work, 'drills');
    for (const source of Object.values(config.sources) as Record<string, unknown>[]) {
      if (source.host) source.host = hostname();
      if (source.root) source.root = app;
      if (source.type === 'git') source.path = app;
    }
    config.sources.mongodb.databases = [database];
    for (const repository of Object.values(config.repositories) as Record<string, unknown>[]) toMinio(repository, bucket);
    const env = {
      MONGODB_URI: servers.mongodbUri, AWS_ACCESS_KEY_ID: servers.s3AccessKeyId, AWS_SECRET_ACCESS_KEY: servers.s3SecretAccessKey,
      RESTIC_PASSWORD: `pw-${uniqueName('a')}`, RESTIC_SECRETS_PASSWORD: `pw-${uniqueName('b')}`, SLACK_WEBHOOK_URL: 'http://127.0.0.1:9/unused',
      SMTP_URL: 'smtp://127.0.0.1:9', HEALTHCHECKS_DATABASE_URL: 'http://127.0.0.1:9/ping/unused', HEALTHCHECKS_WORKER_URL: monitor.url,
    };
    config.monitoring.port = 0;
    // The example's MongoDB database, shaped like the pipeline's state, under a name of this test.
    assert.equal(await seedSampleDatabase(servers.mongodbUri, database), 1205);
    deployment = await startDeployment(stringify(config), env, { cleanup: [work] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    for (const policy of Object.keys(deployment.config.policies)) outcomes[policy] = await runBackup(deployment, policy);
  });

  after(async () => {
    const client = new MongoClient(servers.mongodbUri);
    try {
      for (const name of [database, `${database}_drill`]) await client.db(name).dropDatabase();
    } finally {
      await client.close();
    }
    await deployment?.close();
    await monitor?.close();
  });

  test('the worker pings the example\'s outside monitor (monitoring.heartbeatUrlEnv) as it starts', async () => {
    await waitFor('a success ping from this deployment\'s worker', () => monitor.pings.some((p) => p.signal === '' && p.body.includes(sharedTaskQueue(deployment.config.deployment))));
  });

  test('every policy\'s backup succeeds, and the ledger holds each database\'s and repository\'s fingerprint', async () => {
    assert.deepEqual(Object.keys(outcomes).sort(), ['artifacts', 'code', 'database', 'secrets']);
    for (const [policy, outcome] of Object.entries(outcomes)) assert.equal(outcome.status, 'ok', `${policy}: ${JSON.stringify(outcome.error)}`);
    const mongo = outcomes.database!.snapshots[0]!;
    assert.equal(mongo.fingerprint?.kind, 'mongodb');
    assert.deepEqual(mongo.fingerprint?.kind === 'mongodb' && mongo.fingerprint.collections.map((c) => [c.collection, c.count]).sort(), [['applications', 5], ['job_cache', 1000], ['pipeline_runs', 200]]);
    const ledger = await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).query(lastSuccessfulBackupQuery);
    assert.deepEqual(ledger.sources.mongodb?.fingerprint, mongo.fingerprint, 'the ledger keeps the fingerprint of the last success');
    assert.equal(ledger.sources['master-cv']?.fingerprint?.kind, 'git');
  });

  test('MongoDB restores into another database name, equal by fingerprint, and the original is untouched', async () => {
    const target = `${database}_drill`;
    const result = await runRestore(deployment, { source: 'mongodb', target });
    assert.equal(result.comparison?.equal, true, JSON.stringify(result.comparison));
    assert.equal(result.filesRestored, 1205, 'documents restored');
    const client = new MongoClient(servers.mongodbUri);
    try {
      for (const name of ['pipeline_runs', 'job_cache', 'applications']) {
        const original = await client.db(database).collection(name).find({}, { sort: { _id: 1 } }).toArray();
        const restored = await client.db(target).collection(name).find({}, { sort: { _id: 1 } }).toArray();
        assert.deepEqual(restored, original, `${name}: documents differ`);
      }
      const indexes = await client.db(target).collection('applications').indexes();
      assert.ok(indexes.some((i) => i.unique && JSON.stringify(i.key) === '{"company":1}'), 'the unique index came back');
      // A second restore into the same (now non-empty) database is refused.
      await assert.rejects(runRestore(deployment, { source: 'mongodb', target }), (e: Error) => /force/.test(rootCause(e).message));
    } finally {
      await client.close();
    }
  });

  test('a full drill: every source restored into scratch targets, validated, RTO and RPO reported, cleaned up', async () => {
    const report = await fullDrill(deployment, work);
    assert.deepEqual(report.tiers.map((t) => t.tier), ['critical', 'high', 'medium']);
    const client = new MongoClient(servers.mongodbUri);
    try {
      const names = (await client.db('admin').admin().listDatabases({ nameOnly: true })).databases.map((d) => d.name);
      assert.deepEqual(names.filter((n) => n.startsWith(`${database}_drill_`)), [], 'no drill database left');
    } finally {
      await client.close();
    }
  });

  test('artifacts and secrets restore byte for byte; git comes back with every branch and tag', async () => {
    for (const source of ['artifacts', 'secrets']) {
      const target = join(work, `restored-${source}`);
      await runRestore(deployment, { source, target });
      const paths = deployment.config.sources[source]!.type === 'files' || deployment.config.sources[source]!.type === 'secrets' ? (deployment.config.sources[source] as { paths: string[] }).paths : [];
      for (const path of paths) assert.deepEqual(describeTree(join(target, path)), describeTree(join(app, path)), `${source}/${path}`);
    }
    const target = join(work, 'restored-git');
    const result = await runRestore(deployment, { source: 'master-cv', target });
    assert.equal(result.comparison?.equal, true);
    assert.equal(refs(target), refs(app));
    assert.match(refs(target), /refs\/heads\/feature\/rewrite/);
    assert.match(refs(target), /refs\/tags\/v1/);
  });
});

describe('examples/saas-postgres.yaml: PostgreSQL with roles, the uploads bucket, the repository and its mirror', () => {
  const work = tempDir('example-saas');
  const app = join(work, 'srv', 'locum');
  const bucket = uniqueName('saas');
  const uploads = uniqueName('uploads');
  const database = `locum_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const scratch = `${database}_drill`;
  const role = `${database}_app`;
  let replicaServer: MinioServer;
  let deployment: TestDeployment;
  let monitor: PingReceiver;
  let mirror: string;
  const outcomes: Record<string, BackupOutcome> = {};
  const admin = () => new pg.Client({ connectionString: servers.postgresUrl });

  before(async () => {
    writeSampleDeployment(app);
    const repositoryPath = join(app, 'repository');
    execFileSync('mkdir', ['-p', repositoryPath]);
    execFileSync('cp', ['-r', join(app, 'applications'), join(app, 'master-cv.md'), repositoryPath]);
    makeRepository(repositoryPath);
    mirror = join(work, 'gitlab-mirror.git');
    execFileSync('git', ['init', '-q', '--bare', mirror]);

    const client = admin();
    await client.connect();
    try {
      await client.query(`create database ${database}`);
      await client.query(`create role ${role} login`);
    } finally {
      await client.end();
    }
    const db = new pg.Client({ connectionString: servers.postgresUrl.replace(/\/[^/]*$/, `/${database}`) });
    await db.connect();
    try {
      await db.query(`create table practitioners (id bigserial primary key, name text not null, rate numeric(10,2) check (rate > 0), profile jsonb, created timestamptz default now())`);
      await db.query(`create table shifts (id int generated always as identity primary key, practitioner bigint references practitioners(id), starts timestamptz, note text unique)`);
      await db.query(`insert into practitioners (name, rate, profile) select 'Dr ' || i, 100 + i % 50, jsonb_build_object('i', i, 'tags', jsonb_build_array('a', 'é')) from generate_series(1, 5000) i`);
      await db.query(`insert into shifts (practitioner, starts, note) select 1 + i % 5000, now() + i * interval '1 hour', 'shift ' || i from generate_series(1, 20000) i`);
      await db.query(`create view busy as select practitioner, count(*) from shifts group by practitioner`);
    } finally {
      await db.end();
    }

    replicaServer = await startMinio({ bin: process.env.MINIO_BIN });
    await createBucket(bucket);
    await createBucket(uploads);
    const source = new S3Client({ endpoint: servers.s3Endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: servers.s3AccessKeyId, secretAccessKey: servers.s3SecretAccessKey } });
    const replica = new S3Client({ endpoint: replicaServer.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: replicaServer.accessKeyId, secretAccessKey: replicaServer.secretAccessKey } });
    try {
      for (let i = 0; i < 40; i++) {
        await source.send(new PutObjectCommand({ Bucket: uploads, Key: `profiles/${i}.jpg`, Body: Buffer.alloc(1000 + i, i), ContentType: 'image/jpeg', Metadata: { owner: `user-${i}` } }));
      }
      const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
      await replica.send(new CreateBucketCommand({ Bucket: `${uploads}-replica` }));
    } finally {
      source.destroy();
      replica.destroy();
    }

    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const config = parse(readFileSync(join(root, 'examples/saas-postgres.yaml'), 'utf8')) as Record<string, any>;
    config.deployment = uniqueName('locum');
    config.staging = { directory: join(work, 'staging'), minFreeSpace: '50MiB' };
    config.drills.scratchDirectory = join(work, 'drills');
    config.sources.config.root = app;
    config.sources.code.path = join(app, 'repository');
    config.sources.database.databases = [database];
    Object.assign(config.sources.uploads, { endpoint: servers.s3Endpoint, bucket: uploads, region: 'us-east-1', pathStyle: true });
    Object.assign(config.sources.uploads.replica, { endpoint: replicaServer.endpoint, bucket: `${uploads}-replica`, region: 'us-east-1', pathStyle: true });
    for (const repository of Object.values(config.repositories) as Record<string, unknown>[]) toMinio(repository, bucket);
    monitor = await startPingReceiver('worker');
    const env = {
      DATABASE_URL: servers.postgresUrl, R2_ACCESS_KEY_ID: servers.s3AccessKeyId, R2_SECRET_ACCESS_KEY: servers.s3SecretAccessKey,
      AWS_ACCESS_KEY_ID: replicaServer.accessKeyId, AWS_SECRET_ACCESS_KEY: replicaServer.secretAccessKey, GITLAB_MIRROR_URL: mirror,
      RESTIC_PASSWORD: `pw-${uniqueName('a')}`, PAGERDUTY_ROUTING_KEY: 'unused', SMTP_URL: 'smtp://127.0.0.1:9',
      HEALTHCHECKS_WORKER_URL: monitor.url,
    };
    deployment = await startDeployment(stringify(config), env, { cleanup: [work] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    for (const policy of Object.keys(deployment.config.policies)) outcomes[policy] = await runBackup(deployment, policy);
  });

  after(async () => {
    await deployment?.close();
    await monitor?.close();
    await replicaServer?.stop();
    const client = admin();
    await client.connect();
    try {
      for (const name of [database, scratch]) await client.query(`drop database if exists ${name} with (force)`);
      await client.query(`drop role if exists ${role}`);
    } finally {
      await client.end();
    }
  });

  test('the worker pings the example\'s outside monitor (monitoring.heartbeatUrlEnv) as it starts', async () => {
    await waitFor('a success ping from this deployment\'s worker', () => monitor.pings.some((p) => p.signal === '' && p.body.includes(sharedTaskQueue(deployment.config.deployment))));
  });

  test('every policy\'s backup succeeds; the database is one snapshot per database plus its manifest with the roles', () => {
    assert.deepEqual(Object.keys(outcomes).sort(), ['code', 'config', 'database', 'uploads']);
    for (const [policy, outcome] of Object.entries(outcomes)) assert.equal(outcome.status, 'ok', `${policy}: ${JSON.stringify(outcome.error)}`);
    const snapshot = outcomes.database!.snapshots[0]!;
    assert.deepEqual(snapshot.parts?.map((p) => p.part), [`database:${database}`]);
    assert.equal(snapshot.fingerprint?.kind, 'postgres');
    const tables = snapshot.fingerprint?.kind === 'postgres' ? snapshot.fingerprint.databases[0]!.tables : [];
    assert.deepEqual(tables.map((t) => [t.table, t.rows]).filter(([t]) => !String(t).startsWith('pg_catalog')), [['public.practitioners', 5000], ['public.shifts', 20000]]);
    const upload = outcomes.uploads!.snapshots[0]!;
    assert.equal(upload.fingerprint?.kind === 'bucket' && upload.fingerprint.objects, 40);
    assert.equal(refs(mirror), refs(join(app, 'repository')), 'the mirror holds every branch and tag');
  });

  test('doctor checks every kind on the workers: pg_dump against the server, the git repository and its mirror, both buckets', async () => {
    const report = await deployment.client.workflow.execute(doctorWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('doctor'), args: [{ deployment: deployment.config.deployment }],
    });
    const row = (id: string) => report.checks.find((c) => c.id === id);
    for (const id of ['postgres:database', 'git:code', 'bucket:uploads']) assert.equal(row(id)?.ok, true, `${id}: ${JSON.stringify(row(id))}`);
    assert.match(row('postgres:database')!.detail, /pg_dump 15\S* can dump PostgreSQL 15/);
    assert.match(row('git:code')!.detail, /GITLAB_MIRROR_URL/);
    assert.match(row('bucket:uploads')!.detail, /readable, 40 objects.*writable/);
  });

  test('PostgreSQL restores into a scratch database, equal by fingerprint, with its view; the roles are in the snapshot', async () => {
    const result = await runRestore(deployment, { source: 'database', target: scratch });
    assert.equal(result.comparison?.equal, true, JSON.stringify(result.comparison));
    const db = new pg.Client({ connectionString: servers.postgresUrl.replace(/\/[^/]*$/, `/${scratch}`) });
    await db.connect();
    try {
      assert.equal((await db.query('select count(*)::int as n from busy')).rows[0].n, 5000);
      await assert.rejects(db.query(`insert into practitioners (name, rate) values ('x', -1)`), /check constraint/);
    } finally {
      await db.end();
    }
    const { snapshots: list, readSnapshotFile } = await import('../src/restic/commands');
    const context = { bin: servers.resticBin, repository: deployment.config.repositories.r2!, env: process.env };
    const [manifest] = (await list(context, { tags: [`source=database`, 'part=manifest'] }));
    const globals = await readSnapshotFile(context, manifest!.id, `${manifest!.paths[0]}/globals.sql`);
    assert.match(globals, new RegExp(`CREATE ROLE ${role}`), 'pg_dumpall --globals-only holds the test\'s role');
  });

  test('retention keeps a PostgreSQL run whole: its database and manifest snapshots are kept or forgotten together', async () => {
    // keepDaily 7 with three runs today: restic keeps the newest of the day and, while there are
    // fewer days than 7, the oldest; the middle run goes, part by part.
    const middle = await runBackup(deployment, 'database');
    const newest = await runBackup(deployment, 'database');
    assert.equal(newest.status, 'ok');
    const { snapshots: list } = await import('../src/restic/commands');
    const context = { bin: servers.resticBin, repository: deployment.config.repositories.r2!, env: process.env };
    const all = await list(context, { tags: ['source=database'] });
    const runs = (part: string) => all.filter((s) => s.tags?.includes(`part=${part}`)).map((s) => s.tags!.find((t) => t.startsWith('run='))!).sort();
    assert.deepEqual(runs('manifest'), runs(`database:${database}`), 'the same runs are kept for every part');
    assert.equal(runs('manifest').length, 2, JSON.stringify(all.map((s) => [s.time, s.tags])));
    assert.ok(runs('manifest').some((r) => r.includes(newest.workflowId)), 'the newest run is kept');
    assert.ok(!runs('manifest').some((r) => r.includes(middle.workflowId)), 'the middle run is forgotten, whole');
  });

  test('a full drill: PostgreSQL into a scratch database, git into a scratch folder, the replica checked, all cleaned up', async () => {
    const report = await fullDrill(deployment, work);
    assert.match(report.sources.find((s) => s.source === 'database')!.comparison!.what, new RegExp(`${database} restored into ${database}_drill_`));
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    const left = await admin.query(`select datname from pg_database where datname like '${database}_drill_%'`).finally(() => admin.end());
    assert.equal(left.rowCount, 0, 'no drill database left');
  });

  test('the uploads come back from the replica into a new bucket; git from its bundle', async () => {
    const target = uniqueName('restored-uploads');
    await createBucket(target);
    const result = await runRestore(deployment, { source: 'uploads', target });
    assert.equal(result.comparison?.equal, true, JSON.stringify(result.comparison));
    const s3 = new S3Client({ endpoint: servers.s3Endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: servers.s3AccessKeyId, secretAccessKey: servers.s3SecretAccessKey } });
    try {
      const object = await s3.send(new GetObjectCommand({ Bucket: target, Key: 'profiles/7.jpg' }));
      assert.deepEqual(Buffer.from(await object.Body!.transformToByteArray()), Buffer.alloc(1007, 7));
      assert.equal(object.ContentType, 'image/jpeg');
      assert.equal(object.Metadata?.owner, 'user-7');
    } finally {
      s3.destroy();
    }
    const folder = join(work, 'restored-code');
    const restored = await runRestore(deployment, { source: 'code', target: folder });
    assert.equal(restored.comparison?.equal, true);
    assert.equal(refs(folder), refs(join(app, 'repository')));
  });
});
