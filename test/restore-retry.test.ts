/**
 * Restores safe to retry: a drill of a PostgreSQL source with two databases whose worker is
 * SIGKILLed twice mid-restore (in a child process, with its restic and pg_restore, like a host
 * that dies). Each retry resumes from the heartbeat of the attempt before: the database it was
 * filling is dropped and restored again (it carries this run's drill suffix and is recorded as
 * created), a database already proven equal is not restored again, and the drill ends with
 * every database equal to its backup and no drill database left. And a pg_restore that fails
 * while restic is blocked writing the dump fails the restore at once instead of waiting on restic.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Client, WorkflowHandle } from '@temporalio/client';
import pg from 'pg';
import { shortRunId } from '../src/activities/plans';
import { initRepositories } from '../src/cli/init';
import { readEnvironment } from '../src/config/environment';
import { parseConfig } from '../src/config/load';
import { applyOperationsPlan } from '../src/schedules/operations';
import type { Config } from '../src/config/schema';
import type { RecoveryReport } from '../src/shared/recovery-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupDatabaseWithRestic, restoreDatabaseFromRestic } from '../src/sources/postgres-restic';
import { connectClient } from '../src/temporal/client';
import { backupWorkflow, disasterRecoveryWorkflow } from '../src/workflows';
import { isProcessAlive, tempDir, testServers, uniqueName, waitFor } from './support/harness';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const servers = testServers();
const work = tempDir('restore-retry');
const configFile = join(work, 'backup.yaml');
const prefix = uniqueName('rr').replace(/-/g, '_');
const [first, second] = [`${prefix}_one`, `${prefix}_two`];
const variables = { password: `T${prefix.slice(3).toUpperCase()}_RETRY_PASSWORD`, pg: `T${prefix.slice(3).toUpperCase()}_RETRY_DATABASE_URL` };
const secrets = { [variables.password]: `pw-${uniqueName('p')}`, [variables.pg]: servers.postgresUrl };
const workers: WorkerProcess[] = [];
let client: Client;
let deployment: string;
let config: Config;

async function admin<T>(use: (db: pg.Client) => Promise<T>, database = 'postgres'): Promise<T> {
  const db = new pg.Client({ connectionString: servers.postgresUrl.replace(/\/[^/]*$/, `/${database}`) });
  await db.connect();
  try {
    return await use(db);
  } finally {
    await db.end();
  }
}

const drillDatabases = () => admin(async (db) => (await db.query<{ datname: string }>(`select datname from pg_database where datname like '${prefix}%\\_drill\\_%'`)).rows.map((r) => r.datname).sort());

before(async () => {
  // 200k rows of random text per database: a dump of about 8 MB that pg_restore loads as it arrives.
  for (const database of [first, second]) {
    await admin((db) => db.query(`create database ${database}`));
    await admin(async (db) => {
      await db.query('create table shifts (id bigint primary key, note text not null)');
      await db.query(`insert into shifts select i, md5(random()::text) || md5(random()::text) from generate_series(1, 200000) i`);
    }, database);
  }
  const yaml = `deployment: ${uniqueName('retry')}
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  database: { type: postgres, urlEnv: ${variables.pg}, databases: [${first}, ${second}], globals: false }
repositories:
  local: { type: local, path: ${join(work, 'repository')}, passwordEnv: ${variables.password} }
policies:
  database: { sources: [database], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 5 }, rpo: 7h, tier: critical }
drills:
  schedule: { cron: "0 6 1 * *" }
  scratchDirectory: ${join(work, 'scratch')}
`;
  writeFileSync(configFile, yaml);
  const env = { ...process.env, ...secrets };
  config = parseConfig(yaml, configFile, { env });
  deployment = config.deployment;
  await initRepositories(config, servers.resticBin, undefined, env);
  client = await connectClient(readEnvironment({ TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace }));
  await applyOperationsPlan(client, config, 'restore-retry-test');
});

after(async () => {
  for (const worker of workers) await worker.kill('SIGKILL');
  await client?.connection.close();
  const left = await admin(async (db) => (await db.query<{ datname: string }>(`select datname from pg_database where datname like '${prefix}%'`)).rows.map((r) => r.datname));
  for (const name of left) await admin((db) => db.query(`drop database if exists "${name}" with (force)`));
  rmSync(work, { recursive: true, force: true });
});

/** The pending recoverSource: its attempt and the details of the last heartbeat Temporal recorded. */
async function pendingRestore(handle: WorkflowHandle): Promise<{ attempt: number; details: Record<string, unknown> } | undefined> {
  const description = await handle.describe();
  const pending = description.raw.pendingActivities?.find((a) => a.activityType?.name === 'recoverSource');
  const payload = pending?.heartbeatDetails?.payloads?.[0];
  if (!pending || !payload) return undefined;
  return { attempt: pending.attempt ?? 0, details: client.options.loadedDataConverter.payloadConverter.fromPayload<Record<string, unknown>>(payload) };
}

/** Whether pg_restore is connected to `database` now. */
const pgRestoreInto = (database: string) => admin(async (db) => (await db.query(`select 1 from pg_stat_activity where application_name = 'pg_restore' and datname = $1`, [database])).rowCount! > 0);

/** SIGKILL for the worker and for the restic and pg_restore it started, as when its host dies. */
async function killHost(worker: WorkerProcess): Promise<void> {
  const children = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(worker.child.pid)], { encoding: 'utf8' }).split('\n')
    .map((line) => line.trim().split(/\s+/)).filter(([, command]) => command === 'restic' || command === 'pg_restore').map(([pid]) => Number(pid));
  assert.ok(children.length > 0, 'the worker runs restic and pg_restore at the kill');
  await worker.kill('SIGKILL');
  for (const pid of children) {
    if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
  }
}

test('a worker SIGKILLed mid-restore, twice, during a drill of two PostgreSQL databases: each retry resumes, and the drill ends with both equal and nothing left', async (t) => {
  const started = Date.now();
  const slowRestic = join(work, 'slow-restic');
  // restic reads the repository at 320 KiB/s: each database's restore then takes about 25 s, more
  // than the 16 s between the heartbeats Temporal records (80% of the 20 s heartbeat timeout).
  writeFileSync(slowRestic, `#!/bin/sh\nexec '${servers.resticBin}' --limit-download 320 "$@"\n`, { mode: 0o755 });
  const startWorker = async () => {
    const worker = await startWorkerProcess(configFile, { ...secrets, RESTIC_BIN: slowRestic });
    workers.push(worker);
    return worker;
  };
  let worker = await startWorker();
  await client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(deployment), workflowId: uniqueName('backup-retry'), args: [{ deployment, policy: 'database' }] });
  t.diagnostic(`set-up and backup: ${Math.round((Date.now() - started) / 1000)} s`);

  const handle = await client.workflow.start(disasterRecoveryWorkflow, { taskQueue: sharedTaskQueue(deployment), workflowId: uniqueName('drill-retry'), args: [{ deployment, mode: 'drill' }] });
  const run = shortRunId(handle.firstExecutionRunId);
  const [firstTarget, secondTarget] = [`${first}_drill_${run}`, `${second}_drill_${run}`];
  const explain = (what: string) => async (error: Error) => {
    const sessions = await admin(async (db) => (await db.query(`select datname, application_name, state, wait_event_type, wait_event, now() - query_start as running, left(query, 100) as query
      from pg_stat_activity where state <> 'idle' and pid <> pg_backend_pid()`)).rows).catch((e: Error) => e.message);
    let children = '(none)';
    try {
      children = execFileSync('ps', ['-o', 'pid=,etime=,args=', '--ppid', String(worker.child.pid)], { encoding: 'utf8' });
    } catch {
      // ps exits 1 when the worker has no child: the explanation still goes on
    }
    throw new Error(`${error.message} (${what}); pending: ${JSON.stringify(await pendingRestore(handle).catch(() => undefined))}\nsessions: ${JSON.stringify(sessions)}\nworker's children:\n${children}\nworker: ${worker.output().slice(-3000)}`);
  };

  // 1. Killed while filling the first database: Temporal has recorded that this attempt created it.
  await waitFor(`pg_restore into ${firstTarget}, recorded as created`, async () => {
    const pending = await pendingRestore(handle);
    return pending?.attempt === 1 && pending.details.created === firstTarget && await pgRestoreInto(firstTarget);
  }, 180_000, 250).catch(explain('first kill'));
  await killHost(worker);
  t.diagnostic(`first kill: ${Math.round((Date.now() - started) / 1000)} s`);

  // 2. The second attempt replaces that half-filled database, proves it equal, and is killed while filling the second.
  worker = await startWorker();
  const retried = worker;
  await waitFor(`attempt 2 to prove ${firstTarget} equal and fill ${secondTarget}`, async () => {
    const pending = await pendingRestore(handle);
    const done = (pending?.details.done ?? []) as { database: string; target: string }[];
    return pending?.attempt === 2 && done.some((d) => d.target === firstTarget) && pending.details.created === secondTarget && await pgRestoreInto(secondTarget);
  }, 240_000, 250).catch(explain('second kill'));
  await killHost(worker);
  t.diagnostic(`second kill: ${Math.round((Date.now() - started) / 1000)} s`);
  assert.match(retried.output(), new RegExp(`"target":"${firstTarget}".*dropped and restored again`), 'attempt 2 replaced the database attempt 1 had half filled');

  // 3. The third attempt skips the first database and replaces the second.
  worker = await startWorker();
  const report = (await handle.result()) as RecoveryReport;
  t.diagnostic(`drill done: ${Math.round((Date.now() - started) / 1000)} s`);
  assert.equal(report.ok, true, report.error);
  const restored = report.sources.find((s) => s.source === 'database');
  assert.equal(restored?.comparison?.equal, true);
  for (const [database, target] of [[first, firstTarget], [second, secondTarget]]) {
    assert.match(restored!.comparison!.what, new RegExp(`database ${database} restored into ${target}`), `${database}'s comparison is in the report`);
  }
  const last = worker.output();
  assert.match(last, new RegExp(`"database":"${first}","target":"${firstTarget}".*not restored again`), 'attempt 3 kept the database attempt 2 had proven equal');
  assert.doesNotMatch(last, new RegExp(`"target":"${firstTarget}".*dropped and restored again`));
  assert.match(last, new RegExp(`"target":"${secondTarget}".*dropped and restored again`), 'attempt 3 replaced the database attempt 2 had half filled');
  const attempts = (await handle.fetchHistory()).events?.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt) ?? [];
  assert.ok(attempts.includes(3), `recoverSource ended on its third attempt (attempts started: ${attempts.join(', ')})`);
  assert.deepEqual(await drillDatabases(), [], 'the cleanup removed every drill database');
  assert.ok(report.cleanup.some((c) => c.target === firstTarget && c.ok) && report.cleanup.some((c) => c.target === secondTarget && c.ok));
});

test('a pg_restore that fails while restic is still writing the dump: the restore fails at once, and restic is stopped', async () => {
  const restic = { bin: servers.resticBin, repository: config.repositories.local!, env: { ...process.env, ...secrets } };
  const { snapshotId, filename } = await backupDatabaseWithRestic({ restic, url: servers.postgresUrl, database: first, tags: ['pg-restore-fails'] });
  // A pg_restore that reads nothing and fails: restic's 8 MB then fill the pipe, and restic blocks writing.
  const failing = join(work, 'failing-pg-restore');
  writeFileSync(failing, '#!/bin/sh\necho "pg_restore: error: no" >&2\nexit 1\n', { mode: 0o755 });
  const target = `${prefix}_failing`;
  const startedAt = Date.now();
  await assert.rejects(restoreDatabaseFromRestic({ restic, snapshotId, path: `/${filename}`, sourceDatabase: first, url: servers.postgresUrl, database: target, pgRestoreBin: failing }), /pg_restore into database .* failed/);
  assert.ok(Date.now() - startedAt < 30_000, `failed after ${Date.now() - startedAt} ms`);
  const left = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(snapshotId));
  assert.deepEqual(left, [], 'restic dump was stopped');
  assert.deepEqual(await admin(async (db) => (await db.query('select 1 from pg_database where datname = $1', [target])).rows), [], 'the database the restore created is dropped again');
});
