/**
 * Database sources when things go wrong, through the real workflow: a database that is down is
 * retried and then fails clearly in the ledger; a rejected login fails at once; a dump too big for
 * the staging disk is refused before anything is written; a pg_dump killed midway leaves no
 * snapshot and no success.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { initRepositories } from '../src/cli/init';
import { snapshots } from '../src/restic/commands';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow } from '../src/workflows';
import { lastSuccessfulBackupQuery } from '../src/workflows/definitions';
import { repositoryWriterId } from '../src/workflows/repository';
import { startDeployment, tempDir, testServers, uniqueName, waitFor, rootCause, type TestDeployment } from './support/harness';

const servers = testServers();


/** Attempts of the backup activity in the repository workflow's latest run. */
async function backupAttempts(deployment: TestDeployment, repository: string): Promise<number> {
  const history = await deployment.client.workflow.getHandle(repositoryWriterId(deployment.config.deployment, repository)).fetchHistory();
  return Math.max(0, ...(history.events ?? []).map((e) => (e.activityTaskStartedEventAttributes ? Number(e.activityTaskStartedEventAttributes.attempt) : 0)));
}

describe('database sources that fail', () => {
  const work = tempDir('db-faults');
  const tmpfs = join(work, 'small-disk');
  const names = { password: `T${uniqueName('x').slice(2, 8).toUpperCase()}_PW`, down: 'FAULT_MONGODB_DOWN', big: 'FAULT_MONGODB_BIG', noRole: 'FAULT_PG_NO_ROLE', pg: 'FAULT_PG_URL' };
  const bigDatabase = `big_${uniqueName('x').slice(2)}`;
  const pgDatabase = `killed_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const pgUrl = servers.postgresUrl.replace(/\/[^/]*$/, `/${pgDatabase}`);
  let deployment: TestDeployment;
  let mounted = false;

  before(async () => {
    // A 20 MiB disk for staging: a 30 MB database cannot be dumped there.
    mkdirSync(tmpfs, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', tmpfs]);
    mounted = true;
    const mongo = new MongoClient(servers.mongodbUri);
    try {
      await mongo.db(bigDatabase).collection('blobs').insertMany(Array.from({ length: 30 }, (_, i) => ({ i, data: 'x'.repeat(1024 * 1024) })));
    } finally {
      await mongo.close();
    }
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    try {
      await admin.query(`create database ${pgDatabase}`);
    } finally {
      await admin.end();
    }
    // About 150 MB of rows, so that pg_dump runs long enough to be killed.
    const db = new pg.Client({ connectionString: pgUrl });
    await db.connect();
    try {
      await db.query(`create table events (id bigint primary key, payload text)`);
      await db.query(`insert into events select i, repeat(md5(i::text), 30) from generate_series(1, 150000) i`);
    } finally {
      await db.end();
    }
    const closedPort = 'mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=2000';
    deployment = await startDeployment(`deployment: ${uniqueName('faults')}
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  down: { type: mongodb, uriEnv: ${names.down} }
  big: { type: mongodb, uriEnv: ${names.big}, databases: [${bigDatabase}] }
  norole: { type: postgres, urlEnv: ${names.noRole} }
  killed: { type: postgres, urlEnv: ${names.pg}, globals: false }
repositories:
  local: { type: local, path: ${join(work, 'repository')}, passwordEnv: ${names.password} }
policies:
  down: { sources: [down], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 3 }, attempts: 2 }
  big: { sources: [big], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 3 } }
  norole: { sources: [norole], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 3 } }
  killed: { sources: [killed], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 3 }, attempts: 1 }
`, {
      [names.password]: `pw-${uniqueName('p')}`, [names.down]: closedPort, [names.big]: servers.mongodbUri,
      [names.noRole]: servers.postgresUrl.replace(/\/\/[^@/]*@/, '//no_such_role_here@'), [names.pg]: pgUrl,
    });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
  });

  after(async () => {
    await deployment?.close();
    if (mounted) execFileSync('umount', [tmpfs]);
    const mongo = new MongoClient(servers.mongodbUri);
    await mongo.db(bigDatabase).dropDatabase().finally(() => mongo.close());
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`drop database if exists ${pgDatabase} with (force)`).finally(() => admin.end());
    execFileSync('rm', ['-rf', work]);
  });

  // The worker builds the plan from its config (this very object): a test's staging folder is set there.
  const start = async (policy: string, staging?: string) => {
    const configured = deployment.config.staging.directory;
    if (staging) deployment.config.staging.directory = staging;
    try {
      const handle = await deployment.client.workflow.start(backupWorkflow, { taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`backup-${policy}`), args: [{ deployment: deployment.config.deployment, policy }] });
      if (staging) await waitFor('the worker to resolve the plan', async () => (await handle.fetchHistory()).events?.some((e) => e.activityTaskCompletedEventAttributes));
      return handle;
    } finally {
      deployment.config.staging.directory = configured;
    }
  };
  const ledger = () => deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).query(lastSuccessfulBackupQuery);
  const restic = () => ({ bin: servers.resticBin, repository: deployment.config.repositories.local!, env: process.env });

  test('a database that is down is retried, then the run fails and the ledger says why', async () => {
    const handle = await start('down');
    const error = await handle.result().then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof WorkflowFailedError, 'the backup of a database that is down must fail');
    const cause = rootCause(error);
    assert.equal(cause.type, 'DatabaseUnreachable', cause.message);
    assert.match(cause.message, /source down: .*127\.0\.0\.1:9.*FAULT_MONGODB_DOWN/s);
    assert.equal(await backupAttempts(deployment, 'local'), 2, 'retried up to the policy\'s attempts');
    const state = await waitFor('the failed run in the ledger', async () => (await ledger()).lastRuns.down);
    assert.equal(state.status, 'failed');
    assert.equal(state.error?.type, 'DatabaseUnreachable');
    assert.equal((await ledger()).sources.down, undefined, 'no success recorded');
  });

  test('a login the database rejects fails at once (not retried) and names the variable to fix', async () => {
    const handle = await start('norole');
    const cause = rootCause(await handle.result().then(() => undefined, (e: unknown) => e));
    assert.equal(cause.type, 'DatabaseAuthFailed', cause.message);
    assert.equal(cause.nonRetryable, true);
    assert.match(cause.message, /no_such_role_here/);
    assert.match(cause.message, /FAULT_PG_NO_ROLE/);
    assert.equal(await backupAttempts(deployment, 'local'), 1);
  });

  test('a dump larger than the staging disk is refused before anything is written', async () => {
    const staging = join(tmpfs, 'staging');
    const handle = await start('big', staging);
    const cause = rootCause(await handle.result().then(() => undefined, (e: unknown) => e));
    assert.equal(cause.type, 'InsufficientDiskSpace', cause.message);
    assert.match(cause.message, /nothing was written/);
    assert.deepEqual(existsSync(join(staging, 'dumps')) ? readdirSync(join(staging, 'dumps')) : [], [], 'no dump was started');
    assert.equal((await snapshots(restic(), { tags: ['source=big'] })).length, 0);
  });

  test('pg_dump killed midway: restic saves no snapshot and the run is not a success', async () => {
    const handle = await start('killed');
    const pid = await waitFor('pg_dump to run', () => {
      try {
        return execFileSync('pgrep', ['-f', `bin/pg_dump -Fc .*${pgDatabase}`], { encoding: 'utf8' }).trim().split('\n')[0];
      } catch {
        return undefined;
      }
    }, 60_000, 50);
    execFileSync('kill', ['-9', pid!]);
    const cause = rootCause(await handle.result().then(() => undefined, (e: unknown) => e));
    assert.match(cause.message, /pg_dump|stdin|command/i, 'the failure names the dump command');
    assert.equal((await snapshots(restic(), { tags: ['source=killed'] })).length, 0, 'no snapshot of the killed dump');
    const state = await waitFor('the failed run in the ledger', async () => (await ledger()).lastRuns.killed);
    assert.equal(state.status, 'failed');
    assert.equal((await ledger()).sources.killed, undefined);
  });
});
