/**
 * Temporal itself fails mid-backup: this file starts a Temporal dev server of its own (the shared
 * one in TEST_TEMPORAL_ADDRESS serves the other test files and must not be touched), SIGKILLs it
 * while restic runs, and starts it again on the same port and SQLite database.
 * With TEST_TEMPORAL_SERVER=postgres (the PostgreSQL pass of scripts/run-tests.ts) its own server
 * is the Temporal server on PostgreSQL instead, restarted on the same ports and databases.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { stringify } from 'yaml';
import type { Client } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { startManualBackup } from '../src/cli/operations';
import { pendingHeartbeat } from '../src/cli/progress';
import { readEnvironment } from '../src/config/environment';
import { parseConfig } from '../src/config/load';
import { freePort, startTemporal, startTemporalServer, type PostgresTemporalServer, type TemporalServer } from '../src/servers/processes';
import type { BackupOutcome } from '../src/shared/backup-types';
import { ledgerWorkflowId, type LastSuccessfulBackup } from '../src/shared/ledger';
import { connectClient } from '../src/temporal/client';
import { repositoryWriterId } from '../src/workflows/repository';
import { tempDir, testSecrets, testServers, uniqueName, waitFor, isProcessAlive } from './support/harness';
import { writeRandomFile } from './support/trees';

const servers = testServers();
const root = tempDir('temporal-restart');
const { names, values } = testSecrets('TRESTART');
const deploymentName = uniqueName('trestart');
const configFile = join(root, 'backup.yaml');
const repositoryPath = join(root, 'repository');
// TEMPORAL_RESTART_DOWN_MS=30000 makes the outage outlast the backup activity's 20 s heartbeat timeout (the retry-and-adopt path).
const DOWN_MS = Number(process.env.TEMPORAL_RESTART_DOWN_MS ?? 5_000);
const RESULT_DEADLINE_MS = 3 * 60_000;

let temporal: Pick<TemporalServer & PostgresTemporalServer, 'address' | 'pid' | 'kill' | 'restart' | 'stop'> | undefined;
let worker: ChildProcess | undefined;
let workerOutput = '';
const clients: Client[] = [];

async function connect(address: string): Promise<Client> {
  const client = await connectClient(readEnvironment({ TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: 'default' }));
  clients.push(client);
  return client;
}

/**
 * The worker in its own process (src/worker.ts, as in production) pointed at this file's Temporal
 * server; test/support/worker-process.ts always points its workers at the shared one.
 */
async function startWorkerAgainst(address: string): Promise<ChildProcess> {
  // restic limited to 32 MiB/s (exec keeps its pid): on a fast machine the 335 MB would otherwise be
  // stored before restic's pid reaches a heartbeat (sent at most every 2 s), and nothing is mid-backup.
  const slowRestic = join(root, 'slow-restic');
  writeFileSync(slowRestic, `#!/bin/sh\nexec '${servers.resticBin}' --limit-upload 32768 "$@"\n`, { mode: 0o755 });
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts'], {
    env: {
      ...process.env, ...values,
      BACKUP_CONFIG: configFile, BACKUP_HOST: hostname(), TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: 'default',
      RESTIC_BIN: slowRestic, LOG_FORMAT: 'json', LOG_LEVEL: 'info', BACKUP_WORKFLOW_CACHE: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk: Buffer): void => {
    workerOutput = (workerOutput + chunk.toString()).slice(-200_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  await waitFor('the worker process to start polling', () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`worker exited (${child.exitCode ?? child.signalCode}): ${workerOutput.slice(-2000)}`);
    return /"msg":"worker started"/.test(workerOutput);
  }, 60_000);
  return child;
}

function restic(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(servers.resticBin, args, {
      env: { ...process.env, RESTIC_REPOSITORY: repositoryPath, RESTIC_PASSWORD: values[names.password] },
      maxBuffer: 64 * 1024 * 1024,
    }, (error, stdout, stderr) => (error ? reject(new Error(`restic ${args.join(' ')}: ${error.message}\n${stderr}`)) : resolve(stdout)));
  });
}

before(async () => {
  // 320 MiB of incompressible data: restic is still at work when Temporal is killed.
  mkdirSync(join(root, 'app', 'applications'), { recursive: true });
  for (let i = 0; i < 40; i += 1) writeRandomFile(join(root, 'app', 'applications', `dossier-${i}.pdf`), 8 * 1024 * 1024);
  writeFileSync(configFile, stringify({
    deployment: deploymentName,
    staging: { directory: join(root, 'staging'), minFreeSpace: '10MiB' },
    sources: { artifacts: { type: 'files', root: join(root, 'app'), paths: ['applications'] } },
    repositories: { local: { type: 'local', path: repositoryPath, passwordEnv: names.password } },
    policies: { artifacts: { sources: ['artifacts'], repositories: ['local'], schedule: { cron: '0 2 * * *' }, retention: { keepLast: 10 } } },
  }));
  Object.assign(process.env, values);
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });
  await initRepositories(config, servers.resticBin, undefined, process.env);
  // A fixed port and a database file of our own, so the restarted server is the same cluster.
  temporal = process.env.TEST_TEMPORAL_SERVER === 'postgres'
    ? await startTemporalServer({ postgresUrl: servers.postgresUrl, cliBin: servers.temporalBin })
    : await startTemporal({ bin: servers.temporalBin, port: await freePort(), dbFile: join(root, 'temporal.db') });
  worker = await startWorkerAgainst(temporal.address);
});

after(async () => {
  if (worker && worker.exitCode === null && worker.signalCode === null) {
    const exited = new Promise((resolve) => worker!.once('exit', resolve));
    worker.kill('SIGKILL');
    await exited;
  }
  for (const client of clients) await client.connection.close().catch(() => undefined);
  await temporal?.stop();
  rmSync(root, { recursive: true, force: true });
});

test(`the Temporal ${process.env.TEST_TEMPORAL_SERVER === 'postgres' ? 'server on PostgreSQL' : 'dev server'} SIGKILLed mid-backup and restarted on the same database: the backup completes with exactly one snapshot, the ledger records it, and the repository checks clean`, async (t) => {
  assert.ok(temporal && worker);
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });
  const first = await connect(temporal.address);
  const handle = await startManualBackup(first, config, 'artifacts', hostname());
  const workflowId = handle.workflowId;
  const started = Date.now();

  // Kill once restic runs (its pid is in the first heartbeat), not before it starts nor after it
  // ends. Later beats are throttled (to 80% of the heartbeat timeout), so waiting for a percentage
  // races a fast backup to its end.
  const progress = await waitFor('restic to start', async () => {
    const beat = await pendingHeartbeat(first, repositoryWriterId(deploymentName, 'local'));
    return beat?.pid !== undefined ? beat : undefined;
  }, 120_000, 50).catch(async (error: Error) => {
    const description = await handle.describe().catch(() => undefined);
    throw new Error(`${error.message}\nbackup workflow: ${description?.status.name}\nworker: ${workerOutput.slice(-3000)}`);
  });
  assert.ok((progress.percentDone ?? 0) < 1, 'the backup ended before Temporal was killed');
  const resticPid = progress.pid!;

  const serverPid = temporal.pid();
  assert.ok(serverPid !== undefined);
  await temporal.kill();
  const killedAt = Date.now();
  assert.equal(isProcessAlive(serverPid), false, 'the Temporal dev server process survived SIGKILL');
  const resticAliveAtKill = isProcessAlive(resticPid);
  await delay(DOWN_MS); // the outage itself is the point of this test
  await temporal.restart();
  const restartedAt = Date.now();
  assert.notEqual(temporal.pid(), serverPid);
  t.diagnostic(`killed at ${((killedAt - started) / 1000).toFixed(1)} s (restic ${(100 * (progress.percentDone ?? 0)).toFixed(0)}% done, ${resticAliveAtKill ? 'running' : 'gone'}), back after ${((restartedAt - killedAt) / 1000).toFixed(1)} s`);

  // A new connection to the restarted server; the workflow and its history came back from the database.
  const second = await connect(temporal.address);
  const resumed = second.workflow.getHandle(workflowId);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void resumed.describe().then(
        (d) => `${d.status.name}, pending: ${JSON.stringify(d.raw.pendingActivities?.map((a) => [a.activityType?.name, a.attempt, a.lastFailure?.message]))}`,
        (e: Error) => `describe failed: ${e.message}`,
      ).then((state) => reject(new Error(`no result ${RESULT_DEADLINE_MS / 1000} s after the restart; backup workflow: ${state}\nworker (${worker!.exitCode ?? worker!.signalCode ?? 'running'}): ${workerOutput.slice(-4000)}`)));
    }, RESULT_DEADLINE_MS);
  });
  let outcome: BackupOutcome;
  try {
    outcome = await Promise.race([resumed.result() as Promise<BackupOutcome>, deadline]);
  } finally {
    clearTimeout(timer);
  }
  t.diagnostic(`result ${((Date.now() - restartedAt) / 1000).toFixed(1)} s after the restart, ${((Date.now() - started) / 1000).toFixed(1)} s after the start; snapshot resumed from an earlier attempt: ${String(outcome.snapshots[0]?.resumed)}`);

  // What the outage cost: attempts of the backup activity, and what the worker logged about it.
  const repositoryHistory = await second.workflow.getHandle(repositoryWriterId(deploymentName, 'local')).fetchHistory();
  const attempts = repositoryHistory.events?.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1) ?? [];
  const complaints = workerOutput.split('\n').filter((line) => /"level":(40|50|60)/.test(line));
  t.diagnostic(`activity attempts in the repository workflow: ${attempts.join(',')}; worker warnings/errors: ${complaints.length}${complaints.length > 0 ? ` (first: ${complaints[0]!.slice(0, 300)})` : ''}`);

  assert.equal((await resumed.describe()).status.name, 'COMPLETED');
  assert.equal(outcome.ok, true, JSON.stringify(outcome.error));
  assert.equal(outcome.snapshots.length, 1);
  // The worker lived through the outage: it reconnected by itself, nobody restarted it.
  assert.equal(worker.exitCode, null, `the worker exited when Temporal went away: ${workerOutput.slice(-3000)}`);
  assert.equal(worker.signalCode, null);

  // Exactly one snapshot in the (fresh) repository, this deployment's, the one the workflow reports.
  const all = JSON.parse(await restic(['snapshots', '--json', '--no-lock'])) as Array<{ id: string; short_id: string; tags?: string[] }>;
  assert.equal(all.length, 1, `expected exactly one snapshot, found ${all.map((s) => s.short_id).join(', ')}`);
  const [snapshot] = all;
  assert.ok(snapshot!.tags?.includes(`deployment=${deploymentName}`), `tags: ${snapshot!.tags?.join(' ')}`);
  assert.ok(snapshot!.tags?.includes('source=artifacts'));
  assert.equal(outcome.snapshots[0]!.snapshotId, snapshot!.id);
  // 40 files and the backup manifest: a whole snapshot, not a partial one.
  assert.equal(outcome.snapshots[0]!.files, 41);

  // The ledger, on the restarted server, records that snapshot as the source's last success.
  const ledger = second.workflow.getHandle(ledgerWorkflowId(deploymentName));
  const last = await waitFor('the ledger to record the backup', async () => {
    const answer = await ledger.query<LastSuccessfulBackup>('lastSuccessfulBackup');
    return answer.sources.artifacts ? answer : undefined;
  }, 30_000);
  assert.equal(last.sources.artifacts!.snapshotId, snapshot!.id);
  assert.equal(last.deployment, deploymentName);

  // No lock left behind and no damage: restic check reads every pack back.
  await restic(['check', '--read-data']);
  const locks = (await restic(['list', 'locks', '--no-lock'])).trim();
  assert.equal(locks, '', `locks left in the repository: ${locks}`);
});
